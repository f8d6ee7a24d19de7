"""Layer-wise re-scaled initialisation ("Scaling" in spend, LRsI in tost), after GradInit
(Zhu et al. 2021), as the released code computes it (ToST `LRsI/gradinit_utils.py` with GradInit's
`RescaleAdam`). Applied to the ticket's masked initialisation (mask first, then scale).

One learnable scalar per weight and bias tensor of every conv / linear / BN layer, starting at 1, so that
p = s * p_init. Each iteration draws loader batches B0, B1 and takes the gradient g of the loss on B0+B1
(a batch of twice the training batch). If ||g|| > gamma, the objective is ||g|| (differentiated through
g, second order). Otherwise it is the loss on B0+B2 after one SGD step p - eta * g (/ ||g|| when
`normalize_grad`), divided by eta; the step is a constant there (first order). With `batch_overlap: false`
the objective's B0 is replaced by a fresh batch (the released `--batch-no-overlap`).

`inner_grad` decides g on a sparse ticket:
  dense   (the released code) g and ||g|| over whole tensors, pruned positions included; the look-ahead
          step leaves the sparse subspace (pruned weights move during the step only).
  masked  g restricted to the kept positions: the look-ahead step stays in the sparse subspace.
Either way only the scales change, so pruned weights stay exactly zero in the final weights.

The scales follow RescaleAdam: each scale's gradient is clipped to [-grad_clip, grad_clip] (per dimension;
0 = no clipping); objective and constraint steps keep their own first moment and step count, sharing the
second moment, whose bias correction counts all steps; weight scales are floored at `min_scale`, bias
scales at 0, and a tensor whose norm is zero (a zero bias, or a bias scale that reached 0) is left as is.
Model in eval mode (no dropout), BN layers in training mode without touching their running statistics.
"""
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from . import TWEAKS, Tweak

SCALED = (nn.Conv2d, nn.Linear, nn.BatchNorm2d, nn.BatchNorm1d)
BETAS, EPS = (0.9, 0.999), 1e-8  # RescaleAdam's (torch Adam's) defaults, not set by the released scripts


def scaled_names(model: nn.Module) -> list[str]:
    return [f"{m}.{p}" for m, mod in model.named_modules() if isinstance(mod, SCALED)
            for p, _ in mod.named_parameters(recurse=False)]


class RescaleAdam:
    """Adam on a vector of scales, with RescaleAdam's two first moments (index 0: objective, 1: constraint)."""

    def __init__(self, scales: torch.Tensor, base_norms: torch.Tensor, floor: torch.Tensor, lr: float, clip: float):
        self.s, self.base_norms, self.floor, self.lr, self.clip = scales, base_norms, floor, lr, clip
        self.m = torch.zeros(2, len(scales), dtype=scales.dtype, device=scales.device)
        self.t = torch.zeros_like(self.m)
        self.v = torch.zeros_like(scales)

    @torch.no_grad()
    def step(self, grad: torch.Tensor, constraint: bool):
        (b1, b2), i = BETAS, int(constraint)
        g = grad.clamp(-self.clip, self.clip) if self.clip > 0 else grad
        live = (self.s * self.base_norms) != 0  # the released optimiser skips zero-norm tensors entirely
        self.t[i] += live
        self.m[i] = torch.where(live, b1 * self.m[i] + (1 - b1) * g, self.m[i])
        self.v = torch.where(live, b2 * self.v + (1 - b2) * g * g, self.v)
        bc1 = 1 - b1 ** self.t[i]
        bc2 = 1 - b2 ** self.t.sum(0)
        update = self.lr / bc1 * self.m[i] / ((self.v / bc2).sqrt() + EPS)
        self.s.copy_(torch.where(live, torch.maximum(self.s - update, self.floor), self.s))


class BatchStatsBN:
    """Model in eval mode, BN layers in training mode without updating their running statistics."""

    def __init__(self, model: nn.Module):
        self.model, self.bns = model, [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]

    def __enter__(self):
        self.saved = self.model.training, [(m.training, m.track_running_stats) for m in self.bns]
        self.model.eval()
        for m in self.bns:
            m.training, m.track_running_stats = True, False

    def __exit__(self, *exc):
        self.model.train(self.saved[0])
        for m, (training, track) in zip(self.bns, self.saved[1]):
            m.training, m.track_running_stats = training, track


def gradinit(model: nn.Module, mask, batches, iterations: int, eta: float, gamma: float, lr: float,
             min_scale: float, grad_clip: float, normalize_grad: bool, inner_grad: str = "dense",
             batch_overlap: bool = True, log: dict | None = None) -> dict[str, float]:
    names = scaled_names(model)
    base = {k: v.detach().clone() for k, v in model.named_parameters()}
    dev = base[names[0]].device
    # float64 scales and moments: the released optimiser keeps them as Python floats
    scales = torch.ones(len(names), dtype=torch.float64, device=dev, requires_grad=True)
    floor = torch.tensor([0.0 if k.rsplit(".", 1)[-1] == "bias" else min_scale for k in names],
                         dtype=torch.float64, device=dev)
    norms = torch.stack([base[k].norm().double() for k in names])
    opt = RescaleAdam(scales, norms, floor, lr, grad_clip)
    keep = [mask[k] if inner_grad == "masked" and k in mask else None for k in names]
    forward = lambda params, x: functional_call(model, {**base, **params}, (x,))  # noqa: E731
    constraint_steps = 0
    with BatchStatsBN(model):
        for _ in range(iterations):
            (x0, y0), (x1, y1) = batches(), batches()
            theta = {k: base[k] * scales[i].to(base[k].dtype) for i, k in enumerate(names)}
            loss = F.cross_entropy(forward(theta, torch.cat([x0, x1])), torch.cat([y0, y1]))
            grads = torch.autograd.grad(loss, list(theta.values()), create_graph=True)
            grads = [g if m is None else g * m for g, m in zip(grads, keep)]
            gnorm = torch.sqrt(sum((g * g).sum() for g in grads))
            constraint = gnorm.item() > gamma
            if constraint:
                objective = gnorm
                constraint_steps += 1
            else:
                x2, y2 = batches()
                if not batch_overlap:
                    x0, y0 = batches()
                size = eta / gnorm if normalize_grad else eta
                # the step is a constant of the objective (the released `weight - step.data`): first order
                stepped = {k: p - (size * g).detach() for (k, p), g in zip(theta.items(), grads)}
                objective = F.cross_entropy(forward(stepped, torch.cat([x0, x2])), torch.cat([y0, y2])) / eta
            (grad,) = torch.autograd.grad(objective, scales)
            opt.step(grad, constraint)
    with torch.no_grad():
        for i, k in enumerate(names):
            model.get_parameter(k).copy_(base[k] * scales[i].to(base[k].dtype))
    if log is not None:
        log["constraint_steps"] = constraint_steps
    return {k: s.item() for k, s in zip(names, scales.detach())}


@TWEAKS.register("scaling")
class Scaling(Tweak):
    # The authors' README settings (REFERENCE-NOTES): SGD inner step 0.1, gamma 1, normalised
    # gradient, Adam 1e-2, 180 iterations, gradient clip 1, minimum scale 0.01; inner gradient and
    # batches as the released code takes them (dense, half overlap).
    defaults = {"iterations": 180, "eta": 0.1, "gamma": 1.0, "lr": 1e-2, "min_scale": 0.01,
                "grad_clip": 1.0, "normalize_grad": True, "inner_grad": "dense", "batch_overlap": True}
    schema = {"iterations": {"type": "integer", "minimum": 1}, "eta": {"type": "number", "exclusiveMinimum": 0},
              "gamma": {"type": "number", "exclusiveMinimum": 0}, "lr": {"type": "number", "exclusiveMinimum": 0},
              "min_scale": {"type": "number", "minimum": 0}, "grad_clip": {"type": "number", "minimum": 0},
              "normalize_grad": {"type": "boolean"}, "inner_grad": {"enum": ["dense", "masked"]},
              "batch_overlap": {"type": "boolean"}}

    def on_init(self, model, mask, ctx):
        stats = {}
        ctx.log["scales"] = gradinit(model, mask, ctx.batches, **self.params, log=stats)
        ctx.log["gradinit_constraint_steps"] = stats["constraint_steps"]
