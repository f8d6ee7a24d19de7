"""Loss landscapes along filter-normalised random directions (Li et al. 2018, "ignore biasbn")."""
from __future__ import annotations

import copy
import time

import numpy as np
import torch

from ..progress import Progress
from ..training import fixed_examples
from . import analysis
from .hessian import _loss_acc


def direction(model, mask, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """A Gaussian direction per parameter, zero for biases and BN parameters (ndim <= 1), masked on
    pruned weights BEFORE normalising, then each filter (slice along dim 0) rescaled to the norm of
    the corresponding filter of the (masked) weights. Buffers are not part of it."""
    out = {}
    for name, p in model.named_parameters():
        if p.ndim <= 1:
            out[name] = torch.zeros_like(p)
            continue
        d = torch.randn(p.shape, generator=generator).to(p.device, p.dtype)
        w = p.detach()
        if name in mask:
            d, w = d * mask[name], w * mask[name]
        dn = d.flatten(1).norm(dim=1)
        wn = w.flatten(1).norm(dim=1)
        out[name] = d * (wn / (dn + 1e-10)).view(-1, *[1] * (p.ndim - 1))
    return out


def loss_grid(model, directions: list[dict], coords: list[list[float]], x, y, batch_size: int = 1000):
    """Loss and accuracy (eval mode) at theta + sum_i c_i d_i for every point c of the product grid of
    `coords` (one coordinate list per direction); arrays indexed [..., j, i] = [y index, x index]."""
    probe = copy.deepcopy(model).eval()
    params = dict(probe.named_parameters())
    base = {k: p.detach().clone() for k, p in params.items()}
    shape = [len(c) for c in reversed(coords)]
    loss, acc = np.zeros(shape), np.zeros(shape)
    progress = Progress(int(np.prod(shape)), "landscape: grid points")
    for idx in np.ndindex(*shape):
        point = list(reversed(idx))  # (i for x, j for y)
        with torch.no_grad():
            for k, p in params.items():
                p.copy_(base[k] + sum(coords[n][point[n]] * d[k] for n, d in enumerate(directions)))
        loss[idx], acc[idx] = _loss_acc(probe, x, y, batch_size)
        progress.update()
    return loss, acc


@analysis("landscape", dims=2, steps=21, radius=1.0, split="train", examples=1000, batch_size=1000, seed=0)
def landscape(model, mask, data, settings) -> dict:
    """The loss surface around the trained weights on a fixed subset of the split (no augmentation),
    1-D or 2-D, coordinates linspace(-radius, radius, steps) along filter-normalised directions."""
    s = settings
    x, y = fixed_examples(data, s["examples"], s["seed"], s["split"])
    g = torch.Generator().manual_seed(s["seed"])
    dirs = [direction(model, mask, g) for _ in range(s["dims"])]
    coords = [np.linspace(-s["radius"], s["radius"], s["steps"]).tolist()] * s["dims"]
    t0 = time.perf_counter()
    loss, acc = loss_grid(model, dirs, coords, x, y, s["batch_size"])
    seconds = (time.perf_counter() - t0) / loss.size
    return {"dims": s["dims"], "x": coords[0], "y": coords[1] if s["dims"] == 2 else None,
            "loss": loss.tolist(), "acc": acc.tolist(), "point_seconds": seconds, "examples": len(y)}
