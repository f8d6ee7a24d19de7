"""Model zoo: build_model(arch, ...) from the MODELS registry, plus stages(model) for per-stage analysis."""
from __future__ import annotations

from torch import nn

from ticketlab.registry import Registry

from . import lenet, mobilenet, resnet, resnet_a, vgg
from .layers import ACTIVATIONS, ConvBN, is_extra, make_activation, scale_width

# name -> builder(num_classes, in_channels=..., input_size=..., width=..., activation=..., extra_skip=...)
MODELS = Registry("model")
for _name, _builder in [
    ("resnet18", resnet.resnet18),
    ("resnet34", resnet.resnet34),
    ("resnet50", resnet.resnet50),
    ("resnet20", resnet_a.resnet20),
    ("resnet32", resnet_a.resnet32),
    ("resnet56", resnet_a.resnet56),
    ("resnet110", resnet_a.resnet110),
    ("vgg16", vgg.vgg16),
    ("mobilenet", mobilenet.mobilenet),
    ("lenet5", lenet.lenet5),
]:
    MODELS.register(_name)(_builder)


def build_model(arch: str, num_classes: int, in_channels: int = 3, input_size: int = 32, width: float = 1.0,
                activation: str = "relu", extra_skip: bool = False, stage_widths: list[int] | None = None) -> nn.Module:
    """stage_widths (ResNets only): channels of each stage before the width factor, instead of the
    architecture's own (the small-dense search uses it to match a parameter count closely)."""
    builder = MODELS.get(arch)
    make_activation(activation)  # fail early with a clear message on an unknown activation
    extra = {}
    if stage_widths is not None:
        if not arch.startswith("resnet"):
            raise ValueError(f"stage_widths is defined for the ResNets only, not {arch!r}")
        extra["stage_widths"] = tuple(stage_widths)
    return builder(num_classes, in_channels=in_channels, input_size=input_size, width=width,
                   activation=activation, extra_skip=extra_skip, **extra)


def stages(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Named top-level stages: ResNets layer1..; VGG one block per max-pool; MobileNet 4 chunks;
    LeNet conv1, conv2, fc. Names are module paths (get_submodule works) except LeNet's "fc" group."""
    if not hasattr(model, "stages"):
        raise TypeError(f"{type(model).__name__} does not define stages()")
    return model.stages()


__all__ = ["MODELS", "ACTIVATIONS", "ConvBN", "build_model", "stages", "make_activation", "scale_width", "is_extra"]
