"""Random Sparse Network Transformation (RST, dlth "Dual Lottery Ticket Hypothesis", section 5).

The run trains the DENSE network (needs_unpruned_init: the weights outside the ticket's random mask are
not zeroed) with a growing L2 penalty ½·λ·||θ*||² on the weights θ* outside the mask (eq. 3): after every
backward, grad += λ·w on those weights. λ starts at 0 and grows by `eta` every `every` optimisation
steps until it reaches `bound` (eq. 4), then stays there for `stabilise` more steps; the transformation
then removes the penalised weights (the live mask becomes the mask file's, their weights are zeroed)
and the variant that fine-tunes starts from this run's final.pt (init: variant). The paper's settings:
eta 1e-4, every 5, bound 1, stabilise 40,000: 10,000 x 5 + 40,000 = 90,000 steps (batch 64, lr 1e-3).

Cycles (RST-Iter, `cycles` > 1): the mask file's pruned weights are removed in `cycles` nested steps,
a uniform-random sequence of masks M_1 ⊇ M_2 ⊇ ... ⊇ M_C = the mask file's. In layer l, with n_l weights
of which the mask removes R_l (sparsity s_l = R_l / n_l), M_c removes r_c = round(n_l·(1-(1-s_l)^(c/C)))
of them (r_C = R_l): every cycle removes the same fraction of the remaining weights, as IMP and LTH-Iter
do, so the layer-wise ratios of the mask file (uniform, or e.g. GraSP's) are kept at every cycle. Which
ones: the first r_c of the layer's pruned positions in one random order drawn from a generator seeded by
the run's seed, so the masks nest and are a pure function of (seed, mask). Cycle c (steps
(c-1)·L .. c·L-1, L = the one-cycle schedule) penalises the weights outside M_c with λ restarting from
0; at its end the weights outside M_c are removed (the live mask becomes M_c). The paper does not
describe the nested selection; "each iteration RST randomly selects weights to add regularization and
removes them at the end of this iteration" (section 6.1) is what this implements. RST-Iter's settings:
every 1, stabilise 10,000 (20,000 steps per cycle).

The run's recipe must have exactly the schedule's number of steps (recipe.steps = cycles x L); the
tweak checks it when the run starts and names the number to set.
"""
from __future__ import annotations

import math

import torch

from ..masks import Mask
from . import TWEAKS, Tweak


def increments(eta: float, bound: float) -> int:
    """How many eta-steps λ takes from 0 to the bound (the last one may be cut at the bound)."""
    return math.ceil(bound / eta - 1e-9)


def cycle_steps(eta: float, every: int, bound: float, stabilise: int) -> int:
    """Optimisation steps of one cycle: λ's ramp (increments x every) plus the stabilisation."""
    return increments(eta, bound) * every + stabilise


def rst_lambda(step: int, eta: float, every: int, bound: float, stabilise: int) -> tuple[int, float]:
    """(cycle index from 0, λ) at global optimisation step `step`: within a cycle, λ = min(bound,
    eta x floor(t / every)) at its step t (eq. 4: λ_{p+1} = λ_p + eta every `every` steps while λ_p < bound)."""
    cycle, t = divmod(step, cycle_steps(eta, every, bound, stabilise))
    k = t // every
    return cycle, bound if k >= increments(eta, bound) else min(bound, k * eta)


def cycle_masks(target: Mask, cycles: int, seed: int) -> list[Mask]:
    """The nested masks M_1 ⊇ ... ⊇ M_C = target (see the module doc): in each layer the target's pruned
    positions in one random order (generator seeded by `seed`, layers in the mask's order); M_c removes
    the first r_c of them."""
    g = torch.Generator().manual_seed(seed)
    out = [Mask() for _ in range(cycles)]
    for k, m in target.items():
        n = m.numel()
        pruned = torch.nonzero(~m.flatten().cpu()).flatten()
        order = pruned[torch.randperm(len(pruned), generator=g)]
        for c in range(1, cycles + 1):
            r = len(pruned) if c == cycles else round(n * (1.0 - (1.0 - len(pruned) / n) ** (c / cycles)))
            keep = torch.ones(n, dtype=torch.bool)
            keep[order[:r]] = False
            out[c - 1][k] = keep.view_as(m).to(m.device)
    return out


@TWEAKS.register("rst")
class RST(Tweak):
    defaults = {"eta": 1e-4, "every": 5, "bound": 1.0, "stabilise": 40000, "cycles": 1}
    schema = {"eta": {"type": "number", "exclusiveMinimum": 0}, "every": {"type": "integer", "minimum": 1},
              "bound": {"type": "number", "exclusiveMinimum": 0}, "stabilise": {"type": "integer", "minimum": 0},
              "cycles": {"type": "integer", "minimum": 1}}
    needs_unpruned_init = True

    def __init__(self, **params):
        super().__init__(**params)
        p = self.params
        self.length = cycle_steps(p["eta"], p["every"], p["bound"], p["stabilise"])
        self.total = p["cycles"] * self.length
        self._cycle_masks = None  # M_1..M_C and, per cycle, name -> 1.0 outside M_c: functions of (seed, mask)
        self._penalised = None

    def on_init(self, model, mask, ctx):
        p = self.params
        if not ctx.target_mask:
            raise ValueError("tweak 'rst' needs a mask (the random ticket to transform), the run has none")
        if ctx.total_steps != self.total:
            raise ValueError(
                f"tweak 'rst': the transformation is {self.total} optimisation steps ({p['cycles']} cycle(s) x "
                f"({increments(p['eta'], p['bound'])} increments of eta={p['eta']} every {p['every']} steps + "
                f"stabilise {p['stabilise']})), but the run has {ctx.total_steps}; set the variant's recipe.steps "
                f"to {self.total} (and epochs to at least {-(-self.total // ctx.steps_per_epoch)})")
        for m in ctx.mask.values():  # train the dense network: the live mask keeps every weight
            m.fill_(True)
        ctx.log["rst"] = {"steps": self.total, "cycle_steps": self.length, "cycles": p["cycles"],
                          "cycle_sparsity": [c.sparsity for c in self._masks(ctx)]}

    def _masks(self, ctx) -> list[Mask]:
        if self._cycle_masks is None:
            self._cycle_masks = cycle_masks(ctx.target_mask, self.params["cycles"], int(ctx.spec["seed"]))
            self._penalised = [{k: (~m).float() for k, m in c.items()} for c in self._cycle_masks]
        return self._cycle_masks

    def after_backward(self, model, step, ctx):
        p = self.params
        masks = self._masks(ctx)
        cycle, lam = rst_lambda(step, p["eta"], p["every"], p["bound"], p["stabilise"])
        params = dict(model.named_parameters())
        if lam:
            for k, out in self._penalised[cycle].items():
                w = params[k]
                w.grad.add_(w.detach() * out, alpha=lam)
        if step == self.total - 1:  # the end of the transformation: the penalised weights are removed
            removed = ctx.target_mask
        elif cycle > 0 and step % self.length == 0:  # a new cycle: the previous cycle's weights are removed
            removed = masks[cycle - 1]
        else:
            return False
        for k, m in ctx.mask.items():
            m.copy_(removed[k])
        return True
