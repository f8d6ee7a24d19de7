"""Dynamic sparse training (gradflow, section 3.2 / 4.2): the live mask is updated during training.

set            SET (Mocanu et al. 2018): drop the lowest-|w| active connections, grow as many chosen uniformly
               at random among the connections inactive after the drop.
rigl           RigL (Evci et al. 2020): grow those with the highest |gradient| of the update step's batch (the
               dense gradient: after_backward keeps a copy before the run masks it for the optimiser).
rigl_inverted  the paper's control (section 4.2): grow those with the LOWEST |gradient|.

Every `every` optimisation steps (steps 0 < t < end; end defaults to the run's last step) the update comes
after the step: the optimiser steps under the old mask (gradients masked as on every step), the weights are
masked, then (after_step) each covered layer drops k = floor(f_t * active) of its active connections, those
with the smallest |w| after the step, and grows k, so its sparsity is the same after every update. This is
the order of RigL's code (rigl/sparse_optimizers_base.py: apply_gradients runs the optimiser update, then
cond_mask_update_op, whose drop score is |mask * w| of the updated weights) and of gradflow's own
(rigl/rigl_tf2/train.py: optimizer.apply_gradients, then mask_updater.update). As there (floor of the
fraction, growth among all connections not kept by the drop), a dropped connection may be grown back,
keeping its weight and momentum (reinit_when_same=False). Grown connections start at exactly zero (the step
was masked by the old mask) with zero momentum (the run zeroes the momentum of every connection whose state
changed, as RigL's reset_momentum). The drop fraction f_t decays: `lr` = drop_fraction * lr(t) / lr (seed
004 Appendix B.2: "decay with learning rate", the fraction at step 0 being drop_fraction), `cosine` =
drop_fraction * (1 + cos(pi t / end)) / 2 (RigL's schedule), or `constant`. Ties are broken by position
(stable sort), random draws come from a generator seeded by (the run's seed, step): the update is a pure
function of the step, the weights, the step's gradient and the mask, so a resumed run repeats it exactly.

When the run has a gradient-flow monitor (a trajectory analysis: ctx.gradient_flow), the gradient norm on the
monitor's examples is measured just before and just after each update (after the step; dropped weights
zeroed, grown ones at 0, as the next step sees them; gradflow's train.py measures at the same two points)
and logged as curves (ctx.log["curves"]: gradient_flow_before_update, gradient_flow_after_update and their
difference gradient_flow_delta, x = step), gradflow Figure 3.
"""
from __future__ import annotations

import math

import torch

from . import TWEAKS, Tweak

DECAYS = ("lr", "cosine", "constant")


def drop_fraction(params: dict, step: int, ctx) -> float:
    """f_t: the fraction of each layer's active connections replaced at step t."""
    f, decay = params["drop_fraction"], params["decay"]
    if decay == "constant":
        return f
    if decay == "cosine":
        return f * 0.5 * (1.0 + math.cos(math.pi * step / end_step(params, ctx)))
    if decay == "lr":
        return f * ctx.lr_at(step) / ctx.spec["recipe"]["lr"]  # the run's schedule (training.schedule.lr_at)
    raise ValueError(f"unknown drop-fraction decay {decay!r}; known: {list(DECAYS)}")


def end_step(params: dict, ctx) -> int:
    return params["end"] if params.get("end") is not None else ctx.total_steps


def is_update(params: dict, step: int, ctx) -> bool:
    return 0 < step < end_step(params, ctx) and step % params["every"] == 0


def _order(scores: torch.Tensor, descending: bool) -> torch.Tensor:
    """Indices of a flat score vector sorted (ties by position, so the order is deterministic)."""
    return torch.sort(scores, descending=descending, stable=True).indices


def update_layer(mask: torch.Tensor, weight: torch.Tensor, grow_scores: torch.Tensor, fraction: float) -> torch.Tensor:
    """The layer's new mask: keep the active connections with the largest |w| but k = floor(fraction *
    active), then activate the k connections not kept with the highest grow score (RigL's
    generic_mask_update)."""
    flat = mask.flatten()
    active = int(flat.sum())
    k = int(fraction * active)
    if k == 0:
        return mask.clone()
    drop_scores = torch.where(flat, weight.detach().abs().flatten().float(),
                              torch.full_like(flat, -1.0, dtype=torch.float))
    kept = torch.zeros_like(flat)
    kept[_order(drop_scores, descending=True)[:active - k]] = True
    grow = torch.where(kept, torch.full_like(grow_scores.flatten(), -math.inf), grow_scores.flatten().float())
    new = kept.clone()
    new[_order(grow, descending=True)[:k]] = True
    return new.view_as(mask)


class DynamicSparse(Tweak):
    defaults = {"every": 100, "end": None, "drop_fraction": 0.3, "decay": "lr"}
    schema = {"every": {"type": "integer", "minimum": 1}, "end": {"type": ["integer", "null"], "minimum": 1},
              "drop_fraction": {"type": "number", "minimum": 0, "maximum": 1}, "decay": {"enum": list(DECAYS)}}
    grow = "random"  # random | gradient | inverted_gradient

    def grow_scores(self, param: torch.Tensor, grad: torch.Tensor | None, g: torch.Generator) -> torch.Tensor:
        """Higher = grown first: uniform noise (SET; `grad` unused); RigL's subclasses use `grad`, the
        layer's dense gradient of the update step."""
        return torch.rand(param.shape, generator=g).to(param.device)

    def dense_gradients(self, step: int) -> dict | None:
        """The dense gradient of each covered layer at update step `step`, for growth (SET: none)."""
        return None

    def _check_mask(self, ctx) -> None:
        if not ctx.mask:
            raise ValueError(f"tweak {type(self).__name__}: dynamic sparse training needs a mask (the run has none)")

    def after_step(self, model, step, ctx):
        """The mask update, after the update step's optimiser step (taken under the old mask)."""
        if not is_update(self.params, step, ctx):
            return False
        self._check_mask(ctx)
        grads = self.dense_gradients(step)
        fraction = drop_fraction(self.params, step, ctx)
        params = dict(model.named_parameters())
        flow = getattr(ctx, "gradient_flow", None)
        before = flow(model, ctx.mask) if flow else None
        g = torch.Generator().manual_seed(int(ctx.spec["seed"]) * 1_000_003 + step)
        changed = False
        for name in list(ctx.mask):
            scores = self.grow_scores(params[name], grads[name] if grads is not None else None, g)
            new = update_layer(ctx.mask[name], params[name], scores, fraction)
            if not torch.equal(new, ctx.mask[name]):
                ctx.mask[name].copy_(new)
                changed = True
        if before is not None:
            with torch.no_grad():
                for name, m in ctx.mask.items():
                    params[name].mul_(m)  # dropped weights are zero for the next step (the run does the same)
            self._log(ctx, step, before, flow(model, ctx.mask))
        return changed

    @staticmethod
    def _log(ctx, step: int, before: float, after: float) -> None:
        curves = ctx.log.setdefault("curves", {})
        for name, y in (("gradient_flow_before_update", before), ("gradient_flow_after_update", after),
                        ("gradient_flow_delta", after - before)):
            c = curves.setdefault(name, {"x": [], "y": []})
            c["x"].append(step)
            c["y"].append(y)


@TWEAKS.register("set")
class SET(DynamicSparse):
    grow = "random"


class GradientGrown(DynamicSparse):
    """RigL's growth: by the dense gradient of the update step's batch. The run masks the gradients before
    the optimiser steps and the update comes after the step, so after_backward keeps a copy of the covered
    layers' dense gradients on update steps (this step's only: after_step takes it; nothing carries over
    to a later step, so resume stays bitwise)."""
    grow = "gradient"
    _kept: tuple[int, dict] | None = None  # (step, {layer: dense gradient})

    def grow_scores(self, param, grad, g):
        score = grad.abs()
        return score if self.grow == "gradient" else -score

    def after_backward(self, model, step, ctx):
        self._kept = None
        if not is_update(self.params, step, ctx):
            return False
        self._check_mask(ctx)
        params = dict(model.named_parameters())
        self._kept = (step, {name: params[name].grad.detach().clone() for name in ctx.mask})
        return False  # the mask changes in after_step

    def dense_gradients(self, step):
        kept, self._kept = self._kept, None
        if kept is None or kept[0] != step:
            raise RuntimeError(f"tweak {type(self).__name__}: no dense gradient of step {step} (after_backward "
                               f"keeps it at the same step, before the run masks the gradients)")
        return kept[1]


@TWEAKS.register("rigl")
class RigL(GradientGrown):
    grow = "gradient"


@TWEAKS.register("rigl_inverted")
class RigLInverted(GradientGrown):
    grow = "inverted_gradient"
