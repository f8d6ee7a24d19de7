"""LeNet-5: conv 6@5x5 -> pool -> conv 16@5x5 -> pool -> fc120 -> fc84 -> fc(classes). No BatchNorm.

conv1 is padded by 2 (the classic 28x28 MNIST setting, 61,706 parameters). conv2 is unpadded when its input is
at least 5x5 and padded just enough otherwise, and pooling uses ceil_mode, so small inputs (8x8) work too.
"""
from __future__ import annotations

import math

from torch import nn

from .layers import make_activation, scale_width


def _conv_out(size: int, kernel: int, padding: int) -> int:
    return size + 2 * padding - kernel + 1


def _pool_out(size: int) -> int:
    return math.ceil(size / 2)


class LeNet5(nn.Module):
    def __init__(self, num_classes, in_channels=1, input_size=28, width=1.0, activation="relu",
                 extra_skip=False):
        super().__init__()
        if extra_skip:
            raise ValueError("extra_skip is not defined for lenet5")
        c1, c2, f1, f2 = (scale_width(c, width) for c in (6, 16, 120, 84))
        size = _pool_out(_conv_out(input_size, 5, 2))
        pad2 = max(0, (6 - size) // 2)
        size = _pool_out(_conv_out(size, 5, pad2))

        self.conv1 = nn.Conv2d(in_channels, c1, 5, padding=2)
        self.act1 = make_activation(activation)
        self.pool1 = nn.MaxPool2d(2, ceil_mode=True)
        self.conv2 = nn.Conv2d(c1, c2, 5, padding=pad2)
        self.act2 = make_activation(activation)
        self.pool2 = nn.MaxPool2d(2, ceil_mode=True)
        self.fc1 = nn.Linear(c2 * size * size, f1)
        self.act3 = make_activation(activation)
        self.fc2 = nn.Linear(f1, f2)
        self.act4 = make_activation(activation)
        self.fc = nn.Linear(f2, num_classes)

    def stages(self):
        # the fc stage groups the three linear layers (a ModuleList: for parameters, not for calling)
        return [("conv1", self.conv1), ("conv2", self.conv2), ("fc", nn.ModuleList([self.fc1, self.fc2, self.fc]))]

    def forward(self, x):
        out = self.pool1(self.act1(self.conv1(x)))
        out = self.pool2(self.act2(self.conv2(out)))
        out = self.act3(self.fc1(out.flatten(1)))
        out = self.act4(self.fc2(out))
        return self.fc(out)


def lenet5(num_classes, **kwargs):
    return LeNet5(num_classes, **kwargs)
