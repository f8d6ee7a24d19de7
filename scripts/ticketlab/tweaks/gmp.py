"""Gradual magnitude pruning during training (Zhu & Gupta 2018), gradflow's pruning run (section 4.3,
Table 3, Appendix B.1): the "pruning solution" whose mask and initialisation give the lottery ticket.

The run starts dense: on_init puts an all-ones live mask over the covered layers (`layers`: conv + linear
by default, every layer of LeNet-5 as the paper prunes them all). At steps t_start, t_start + every, ...
and t_end, each layer is pruned by weight magnitude (among the weights still kept) to
    s_t = sparsity * (1 - (1 - (t - t_start) / (t_end - t_start))^3)
(Zhu & Gupta's cubic schedule from s_i = 0), so that from t_end on every layer has exactly
round(sparsity * n) weights removed; pruned weights are zeroed (the run does it for every connection whose
state changed) and stay exactly zero. t_end must come before the run's last step, or the run would end
short of its sparsity. Each pruning is a function of the step, the weights and the live mask only, so a
resumed run repeats it exactly.
"""
from __future__ import annotations

from ..masks import Mask, covered, magnitude_prune
from . import TWEAKS, Tweak


def gmp_sparsity(step: int, sparsity: float, start: int, end: int) -> float:
    """s_t of the cubic schedule: 0 before t_start, `sparsity` from t_end on."""
    if step <= start:
        return 0.0
    if step >= end:
        return sparsity
    return sparsity * (1.0 - (1.0 - (step - start) / (end - start)) ** 3)


def is_pruning_step(step: int, start: int, end: int, every: int) -> bool:
    return start <= step <= end and ((step - start) % every == 0 or step == end)


@TWEAKS.register("gmp")
class GradualMagnitudePruning(Tweak):
    defaults = {"sparsity": 0.95, "start": 3000, "end": 7000, "every": 100, "layers": "conv_linear"}
    schema = {"sparsity": {"type": "number", "minimum": 0, "exclusiveMaximum": 1},
              "start": {"type": "integer", "minimum": 0}, "end": {"type": "integer", "minimum": 1},
              "every": {"type": "integer", "minimum": 1}, "layers": {"enum": ["conv", "conv_linear"]}}

    def on_init(self, model, mask, ctx):
        p = self.params
        if mask:
            raise ValueError("tweak 'gmp' prunes the dense network during training: use it on the dense mask set")
        if not p["start"] < p["end"] < ctx.total_steps:
            raise ValueError(f"tweak 'gmp': needs start < end < the run's {ctx.total_steps} steps "
                             f"(start {p['start']}, end {p['end']})")
        for name, w in covered(model, p["layers"]).items():
            mask[name] = Mask.ones_like({name: w})[name]

    def after_backward(self, model, step, ctx):
        p = self.params
        if not is_pruning_step(step, p["start"], p["end"], p["every"]):
            return False
        s = gmp_sparsity(step, p["sparsity"], p["start"], p["end"])
        params = dict(model.named_parameters())
        new = magnitude_prune({k: params[k].detach() for k in ctx.mask}, s, Mask(ctx.mask), scope="layer")
        changed = False
        for k, m in new.items():
            if not changed and not bool((m == ctx.mask[k]).all()):
                changed = True
            ctx.mask[k].copy_(m)
        return changed
