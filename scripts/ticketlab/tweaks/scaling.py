"""Layer-wise re-scaled initialisation ("Scaling" in seed 000, LRsI in seed 002), after GradInit
(Zhu et al. 2021). Applied to the ticket's masked initialisation (mask first, then scale).

One learnable scalar per weight and bias tensor of every conv / linear / BN layer, starting at 1,
so that p = s * p_init. Each iteration takes one SGD step of size eta (gradient normalised when
`normalize_grad`) on batch B1 and minimises the loss after that step on batch B2, divided by eta;
if the gradient norm on B1 exceeds gamma it minimises that norm instead. Scalars are updated with
Adam, their gradient clipped, and floored at `min_scale`. BN is in training mode; its running
statistics are restored afterwards. Gradients of pruned coordinates are masked, so the inner step
stays in the sparse subspace and pruned weights stay exactly zero.
"""
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from . import TWEAKS, Tweak

SCALED = (nn.Conv2d, nn.Linear, nn.BatchNorm2d, nn.BatchNorm1d)


def scaled_names(model: nn.Module) -> list[str]:
    return [f"{m}.{p}" for m, mod in model.named_modules() if isinstance(mod, SCALED)
            for p, _ in mod.named_parameters(recurse=False)]


def gradinit(model: nn.Module, mask, batches, iterations: int, eta: float, gamma: float, lr: float,
             min_scale: float, grad_clip: float, normalize_grad: bool) -> dict[str, float]:
    names = scaled_names(model)
    base = {k: v.detach().clone() for k, v in model.named_parameters()}
    buffers = {k: v.clone() for k, v in model.named_buffers()}
    scales = {k: torch.ones((), device=base[k].device, requires_grad=True) for k in names}
    opt = torch.optim.Adam(scales.values(), lr=lr)
    was_training = model.training
    model.train()
    for _ in range(iterations):
        (x1, y1), (x2, y2) = batches(), batches()
        theta = {k: base[k] * scales[k] if k in scales else base[k] for k in base}
        loss1 = F.cross_entropy(functional_call(model, (theta, buffers), (x1,)), y1)
        grads = torch.autograd.grad(loss1, list(theta.values()), create_graph=True)
        grads = [g * mask[k] if k in mask else g for k, g in zip(theta, grads)]
        gnorm = torch.sqrt(sum((g * g).sum() for g in grads))
        if gnorm.item() > gamma:
            objective = gnorm
        else:
            denom = gnorm if normalize_grad else 1.0
            stepped = {k: p - eta * g / denom for (k, p), g in zip(theta.items(), grads)}
            objective = F.cross_entropy(functional_call(model, (stepped, buffers), (x2,)), y2) / eta
        opt.zero_grad()
        objective.backward()
        torch.nn.utils.clip_grad_norm_(list(scales.values()), grad_clip)
        opt.step()
        with torch.no_grad():
            for s in scales.values():
                s.clamp_(min=min_scale)
    with torch.no_grad():
        scales = {k: s.detach() for k, s in scales.items()}
        for k, p in model.named_parameters():
            if k in scales:
                p.copy_(base[k] * scales[k])
    model.train(was_training)
    return {k: s.item() for k, s in scales.items()}


@TWEAKS.register("scaling")
class Scaling(Tweak):
    # The authors' README settings (REFERENCE-NOTES): SGD inner step 0.1, gamma 1, normalised
    # gradient, Adam 1e-2, 180 iterations, gradient clip 1, minimum scale 0.01.
    defaults = {"iterations": 180, "eta": 0.1, "gamma": 1.0, "lr": 1e-2, "min_scale": 0.01,
                "grad_clip": 1.0, "normalize_grad": True}
    schema = {"iterations": {"type": "integer", "minimum": 1}, "eta": {"type": "number", "exclusiveMinimum": 0},
              "gamma": {"type": "number", "exclusiveMinimum": 0}, "lr": {"type": "number", "exclusiveMinimum": 0},
              "min_scale": {"type": "number", "minimum": 0}, "grad_clip": {"type": "number", "exclusiveMinimum": 0},
              "normalize_grad": {"type": "boolean"}}

    def on_init(self, model, mask, ctx):
        ctx.log["scales"] = gradinit(model, mask, ctx.batches, **self.params)
