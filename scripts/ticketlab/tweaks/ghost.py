"""ToST's "ghost" tweaks (tost, section 2.2) and its name for layer-wise re-scaled init.

gsk  Ghost skip: the extra 1x1 conv + BN skips of `skip` (ConvBN extra_skip), their contribution gated by
     alpha, annealed from 1 to 0 so that alpha reaches 0 exactly at the first LR decay (progress =
     recipe milestones[0] epochs). From then on the skip path is not computed (its parameters get no
     gradient and are left out of the optimiser step) and export() drops the ghost parameters from final.pt,
     which then loads with strict=True into the plain architecture and gives the same outputs.
gsw  Ghost Swish: every activation is a parametric Swish x*sigmoid(beta*x) whose beta rises from beta_start
     (1 = Swish) to beta_end, and is replaced by exact ReLU from the first LR decay on (progress >=
     milestones[0]). The paper only says "gradually increase" beta; the default beta_end = 20 makes PSwish
     within 0.28/beta = 0.014 of ReLU everywhere by the switch, so the swap is mild (the released code
     used a fixed beta = 2 and no switch).
gsk_keep, gsw_keep  the same modules kept to the end (no annealing, no removal; tost Figure 6).
lrsi  layer-wise re-scaled initialisation = the `scaling` tweak (GradInit), under tost's name.

Schedules: with t = min(progress / milestones[0], 1), shape "linear" ramps t, "cosine" (1 - cos(pi t)) / 2;
alpha = 1 - ramp, beta = beta_start + (beta_end - beta_start) * ramp. Both are pure functions of progress,
so a resumed run recomputes them exactly.
"""
from __future__ import annotations

import math

from torch import nn

from ..models.layers import ConvBN, PSwish, is_extra
from . import TWEAKS, Tweak
from .scaling import Scaling

SHAPES = ("linear", "cosine")


def ramp(progress: float, end: float, shape: str = "linear") -> float:
    """0 at progress 0, 1 from progress `end` on; linear or half-cosine in between."""
    t = min(max(progress / end, 0.0), 1.0)
    if shape == "linear":
        return t
    if shape == "cosine":
        return 0.5 * (1.0 - math.cos(math.pi * t))
    raise ValueError(f"unknown schedule shape {shape!r}; known: {list(SHAPES)}")


def first_decay(ctx, tweak: str) -> float:
    """milestones[0] of the recipe, checked to fall inside training (the ghost must be gone before the end)."""
    r = ctx.spec["recipe"]
    ms = r.get("milestones") or []
    if not ms or not 0 < ms[0] < r["epochs"]:
        raise ValueError(f"tweak {tweak!r} needs a first LR decay inside training (0 < milestones[0] < epochs); "
                         f"recipe has milestones {ms} and {r['epochs']} epochs")
    return float(ms[0])


def gate_schedule(progress: float, end: float, shape: str = "linear") -> float:
    """alpha: 1 at progress 0, exactly 0 from progress `end` (the first LR decay) on."""
    return 0.0 if progress >= end else 1.0 - ramp(progress, end, shape)


def beta_schedule(progress: float, end: float, beta_start: float, beta_end: float, shape: str = "linear") -> float:
    return beta_start + (beta_end - beta_start) * ramp(progress, end, shape)


class _Modules:
    """Caches the modules of one kind in the model a tweak last saw (on_train_step runs every step)."""

    def __init__(self, select):
        self.select, self.model, self.modules = select, None, []

    def __call__(self, model: nn.Module) -> list[nn.Module]:
        if self.model is not model:
            self.model, self.modules = model, [m for m in model.modules() if self.select(m)]
        return self.modules


def strip_extra(state: dict) -> dict:
    """The state dict without the extra skip modules' entries (ConvBN.skip_conv / skip_bn)."""
    return {k: v for k, v in state.items() if not any(part in ConvBN.EXTRA_MODULES for part in k.split(".")[:-1])}


@TWEAKS.register("gsk")
class GhostSkip(Tweak):
    defaults = {"shape": "linear"}
    schema = {"shape": {"enum": list(SHAPES)}}

    def __init__(self, **params):
        super().__init__(**params)
        self._skips = _Modules(lambda m: isinstance(m, ConvBN) and m.has_extra_skip)
        self._ghosts = _Modules(is_extra)

    def model_kwargs(self):
        return {"extra_skip": True}

    def on_train_step(self, model, progress, ctx):
        alpha = gate_schedule(progress, first_decay(ctx, "gsk"), self.params["shape"])
        for m in self._skips(model):
            m.skip_gate = alpha
        if alpha == 0.0:  # removed: no optimiser update (momentum, weight decay) of the ghost parameters either
            for m in self._ghosts(model):
                for p in m.parameters():
                    p.grad = None

    def export(self, state):
        return strip_extra(state)


@TWEAKS.register("gsk_keep")
class KeptSkip(Tweak):
    """The skip path of gsk at alpha = 1 to the end, exported with it (the `skip` tweak under ToST's name)."""

    def model_kwargs(self):
        return {"extra_skip": True}


@TWEAKS.register("gsw")
class GhostSwish(Tweak):
    defaults = {"shape": "linear", "beta_start": 1.0, "beta_end": 20.0}
    schema = {"shape": {"enum": list(SHAPES)}, "beta_start": {"type": "number", "minimum": 0},
              "beta_end": {"type": "number", "minimum": 0}}

    def __init__(self, **params):
        super().__init__(**params)
        self._acts = _Modules(lambda m: isinstance(m, PSwish))

    def model_kwargs(self):
        return {"activation": "pswish"}

    def on_train_step(self, model, progress, ctx):
        end = first_decay(ctx, "gsw")
        relu = progress >= end
        beta = beta_schedule(progress, end, self.params["beta_start"], self.params["beta_end"], self.params["shape"])
        for m in self._acts(model):
            m.relu, m.beta = relu, beta


@TWEAKS.register("gsw_keep")
class KeptSwish(GhostSwish):
    """PSwish at a fixed beta_start (1 = Swish) to the end. The beta is not in the state dict: a model built
    to evaluate final.pt of a run with beta_start != 1 must set it (PSwish.beta) again."""
    defaults = {"beta_start": 1.0}
    schema = {"beta_start": {"type": "number", "minimum": 0}}

    def on_train_step(self, model, progress, ctx):
        for m in self._acts(model):
            m.relu, m.beta = False, float(self.params["beta_start"])


@TWEAKS.register("lrsi")
class LRsI(Scaling):
    """Layer-wise re-scaled initialisation (tost's "LRsI"): the `scaling` tweak, same settings."""
