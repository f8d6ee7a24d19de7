"""Re-training tweaks: small, independent pieces a variant composes.

A tweak is a subclass of `Tweak` in its own module of this package, registered with
`@TWEAKS.register("name")`. It may
  * change how the model is built (`model_kwargs`, e.g. extra skips or the activation),
  * change the initialised, masked model before training (`on_init`, e.g. layer-wise scaling),
  * replace the loss (`loss`, e.g. label smoothing or distillation),
  * change the model during training (`on_train_step`, called before every optimisation step with the
    progress in epochs, e.g. the "ghost" schedules of tost),
  * act on the gradients and the live mask after every backward pass (`after_backward`, e.g. RST's
    growing penalty, gradual pruning), before the optimiser steps,
  * change the live mask after every optimiser step (`after_step`, e.g. SET / RigL mask updates: the step
    is taken under the old mask, then connections are dropped and grown, the order of gradflow's code), and
  * transform the state dict written as final.pt (`export`, e.g. strip the ghost skip parameters).
One training step runs: on_train_step, forward, backward, after_backward, the gradients masked by the live
mask, the optimiser step, the weights masked, after_step. After either mask hook returns True the run zeroes
the weights and the momentum of every connection whose state the hook changed (a grown connection starts at
exactly zero, with no velocity).
A tweak that trains the pruned weights too (RST's extrusion) sets `needs_unpruned_init = True`: the run then
does not zero them before `on_init`, and the tweak sets the live mask (ctx.mask) it trains under.
`on_train_step`, `after_backward` and `after_step` must be pure functions of (model, step, settings,
ctx.mask, ctx.target_mask): a resumed run rebuilds the model and restores only the weights, the optimiser,
the data order and the live mask, so nothing they compute may depend on earlier calls (resume is bitwise
identical); draw random numbers from a generator seeded by (seed, step). The one exception: `after_step`
may use what the same tweak's `after_backward` kept at the same step (e.g. the dense gradient, which the
run masks before the optimiser steps), as the run calls both within one step and never checkpoints
between them; drop it at the end of the step (it must not reach a later one).
Its settings are `defaults` (overridable in the config's `tweaks:` section and per variant);
`schema` (JSON schema of the settings) is checked when the configuration is loaded.
Adding a tweak = one module here + a variant entry in the config.
"""
from __future__ import annotations

from typing import Callable

import torch

from ..registry import Registry, import_modules

TWEAKS = Registry("tweak")


class Tweak:
    defaults: dict = {}
    schema: dict = {}  # JSON schema "properties" of the settings
    needs_unpruned_init = False

    def __init__(self, **params):
        self.params = {**self.defaults, **params}

    def model_kwargs(self) -> dict:
        return {}

    def on_init(self, model: torch.nn.Module, mask, ctx) -> None:
        pass

    def loss(self, ctx) -> Callable | None:
        """Return fn(logits, targets, inputs) -> scalar loss, or None to keep cross-entropy."""
        return None

    def on_train_step(self, model: torch.nn.Module, progress: float, ctx) -> None:
        """Called before every optimisation step (before the forward pass), progress = epochs completed as
        a float (epoch index + step / steps_per_epoch); ctx.spec["recipe"] has the milestones etc.
        Only tweaks that override it are called. Must depend on progress only (see the module doc)."""

    def after_backward(self, model: torch.nn.Module, step: int, ctx) -> bool:
        """Called after every backward pass, before the gradients are masked and the optimiser steps; `step`
        is the global optimisation step. The tweak may change parameter gradients and the live mask
        ctx.mask (name -> bool tensor, in place); it returns True when it changed the mask (the run then
        zeroes the weights and momentum of the connections whose state changed). Also in ctx:
        target_mask (the mask file's), opt, steps_per_epoch, total_steps, spec, and gradient_flow
        ((model, mask) -> float on the monitor's fixed examples, or None when nothing is monitored).
        Only tweaks that override it are called."""
        return False

    def after_step(self, model: torch.nn.Module, step: int, ctx) -> bool:
        """Called after every optimiser step, once the weights are masked by the live mask the step was
        taken under; `step` is the global optimisation step just taken (the same as after_backward's). The
        parameter gradients still hold this step's masked gradients (whatever after_backward did to them,
        times the mask). The tweak may change the live mask ctx.mask in place and returns True when it did:
        the run then zeroes the weights and momentum of the connections whose state changed, so a grown
        connection starts at exactly zero with zero momentum and a dropped one keeps no velocity. ctx as in
        after_backward. Only tweaks that override it are called."""
        return False

    def export(self, state: dict) -> dict:
        """Transform the state dict written as final.pt (what masks and analyses read)."""
        return state


def overrides(tweak: Tweak, hook: str) -> bool:
    """Whether the tweak's class overrides the base hook `hook`."""
    return getattr(type(tweak), hook) is not getattr(Tweak, hook)


import_modules(__name__, __path__)  # every module here: the tweaks register themselves


def build(tweak_specs: dict[str, dict]) -> list[Tweak]:
    """{name: params} -> tweak objects; rejects two tweaks that set the same model option or both
    replace the loss (e.g. swish + mish, ls + kd)."""
    tweaks = [TWEAKS.get(name)(**(params or {})) for name, params in tweak_specs.items()]
    seen: dict[str, str] = {}
    for name, t in zip(tweak_specs, tweaks):
        keys = list(t.model_kwargs()) + (["loss"] if overrides(t, "loss") else [])
        for key in keys:
            if key in seen:
                raise ValueError(f"tweaks {seen[key]!r} and {name!r} both set {key!r}; they cannot be combined")
            seen[key] = name
    return tweaks
