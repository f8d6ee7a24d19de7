"""Defaults shared by planning and training, in a module without torch so that planning (config, plan, the
Snakefile) never imports it."""
from __future__ import annotations

import math

# settings of a `trajectory` analysis (monitors during training); 0 switches a measurement off
MONITOR_DEFAULTS = {"epochs": 0, "hessian_batches": 3, "hessian_batch_size": 128, "hessian_max_iter": 100,
                    "hessian_tol": 1e-3, "gradflow_every": 0, "gradflow_examples": 1000, "seed": 0}

# how a run uses its device (the config's top-level precision, channels_last, compile). A setting enters a
# run's spec only when it differs from these defaults (plan.fast_settings), so runs at the defaults keep
# their spec, their checkpoint hash and their cached results.
FAST_DEFAULTS = {"precision": "auto", "channels_last": "auto", "compile": False}
FAST_CHOICES = {"precision": ("auto", "fp32", "bf16"), "channels_last": ("auto", True, False), "compile": (True, False)}


def fast_setting_error(settings: dict) -> str | None:
    """What is wrong with the device settings present in `settings` (None if nothing): each must be one of its
    FAST_CHOICES, by type too (1 is not True here)."""
    for k, choices in FAST_CHOICES.items():
        if k in settings and not any(type(settings[k]) is type(c) and settings[k] == c for c in choices):
            return f"{k} must be one of {list(choices)}, not {settings[k]!r}"
    return None


class MaskError(ValueError):
    """A mask that does not fit (raised by ticketlab.masks; here so that the IMP level arithmetic is torch-free)."""


def imp_sparsity(level: int, rate: float) -> float:
    """Sparsity after `level` rounds that each remove `rate` of the remaining weights: 1-(1-rate)^level."""
    return 1.0 - (1.0 - rate) ** level


def imp_level(sparsity: float, rate: float, tol: float = 1e-4) -> int:
    if sparsity == 0:
        return 0
    level = round(math.log(1.0 - sparsity) / math.log(1.0 - rate))
    if abs(imp_sparsity(level, rate) - sparsity) > tol:
        raise MaskError(f"sparsity {sparsity} is not an IMP level for rate {rate} "
                         f"(levels: 1-(1-{rate})^k)")
    return level


# (training images before the validation split, test images, side, channels, classes) of the sources with fixed
# shapes: the GPU-time estimate (budget.py) and the footprint estimate (scripts/footprint.py) size from them
SOURCE_SIZES = {"cifar10": (50_000, 10_000, 32, 3, 10), "cifar100": (50_000, 10_000, 32, 3, 100),
                "tinyimagenet": (100_000, 10_000, 64, 3, 200), "mnist": (60_000, 10_000, 28, 1, 10),
                "digits": (1_438, 359, 8, 1, 10)}


def artefact_variants(a: dict) -> list[str]:
    """The variants an artefact's config entry shows: its variants, baseline, difference and panels' (in order)."""
    names = list(a.get("variants", [])) + ([a["baseline"]] if "baseline" in a else []) + list(a.get("difference", []))
    for p in a.get("panels", []):
        names += p["variants"] + p.get("mark_crossing", [])
    return list(dict.fromkeys(names))
