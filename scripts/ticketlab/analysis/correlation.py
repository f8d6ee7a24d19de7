"""The correlation indicator R_p of sanity (Appendix G): how many of the large-magnitude weights of a
run's initial weights are also large in its trained weights.

For each layer l the masks cover, T_p(theta^l) is the set of positions of the k_l largest |w| among the
layer's remaining weights (a sparse network ranks only its kept weights; N_l = their number), with
k_l = ceil(p * N_l), and

    R_p(theta, theta') = sum_l |T_p(theta^l) & T_p(theta'^l)| / sum_l k_l.

Appendix G's denominator is p * sum_l N_l; sum_l k_l equals it up to the rounding of each layer's count,
and makes R_p(theta, theta) = 1 exactly (ceil rather than round: every layer with a remaining weight
takes part at every p > 0). For two independent orderings R_p is p on average (a hypergeometric overlap
of two k_l-subsets of N_l), the paper's "no correlation" line. No code for R_p was released; this
follows the definition. Pairs (Appendix G): (theta_0, theta_T) of the dense run, (theta_0 * m, theta_T * m)
of the ticket, (theta'_0 * m, theta'_T * m) of its random re-initialisation: always the run's own
starting weights (train.initial_weights: an rr run's re-draw is rebuilt from its spec) and its final ones.
"""
from __future__ import annotations

import math

import torch

from ..masks import MaskError, covered
from . import analysis


def top_count(p: float, n: int) -> int:
    """k = ceil(p * n), insensitive to the float error of p * n (0.7 * 10 is 7.000000000000001)."""
    return min(n, math.ceil(round(p * n, 9)))


def top_positions(w: torch.Tensor, kept: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean tensor (flat) marking the k largest |w| among the kept entries."""
    score = torch.where(kept.flatten(), w.detach().flatten().abs().double(),
                        torch.tensor(-math.inf, dtype=torch.float64))
    top = torch.zeros(w.numel(), dtype=torch.bool)
    top[torch.topk(score, k, sorted=False).indices] = True
    return top


def correlation_indicator(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], kept: dict[str, torch.Tensor],
                          p: float) -> float:
    """R_p(a, b) over the layers of `kept` (name -> bool tensor of the remaining weights)."""
    overlap, total = 0, 0
    for name, m in kept.items():
        k = top_count(p, int(m.sum()))
        if k == 0:
            continue
        both = top_positions(a[name].cpu(), m.cpu(), k) & top_positions(b[name].cpu(), m.cpu(), k)
        overlap, total = overlap + int(both.sum()), total + k
    return overlap / total if total else float("nan")


def remaining(model, mask, layers: str, keep_dense: list[str]) -> dict[str, torch.Tensor]:
    """The remaining weights of each layer R_p ranks: the layers `layers`/`keep_dense` select (as a mask
    set's), kept entries as the run's mask says (every entry of a layer it does not cover). A mask
    covering a layer outside that selection is an error: the settings must match the runs' mask set."""
    weights = covered(model, layers, keep_dense)
    outside = sorted(set(mask) - set(weights))
    if outside:
        raise MaskError(f"correlation: the run's mask covers {outside[:3]}, outside layers={layers!r} "
                        f"keep_dense={keep_dense}; set the analysis to the mask set's layers")
    return {k: (mask[k].cpu() if k in mask else torch.ones_like(w, dtype=torch.bool, device="cpu"))
            for k, w in weights.items()}


@analysis("correlation", needs_init=True, ps=[0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0],
          layers="conv", keep_dense=[])
def correlation(model, mask, data, settings, init) -> dict:
    """R_p(initial weights, trained weights) of the run for every p in settings["ps"]: curve "r_p"
    (x = p), as curve kinds read it; `layers` / `keep_dense` name the layers compared (the mask set's)."""
    kept = remaining(model, mask, settings["layers"], settings["keep_dense"])
    final = {k: v.detach() for k, v in model.state_dict().items()}
    values = [correlation_indicator(init, final, kept, p) for p in settings["ps"]]
    return {"curves": {"r_p": {"x": list(settings["ps"]), "y": values}},
            "remaining": {k: int(m.sum()) for k, m in kept.items()}}
