"""The small-dense baseline (sanity, Appendix C: "a small-dense network with model size the same as
||m||"; gradflow, Table 1 "Small Dense"): the same architecture with every width multiplied by one
factor, chosen so that its parameter count is as close as possible to the ticket's.

The ticket's parameter count is the model's total minus the weights its mask removes (BatchNorm, biases
and unpruned layers count in full, as they do in the ticket). Widths are whole channels
(models.scale_width rounds), so the count is a step function of the factor: bisection finds the two
factors around the target and the closer count wins. For narrow ResNets (e.g. option-A ResNet-20 at
16/32/64 channels) one factor's steps are coarse (a few % of the count), so the stage widths found
are then adjusted by up to `REFINE` channels each to the combination closest to the target (within 1%
for the papers' networks at their IMP levels; tests/test_small_dense.py). Models are built on the
meta device (no memory, no initialisation), so a search costs a few dozen to a few hundred constructions.

Initialisation: the network found is built and initialised as any fresh run's (PyTorch's default), then
the run's tweaks' on_init apply to it as to any other run. gradflow's Small Dense follows its Appendix B.2
("Glorot scaling in all of our initializations", scale 1, fan-in and fan-out averaged) through the same
code as its other runs: the `sparse_init` tweak with method `dense` (N(0, 2 / (fan_in + fan_out)) per
conv / linear weight over the narrowed layer's own fans, biases 0; the run has no mask, so nothing is
masked). sanity's small-dense keeps PyTorch's default, as its other runs.
"""
from __future__ import annotations

import torch

import itertools

from .masks import Mask
from .models import build_model
from .models.layers import scale_width

REFINE = 2  # channels each stage width may move from the uniform solution


def count_params(kwargs: dict, num_classes: int, in_channels: int, input_size: int) -> int:
    kw = dict(kwargs)
    arch = kw.pop("arch")
    with torch.device("meta"):
        model = build_model(arch, num_classes, in_channels=in_channels, input_size=input_size, **kw)
    return sum(p.numel() for p in model.parameters())


def ticket_params(kwargs: dict, num_classes: int, in_channels: int, input_size: int, mask: Mask) -> int:
    return count_params(kwargs, num_classes, in_channels, input_size) - (mask.total - mask.kept)


def match_width(kwargs: dict, num_classes: int, in_channels: int, input_size: int, target: int,
                iterations: int = 40) -> tuple[float, int]:
    """(width, parameter count) of the uniformly narrowed model whose count is closest to `target`."""
    def count(w):
        return count_params({**kwargs, "width": w}, num_classes, in_channels, input_size)

    lo, hi = 0.0, float(kwargs.get("width", 1.0))
    if count(hi) <= target:
        return hi, count(hi)
    for _ in range(iterations):  # invariant: count(lo) < target <= count(hi) (count(0) = the 1-channel model)
        mid = (lo + hi) / 2
        if count(mid) >= target:
            hi = mid
        else:
            lo = mid
    candidates = [(abs(count(w) - target), w) for w in (lo, hi) if w > 0]
    _, w = min(candidates)
    return w, count(w)


def refine_stages(kwargs: dict, num_classes: int, in_channels: int, input_size: int, target: int,
                  base: tuple[int, ...], width: float) -> tuple[dict, int]:
    """ResNets: stage widths within REFINE channels of the uniform solution (non-decreasing, as option-A
    shortcuts need), whose count is closest to target."""
    start = [scale_width(c, width) for c in base]
    best = None
    for delta in itertools.product(range(-REFINE, REFINE + 1), repeat=len(start)):
        widths = [c + d for c, d in zip(start, delta)]
        if min(widths) < 1 or any(a > b for a, b in zip(widths, widths[1:])):
            continue
        kw = {**kwargs, "width": 1.0, "stage_widths": widths}
        n = count_params(kw, num_classes, in_channels, input_size)
        if best is None or abs(n - target) < abs(best[1] - target):
            best = (kw, n)
    return best


STAGE_WIDTHS = {"resnet18": (64, 128, 256, 512), "resnet34": (64, 128, 256, 512), "resnet50": (64, 128, 256, 512),
                "resnet20": (16, 32, 64), "resnet32": (16, 32, 64), "resnet56": (16, 32, 64), "resnet110": (16, 32, 64)}


def small_dense_kwargs(kwargs: dict, num_classes: int, in_channels: int, input_size: int,
                       target: int) -> tuple[dict, int]:
    """(model kwargs, parameter count) of the small-dense network closest to `target` parameters."""
    width, n = match_width(kwargs, num_classes, in_channels, input_size, target)
    best = ({**kwargs, "width": width}, n)
    base = kwargs.get("stage_widths") or STAGE_WIDTHS.get(kwargs["arch"])
    if base and abs(n - target) > 0.0025 * target:
        refined = refine_stages({k: v for k, v in kwargs.items() if k != "stage_widths"}, num_classes,
                                in_channels, input_size, target, tuple(base), width)
        if abs(refined[1] - target) < abs(n - target):
            best = refined
    return best


def matched_kwargs(kwargs: dict, data, mask_path: str) -> dict:
    """Model kwargs of the small-dense network for the ticket of `mask_path` (checked against the
    full model, so a mask of another architecture names its file)."""
    kw = dict(kwargs)
    arch = kw.pop("arch")
    full = build_model(arch, data.num_classes, in_channels=data.in_channels, input_size=data.input_size, **kw)
    mask = Mask.load(mask_path, full)
    target = ticket_params(kwargs, data.num_classes, data.in_channels, data.input_size, mask)
    return small_dense_kwargs(kwargs, data.num_classes, data.in_channels, data.input_size, target)[0]
