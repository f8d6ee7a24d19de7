"""Initialisation of sparse networks (gradflow, section 3.1 and Appendix A): every conv / linear weight is
drawn again after masking, before training, from N(0, std^2) with one of three variance rules.

dense  the masked dense initialisation ("Original"): std = sqrt(scale / fan) with the layer's dense fan
       (fan_in = in_channels x kernel area; fan_out = out_channels x kernel area), then masked.
liu    Liu et al. (2019): the dense std divided by sqrt(density of the layer), i.e. the init of a small
       dense layer with as many weights.
fanin  the paper's Eq. (1) ("Ours", "+"): per output unit i, fan_in_i = its number of unmasked incoming
       weights over the kernel; std_i = sqrt(scale / fan_in_i). With mode fan_avg (Appendix A.1, the
       average case) weight (i, j) uses (fan_in_i + fan_out_j) / 2, fan_out_j = the unmasked outgoing
       weights of input unit j. Units without incoming (or weights without any) connection stay 0.

scale 2 with mode fan_in is He et al.'s rule (Eq. 1); scale 1 with fan_avg is Glorot's, which Appendix B.2
says the MNIST runs used. The three rules share one standard-normal draw z per weight (so they differ only
in scale, and at density 1 they coincide): z comes from a generator seeded by the seed the run built its
model from (torch.initial_seed() after training.Run builds the model: the run's seed, or reinit_seed for random
re-initialisation), so two runs of one seed draw the same z whatever their masks. That makes the lottery
ticket of a pruning run that starts from this init (gradflow's `prune` variant) its init x its mask.
Biases of the re-drawn layers are set to zero (TensorFlow's default bias initialiser, which the
authors' code uses; the signal at init then comes from the weights alone). Weights of layers a tweak
adds (ticketlab_extra) keep their own initialisation.
"""
from __future__ import annotations

import math

import torch

from ..masks import prunable
from . import TWEAKS, Tweak

METHODS = ("dense", "liu", "fanin")
SALT = 0x5EED_0004  # z is not the stream the model's default init came from


def fans(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(fan_in per output unit, fan_out per input unit) of a conv / linear weight mask (out, in, *kernel):
    the unmasked weights into unit i, summed over inputs and kernel positions, and out of input unit j,
    summed over outputs and kernel positions."""
    m = mask.float()
    return m.flatten(1).sum(1), m.transpose(0, 1).flatten(1).sum(1)


def std_of(mask: torch.Tensor, method: str, scale: float, mode: str) -> torch.Tensor:
    """The standard deviation of every weight (broadcastable to the weight's shape) under `method`;
    0 where the weight is masked or its unit has no connection."""
    shape = (-1,) + (1,) * (mask.dim() - 1)
    if method in ("dense", "liu"):
        receptive = mask[0, 0].numel()
        fan_in, fan_out = mask.shape[1] * receptive, mask.shape[0] * receptive
        fan = fan_in if mode == "fan_in" else (fan_in + fan_out) / 2
        std = math.sqrt(scale / fan)
        if method == "liu":
            density = mask.float().mean().item()
            std = std / math.sqrt(density) if density > 0 else 0.0
        return torch.full(mask.shape, std) * mask
    if method != "fanin":
        raise ValueError(f"sparse_init: unknown method {method!r}; known: {list(METHODS)}")
    fan_in, fan_out = fans(mask)
    if mode == "fan_in":
        fan = fan_in.view(shape).expand(mask.shape)
    else:
        fan = (fan_in.view(shape) + fan_out.view((1, -1) + (1,) * (mask.dim() - 2))) / 2
    return torch.where(mask & (fan > 0), (scale / fan.clamp(min=1e-12)).sqrt(), torch.zeros(()))


@torch.no_grad()
def reinitialise(model: torch.nn.Module, mask, method: str, scale: float, mode: str, seed: int) -> dict[str, float]:
    """Draw every conv / linear weight of `model` again (masked by `mask` where it covers the weight),
    zero their biases; returns the std used per layer (mean over its unmasked weights) for the log."""
    g = torch.Generator().manual_seed(seed)
    modules = {f"{name}.weight" if name else "weight": mod for name, mod in model.named_modules()}
    used = {}
    for name, w in prunable(model, "conv_linear").items():
        m = mask[name].to(w.device) if name in mask else torch.ones_like(w, dtype=torch.bool)
        z = torch.randn(w.shape, generator=g)
        std = std_of(m.cpu(), method, scale, mode)
        w.copy_((z * std).to(w.device, w.dtype))
        if modules[name].bias is not None:
            modules[name].bias.zero_()
        kept = std[m.cpu()]
        used[name] = float(kept.mean()) if kept.numel() else 0.0
    return used


@TWEAKS.register("sparse_init")
class SparseInit(Tweak):
    defaults = {"method": "fanin", "scale": 2.0, "mode": "fan_in"}
    schema = {"method": {"enum": list(METHODS)}, "scale": {"type": "number", "exclusiveMinimum": 0},
              "mode": {"enum": ["fan_in", "fan_avg"]}}

    def on_init(self, model, mask, ctx):
        seed = (torch.initial_seed() * 1_000_003 + SALT) % 2**63
        ctx.log["sparse_init_std"] = reinitialise(model, mask, self.params["method"], self.params["scale"],
                                                  self.params["mode"], seed)
