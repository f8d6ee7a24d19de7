"""VGG-16 with BatchNorm, CIFAR style (kuangliu/pytorch-cifar), head named fc.

Extra skips (extra_skip=True): a dense, unmasked 1x1 conv + BN across every 3x3 conv, the first one included
(VGG has no stem apart from it); our extension of the released code's per-BasicBlock skips to a network
without blocks. They add parameters a mask does not count (tables show each run's non-zero parameters)."""
from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from .layers import ConvBN, make_activation, scale_width

VGG16_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


class VGG(nn.Module):
    """features = one nn.Sequential block per max-pool group (ConvBN + activation ..., MaxPool).

    Max-pools that would shrink the feature map below 1x1 (inputs smaller than 32) are left out; a global
    average pool before fc keeps the flatten size equal to the last channel count for any input size."""

    def __init__(self, num_classes, in_channels=3, input_size=32, width=1.0, activation="relu",
                 extra_skip=False, cfg=VGG16_CFG):
        super().__init__()
        blocks, current, cin, size = [], [], in_channels, input_size
        for item in cfg:
            if item == "M":
                if size // 2 >= 1:
                    current.append(nn.MaxPool2d(2))
                    size //= 2
                blocks.append(nn.Sequential(*current))
                current = []
            else:
                cout = scale_width(item, width)
                current += [ConvBN(cin, cout, 3, extra_skip=extra_skip), make_activation(activation)]
                cin = cout
        if current:
            blocks.append(nn.Sequential(*current))
        self.features = nn.Sequential(*blocks)
        self.fc = nn.Linear(cin, num_classes)

    def stages(self):
        return [(f"features.{i}", block) for i, block in enumerate(self.features)]

    def forward(self, x):
        out = self.features(x)
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.fc(out)


def vgg16(num_classes, **kwargs):
    return VGG(num_classes, **kwargs)
