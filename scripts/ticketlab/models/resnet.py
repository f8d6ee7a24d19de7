"""CIFAR ResNets in the style of kuangliu/pytorch-cifar: 3x3 stride-1 stem, no max-pool, projection shortcuts.

The generic ResNet class here is also used by the option-A ResNets in resnet_a.py (different stage widths
and a parameter-free shortcut).

Extra skips (extra_skip=True: the Skip / AT / GSk tweaks; layers.ConvBN): a dense, unmasked 1x1 conv + BN
across every 3x3 conv inside the blocks, as the released code adds them per BasicBlock (both 3x3 convs);
in a Bottleneck (ResNet-50) across its one 3x3 conv only (1x1 convs get none); never across the stem or
the projection shortcuts. They add parameters a mask does not count (ResNet-18: 1.22 M; tables show each
run's non-zero parameters, summary.json "params").
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from .layers import ConvBN, make_activation, scale_width


def projection_shortcut(cin: int, cout: int, stride: int) -> nn.Module:
    """Identity when shapes match, otherwise a 1x1 ConvBN projection (option B)."""
    if stride == 1 and cin == cout:
        return nn.Identity()
    return ConvBN(cin, cout, 1, stride=stride)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin, planes, stride=1, activation="relu", extra_skip=False, shortcut=projection_shortcut):
        super().__init__()
        self.conv1 = ConvBN(cin, planes, 3, stride=stride, extra_skip=extra_skip)
        self.act1 = make_activation(activation)
        self.conv2 = ConvBN(planes, planes, 3, extra_skip=extra_skip)
        self.shortcut = shortcut(cin, planes, stride)
        self.act2 = make_activation(activation)

    def forward(self, x):
        out = self.act1(self.conv1(x))
        out = self.conv2(out) + self.shortcut(x)
        return self.act2(out)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin, planes, stride=1, activation="relu", extra_skip=False, shortcut=projection_shortcut):
        super().__init__()
        cout = planes * self.expansion
        self.conv1 = ConvBN(cin, planes, 1)
        self.act1 = make_activation(activation)
        self.conv2 = ConvBN(planes, planes, 3, stride=stride, extra_skip=extra_skip)
        self.act2 = make_activation(activation)
        self.conv3 = ConvBN(planes, cout, 1)
        self.shortcut = shortcut(cin, cout, stride)
        self.act3 = make_activation(activation)

    def forward(self, x):
        out = self.act1(self.conv1(x))
        out = self.act2(self.conv2(out))
        out = self.conv3(out) + self.shortcut(x)
        return self.act3(out)


class ResNet(nn.Module):
    """Stem ConvBN -> layer1..layerN (first stride 1, then stride 2) -> global avg pool -> fc."""

    def __init__(self, block, num_blocks, num_classes, in_channels=3, input_size=32, width=1.0,
                 activation="relu", extra_skip=False, stage_widths=(64, 128, 256, 512),
                 shortcut=projection_shortcut):
        super().__init__()
        del input_size  # global average pooling makes the network size-agnostic
        widths = [scale_width(c, width) for c in stage_widths]
        self.conv1 = ConvBN(in_channels, widths[0], 3)  # the released code adds extra skips inside blocks only
        self.act = make_activation(activation)
        self.stage_names = []
        cin = widths[0]
        for i, (planes, n) in enumerate(zip(widths, num_blocks)):
            blocks = []
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(block(cin, planes, stride, activation, extra_skip, shortcut))
                cin = planes * block.expansion
            name = f"layer{i + 1}"
            setattr(self, name, nn.Sequential(*blocks))
            self.stage_names.append(name)
        self.fc = nn.Linear(cin, num_classes)

    def stages(self):
        return [(name, getattr(self, name)) for name in self.stage_names]

    def forward(self, x):
        out = self.act(self.conv1(x))
        for _, layer in self.stages():
            out = layer(out)
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.fc(out)


def resnet18(num_classes, **kwargs):
    return ResNet(BasicBlock, [2, 2, 2, 2], num_classes, **kwargs)


def resnet34(num_classes, **kwargs):
    return ResNet(BasicBlock, [3, 4, 6, 3], num_classes, **kwargs)


def resnet50(num_classes, **kwargs):
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes, **kwargs)
