"""Activation sparsity (spend Table A1, tost Table 1): % of activation outputs counted as zero per stage.

`threshold` eps: an output a counts as zero when |a| <= eps; eps 0 counts exact zeros only. Swish and Mish
almost never output an exact 0, so eps 0 gives them 0.00%; the papers' released measurement
(VITA-Group/ToST soft_activation/activation_analysis.py: active = np.abs(a) > 1e-2) is eps = 0.01."""
from __future__ import annotations

import torch

from ..models import ACTIVATIONS, stages
from . import analysis

ACTIVATION_TYPES = tuple(c for c in ACTIVATIONS.values() if isinstance(c, type))


@torch.no_grad()
def activation_sparsity(model, x, batch_size: int = 1000, threshold: float = 0.0) -> dict[str, float]:
    """For each stage (models.stages): 100 * (elements with |a| <= threshold / all elements) over the
    outputs of every activation module inside it, for the inputs x (already normalised), in eval mode."""
    counts, hooks = {}, []
    for name, stage in stages(model):
        counts[name] = [0, 0]
        for m in stage.modules():
            if isinstance(m, ACTIVATION_TYPES):
                def hook(_m, _inp, out, c=counts[name]):
                    c[0] += int((out.abs() <= threshold).sum())  # threshold 0: out == 0, the exact zeros
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


@analysis("activations", split="test", batch_size=1000, threshold=0.0)
def activations(model, mask, data, settings) -> dict:
    x, _ = data.split[settings["split"]]
    per_stage = activation_sparsity(model, data.normalize(x), settings["batch_size"], settings["threshold"])
    return {"stages": per_stage, "order": list(per_stage), "threshold": settings["threshold"]}
