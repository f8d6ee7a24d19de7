"""Building blocks shared by all models: activations, width scaling and ConvBN (with the optional extra skip)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ticketlab.registry import Registry

# name -> zero-arg factory returning a fresh activation module
ACTIVATIONS = Registry("activation")
ACTIVATIONS.register("relu")(nn.ReLU)
ACTIVATIONS.register("swish")(nn.SiLU)
ACTIVATIONS.register("mish")(nn.Mish)


@ACTIVATIONS.register("pswish")
class PSwish(nn.Module):
    """Parametric Swish x*sigmoid(beta*x) (tost, 2.2): beta=1 is Swish, beta->inf tends to ReLU.
    `beta` is a plain float (not a parameter or buffer, so the state dict is that of the ReLU model);
    with `relu = True` the module computes exactly F.relu(x). The ghost tweak (tweaks/ghost.py) sets both."""

    def __init__(self, beta: float = 1.0):
        super().__init__()
        self.beta = float(beta)
        self.relu = False

    def forward(self, x):
        if self.relu:
            return F.relu(x)
        return x * torch.sigmoid(self.beta * x)

    def extra_repr(self):
        return "relu" if self.relu else f"beta={self.beta:g}"


EXTRA_SKIP_WEIGHT = 1e-4  # constant fill of the extra 1x1 skip convs, as in the authors' released code


def make_activation(name: str) -> nn.Module:
    return ACTIVATIONS.get(name)()


def scale_width(channels: int, width: float) -> int:
    """Channel count multiplied by the width factor, rounded, at least 1."""
    return max(1, int(round(channels * width)))


def mark_extra(module: nn.Module) -> nn.Module:
    """Flag a module as part of an extra skip path, so pruning code can leave it out."""
    module.ticketlab_extra = True
    return module


def is_extra(module: nn.Module) -> bool:
    return bool(getattr(module, "ticketlab_extra", False))


def conv2d(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """conv(x), except where oneDNN's AVX2 1x1 kernel (jit_1x1:avx2, oneDNN 3.12 in torch 2.13 and 2.14) writes
    past its buffer and corrupts the heap: the weight gradient of a 1x1 conv with stride > 1 on 2 to 7 input
    channels, channels-last fp32 on a CPU (e.g. ResNet-18 at width 1/16: the 4 -> 8 shortcut). There the same
    sums are taken on the input subsampled by the stride, at stride 1, which another kernel computes. Nowhere
    else does it change a thing (tests/test_models.py)."""
    s = conv.stride
    if (s != (1, 1) and conv.kernel_size == (1, 1) and conv.padding == (0, 0) and conv.groups == 1
            and 2 <= conv.in_channels < 8 and x.device.type == "cpu" and x.dtype == torch.float32
            and x.ndim == 4 and x.is_contiguous(memory_format=torch.channels_last)
            and not torch.is_autocast_enabled(x.device.type)):
        return F.conv2d(x[:, :, ::s[0], ::s[1]], conv.weight, conv.bias, 1, 0, conv.dilation, 1)
    return conv(x)


class ConvBN(nn.Module):
    """conv (no bias) followed by BatchNorm2d. With extra_skip=True and kernel_size 3, adds an extra skip
    connection across the conv: out = bn(conv(x)) + skip_gate * skip_bn(skip_conv(x)), skip_conv a 1x1 conv
    with the same stride and in/out channels (groups=1), weights filled with 1e-4 (as in the authors' released code),
    followed by its own BatchNorm2d. Activation is NOT applied inside (the caller applies it after adding).
    For other kernel sizes extra_skip is ignored (no skip across 1x1 convs).
    `skip_gate` is a plain float (default 1.0; the ghost tweak anneals it): at 0 the skip path is not computed
    at all, so its parameters get no gradient and its BN statistics stay as they are."""

    EXTRA_MODULES = ("skip_conv", "skip_bn")  # the submodules of the extra skip (flagged ticketlab_extra)

    def __init__(self, cin, cout, kernel_size, stride=1, padding=None, groups=1, extra_skip=False):
        super().__init__()
        if padding is None:
            padding = kernel_size // 2
        self.conv = nn.Conv2d(cin, cout, kernel_size, stride=stride, padding=padding, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.has_extra_skip = bool(extra_skip) and kernel_size == 3
        self.skip_gate = 1.0
        if self.has_extra_skip:
            self.skip_conv = mark_extra(nn.Conv2d(cin, cout, 1, stride=stride, bias=False))
            self.skip_bn = mark_extra(nn.BatchNorm2d(cout))
            with torch.no_grad():
                self.skip_conv.weight.fill_(EXTRA_SKIP_WEIGHT)

    def forward(self, x):
        out = self.bn(conv2d(self.conv, x))
        if self.has_extra_skip and self.skip_gate != 0.0:
            skip = self.skip_bn(conv2d(self.skip_conv, x))
            out = out + (skip if self.skip_gate == 1.0 else self.skip_gate * skip)
        return out
