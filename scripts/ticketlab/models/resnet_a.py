"""CIFAR ResNet-20/32/56/110 with option-A (parameter-free) shortcuts, He et al. 2016, section 4.2."""
from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from .layers import is_extra
from .resnet import BasicBlock, ResNet


class ZeroPadShortcut(nn.Module):
    """Option A: subsample spatially with stride 2 and zero-pad the new channels (half in front, half behind)."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.stride = stride
        self.pad_front = (cout - cin) // 2
        self.pad_back = cout - cin - self.pad_front

    def forward(self, x):
        if self.stride > 1:
            x = x[:, :, ::self.stride, ::self.stride]
        return F.pad(x, (0, 0, 0, 0, self.pad_front, self.pad_back))


def zero_pad_shortcut(cin: int, cout: int, stride: int) -> nn.Module:
    if stride == 1 and cin == cout:
        return nn.Identity()
    return ZeroPadShortcut(cin, cout, stride)


class ResNetA(ResNet):
    """Widths 16/32/64, n = (depth - 2) / 6 basic blocks per stage, Kaiming-normal conv and linear weights."""

    def __init__(self, depth, num_classes, stage_widths=(16, 32, 64), **kwargs):
        if (depth - 2) % 6 != 0:
            raise ValueError(f"option-A ResNet depth must be 6n+2, got {depth}")
        n = (depth - 2) // 6
        super().__init__(BasicBlock, [n, n, n], num_classes, stage_widths=stage_widths,
                         shortcut=zero_pad_shortcut, **kwargs)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)) and not is_extra(m):
                nn.init.kaiming_normal_(m.weight)


def resnet20(num_classes, **kwargs):
    return ResNetA(20, num_classes, **kwargs)


def resnet32(num_classes, **kwargs):
    return ResNetA(32, num_classes, **kwargs)


def resnet56(num_classes, **kwargs):
    return ResNetA(56, num_classes, **kwargs)


def resnet110(num_classes, **kwargs):
    return ResNetA(110, num_classes, **kwargs)
