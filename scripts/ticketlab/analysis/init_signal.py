"""The signal of a sparse network at initialisation (gradflow, Figure 1c): the standard deviation of the
pre-softmax output for inputs drawn from N(0, 1), against sparsity, for the three initialisations of
tweaks/sparse_init.py (masked dense, Liu et al., the paper's per-unit fan-in).

It uses the analysed run's architecture only, not its trained weights: for every sparsity and draw the
model is given a new uniform random mask (the `random` mask method over every conv / linear layer: each
loses exactly round(s * n) weights; positions from a generator seeded by (seed, draw, sparsity)) and new
weights from each initialisation
(one shared standard-normal draw, as sparse_init does; biases zero), then the logits of `examples` inputs
x ~ N(0, 1) are computed in eval mode and their std taken over all entries. Attach it to the dense run.
"""
from __future__ import annotations

import copy

import torch

from ..masks import Mask, PruneContext, prunable
from ..pruners.zoo import random_mask
from ..tweaks.sparse_init import METHODS, reinitialise
from . import analysis


@torch.no_grad()
def output_std(model, mask: Mask, method: str, scale: float, mode: str, x: torch.Tensor, seed: int) -> float:
    """Std of model(x) after masking and re-initialising `model` (a scratch copy) with `method`."""
    reinitialise(model, mask, method, scale, mode, seed)
    mask.to(x.device).apply_(model)
    return float(model(x).double().std())


@analysis("init_signal", sparsities=[0.0, 0.5, 0.8, 0.9, 0.95, 0.98], draws=5, examples=1000,
          methods=list(METHODS), scale=2.0, mode="fan_in", seed=0)
def init_signal(model, mask, data, settings) -> dict:
    s = settings
    scratch = copy.deepcopy(model).eval()
    device = next(scratch.parameters()).device
    x = torch.randn((s["examples"], data.in_channels, data.input_size, data.input_size),
                    generator=torch.Generator().manual_seed(s["seed"])).to(device)
    draws = {m: [] for m in s["methods"]}
    for i, sp in enumerate(s["sparsities"]):
        for d in range(s["draws"]):
            seed = s["seed"] * 1_000_003 + 1000 * d + i
            m = random_mask(PruneContext(model=scratch, weights=prunable(scratch, "conv_linear"), sparsity=sp, spec={},
                                         generator=torch.Generator().manual_seed(seed)))
            for method in s["methods"]:
                draws[method].append({"sparsity": sp, "draw": d, "std": output_std(scratch, m, method, s["scale"],
                                                                                   s["mode"], x, seed)})
    curves = {method: {"x": list(s["sparsities"]),
                       "y": [float(torch.tensor([r["std"] for r in rs if r["sparsity"] == sp]).mean())
                             for sp in s["sparsities"]]}
              for method, rs in draws.items()}
    return {"curves": curves, "draws": draws}
