"""Gradient flow (Evci et al. 2020, Tessera et al. 2021), as the authors log it during training."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def gradient_flow(model, mask, x, y) -> float:
    """L2 norm of the masked gradient of the cross-entropy (no weight decay or other regulariser) over
    every trainable parameter, on the fixed examples (x, y) in one batch with BatchNorm in training mode.
    The model is left exactly as it was: mode, BN running statistics and any existing .grad."""
    was_training = model.training
    buffers = {k: b.clone() for k, b in model.named_buffers()}
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    try:
        model.train()
        loss = F.cross_entropy(model(x), y)
        grads = torch.autograd.grad(loss, [p for _, p in params], allow_unused=True)
    finally:
        with torch.no_grad():
            for k, b in model.named_buffers():
                b.copy_(buffers[k])
        model.train(was_training)
    total = torch.zeros((), dtype=torch.float64, device=x.device)
    for (n, _), g in zip(params, grads):
        if g is not None:
            total += ((g * mask[n]) if n in mask else g).double().pow(2).sum()
    return float(total.sqrt())
