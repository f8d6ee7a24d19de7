"""Re-training tweaks: small, independent pieces a variant composes.

A tweak is a subclass of `Tweak` in its own module of this package, registered with
`@TWEAKS.register("name")`. It may
  * change how the model is built (`model_kwargs`, e.g. extra skips or the activation),
  * change the initialised, masked model before training (`on_init`, e.g. layer-wise scaling),
  * replace the loss (`loss`, e.g. label smoothing or distillation).
Its settings are `defaults` (overridable in the config's `tweaks:` section and per variant);
`schema` (JSON schema of the settings) is checked when the configuration is loaded.
Adding a tweak = one module here + a variant entry in the config.
"""
from __future__ import annotations

import importlib
import pkgutil
from typing import Callable

import torch

from ..registry import Registry

TWEAKS = Registry("tweak")


class Tweak:
    defaults: dict = {}
    schema: dict = {}  # JSON schema "properties" of the settings

    def __init__(self, **params):
        self.params = {**self.defaults, **params}

    def model_kwargs(self) -> dict:
        return {}

    def on_init(self, model: torch.nn.Module, mask, ctx) -> None:
        pass

    def loss(self, ctx) -> Callable | None:
        """Return fn(logits, targets, inputs) -> scalar loss, or None to keep cross-entropy."""
        return None


for _m in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_m.name}")


def build(tweak_specs: dict[str, dict]) -> list[Tweak]:
    """{name: params} -> tweak objects; rejects two tweaks that set the same model option or both
    replace the loss (e.g. swish + mish, ls + kd)."""
    tweaks = [TWEAKS.get(name)(**(params or {})) for name, params in tweak_specs.items()]
    seen: dict[str, str] = {}
    for name, t in zip(tweak_specs, tweaks):
        keys = list(t.model_kwargs()) + (["loss"] if type(t).loss is not Tweak.loss else [])
        for key in keys:
            if key in seen:
                raise ValueError(f"tweaks {seen[key]!r} and {name!r} both set {key!r}; they cannot be combined")
            seen[key] = name
    return tweaks
