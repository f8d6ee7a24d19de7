"""Activation sparsity (seed 000 Table A1, seed 002 Table 1): % of exactly-zero activation outputs per stage."""
from __future__ import annotations

import torch

from ..models import ACTIVATIONS, stages
from . import analysis

ACTIVATION_TYPES = tuple(c for c in ACTIVATIONS.values() if isinstance(c, type))


@torch.no_grad()
def activation_sparsity(model, x, batch_size: int = 1000) -> dict[str, float]:
    """For each stage (models.stages): 100 * (zero elements / all elements) over the outputs of every
    activation module inside it, for the inputs x (already normalised), in eval mode."""
    counts, hooks = {}, []
    for name, stage in stages(model):
        counts[name] = [0, 0]
        for m in stage.modules():
            if isinstance(m, ACTIVATION_TYPES):
                def hook(_m, _inp, out, c=counts[name]):
                    c[0] += int((out == 0).sum())
                    c[1] += out.numel()
                hooks.append(m.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        for i in range(0, len(x), batch_size):
            model(x[i:i + batch_size])
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return {k: 100.0 * z / n if n else float("nan") for k, (z, n) in counts.items()}


@analysis("activations", split="test", batch_size=1000)
def activations(model, mask, data, settings) -> dict:
    x, _ = data.split[settings["split"]]
    per_stage = activation_sparsity(model, data.normalize(x), settings["batch_size"])
    return {"stages": per_stage, "order": list(per_stage)}
