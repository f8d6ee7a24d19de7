"""MobileNet-v1, CIFAR style (kuangliu/pytorch-cifar): 3x3 stride-1 stem, depthwise-separable blocks.

Extra skips (extra_skip=True): a dense, unmasked 1x1 conv + BN across every 3x3 conv: the stem and each
depthwise conv (none across the pointwise 1x1 convs). Across a depthwise conv the skip is a full cin x cin
1x1 conv, far larger than the depthwise conv it spans (2.79 M weights at width 1): our extension of the
released code's per-BasicBlock skips; tables show each run's non-zero parameters."""
from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from .layers import ConvBN, make_activation, scale_width

# (out_channels, stride) or out_channels (stride 1); grouped into 4 stages that end before a downsampling
MOBILENET_STAGES = [
    [64, (128, 2), 128],
    [(256, 2), 256],
    [(512, 2), 512, 512, 512, 512, 512],
    [(1024, 2), 1024],
]


class Block(nn.Module):
    """Depthwise 3x3 ConvBN + act, pointwise 1x1 ConvBN + act. The extra skip (if any) spans the depthwise conv."""

    def __init__(self, cin, cout, stride=1, activation="relu", extra_skip=False):
        super().__init__()
        self.conv1 = ConvBN(cin, cin, 3, stride=stride, groups=cin, extra_skip=extra_skip)
        self.act1 = make_activation(activation)
        self.conv2 = ConvBN(cin, cout, 1)
        self.act2 = make_activation(activation)

    def forward(self, x):
        out = self.act1(self.conv1(x))
        return self.act2(self.conv2(out))


class MobileNet(nn.Module):
    """layers = nn.Sequential of 4 stages (each an nn.Sequential of Blocks) -> global avg pool -> fc."""

    def __init__(self, num_classes, in_channels=3, input_size=32, width=1.0, activation="relu",
                 extra_skip=False, stage_cfg=MOBILENET_STAGES):
        super().__init__()
        del input_size  # global average pooling makes the network size-agnostic
        cin = scale_width(32, width)
        self.conv1 = ConvBN(in_channels, cin, 3, extra_skip=extra_skip)
        self.act = make_activation(activation)
        stages = []
        for stage in stage_cfg:
            blocks = []
            for item in stage:
                cout, stride = item if isinstance(item, tuple) else (item, 1)
                cout = scale_width(cout, width)
                blocks.append(Block(cin, cout, stride, activation, extra_skip))
                cin = cout
            stages.append(nn.Sequential(*blocks))
        self.layers = nn.Sequential(*stages)
        self.fc = nn.Linear(cin, num_classes)

    def stages(self):
        return [(f"layers.{i}", stage) for i, stage in enumerate(self.layers)]

    def forward(self, x):
        out = self.act(self.conv1(x))
        out = self.layers(out)
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.fc(out)


def mobilenet(num_classes, **kwargs):
    return MobileNet(num_classes, **kwargs)
