"""Pruning masks: the Mask object, the checks on load, and the pruning arithmetic the mask methods share
(ticketlab.pruners holds the methods).

Sparsity everywhere in ticketlab means the fraction of prunable weights REMOVED (0 = dense).
A mask file holds boolean tensors keyed by parameter name; it is checked against the model
it is applied to, and a mismatch names the file.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from .defaults import MaskError, imp_level, imp_sparsity  # noqa: F401  (torch-free; re-exported)
from . import weights_io
from .layout import report_path


def prunable(model: nn.Module, layers: str = "conv") -> dict[str, nn.Parameter]:
    """Weights that a mask may cover: conv weights (layers='conv', the released code's choice) or
    conv + linear weights ('conv_linear'). Extra modules added by tweaks (flagged `ticketlab_extra`)
    are never pruned."""
    kinds = {"conv": (nn.Conv2d,), "conv_linear": (nn.Conv2d, nn.Linear)}[layers]
    out = {}
    for mname, mod in model.named_modules():
        if isinstance(mod, kinds) and not getattr(mod, "ticketlab_extra", False):
            out[f"{mname}.weight" if mname else "weight"] = mod.weight
    return out


def covered(model: nn.Module, layers: str = "conv", keep_dense: list[str] | tuple = ()) -> dict[str, nn.Parameter]:
    """The weights a mask set covers: prunable(model, layers) without those `keep_dense` names — "first"
    (the first of them, the stem conv) and/or "last" (the last, e.g. the classifier with conv_linear): seed
    003 keeps the first conv and the last FC layer dense and prunes the others at one ratio."""
    weights = prunable(model, layers)
    names = list(weights)
    drop = ({names[0]} if "first" in keep_dense else set()) | ({names[-1]} if "last" in keep_dense else set())
    return {k: w for k, w in weights.items() if k not in drop}


class Mask(dict):
    """name -> bool tensor (True = kept)."""

    @classmethod
    def ones_like(cls, params: dict[str, torch.Tensor]) -> "Mask":
        return cls({k: torch.ones_like(v, dtype=torch.bool) for k, v in params.items()})

    @property
    def total(self) -> int:
        return sum(m.numel() for m in self.values())

    @property
    def kept(self) -> int:
        return sum(int(m.sum()) for m in self.values())

    @property
    def sparsity(self) -> float:
        return 1.0 - self.kept / self.total

    def report(self) -> dict:
        layers = {k: {"shape": list(m.shape), "total": m.numel(), "kept": int(m.sum()),
                      "density": float(m.float().mean())} for k, m in self.items()}
        return {"sparsity": self.sparsity, "kept": self.kept, "total": self.total,
                "empty_layers": [k for k, v in layers.items() if v["kept"] == 0], "layers": layers}

    def save(self, path: str, **meta) -> None:
        tmp = path + ".tmp"
        torch.save({"packed": {k: weights_io.pack_bool(v.cpu()) for k, v in self.items()}, "meta": meta}, tmp)
        os.replace(tmp, path)
        with open(report_path(path), "w") as f:
            json.dump({**self.report(), "meta": meta}, f, indent=1)

    @classmethod
    def load(cls, path: str, model: nn.Module | None = None) -> "Mask":
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
            mask = cls({k: weights_io.unpack_bool(v) for k, v in blob["packed"].items()} if "packed" in blob
                       else blob["masks"])  # a bit per entry; files written before packing hold bool tensors
        except Exception as e:  # noqa: BLE001 - any unreadable file gets the same clear error
            raise MaskError(f"{path}: not a ticketlab mask file ({e})") from e
        if model is not None:
            mask.check(model, path)
        return mask

    def check(self, model: nn.Module, source: str = "<mask>") -> None:
        params = dict(model.named_parameters())
        for k, m in self.items():
            if k not in params:
                raise MaskError(f"{source}: mask entry {k!r} is not a parameter of the model "
                                f"({type(model).__name__}); the mask was made for another architecture")
            if tuple(params[k].shape) != tuple(m.shape):
                raise MaskError(f"{source}: mask entry {k!r} has shape {tuple(m.shape)} but the model's "
                                f"parameter has shape {tuple(params[k].shape)}")
            if m.dtype != torch.bool:
                raise MaskError(f"{source}: mask entry {k!r} has dtype {m.dtype}, expected torch.bool")

    def to(self, device) -> "Mask":
        return Mask({k: v.to(device) for k, v in self.items()})

    @torch.no_grad()
    def apply_(self, model: nn.Module) -> None:
        """Zero the pruned weights in place."""
        params = dict(model.named_parameters())
        for k, m in self.items():
            params[k].mul_(m)


def target_removed(total: int, sparsity: float) -> int:
    return int(round(total * sparsity))


def reference_removed(total: int, sparsity: float) -> int:
    """The count of Synaptic-Flow's Pruner._global_mask (which ToST's pruners use): k = int((1.0 - density)
    * total), a floor, with density = 1.0 - sparsity the fraction kept, the argument that code receives."""
    return int((1.0 - (1.0 - sparsity)) * total)


def magnitude_prune(weights: dict[str, torch.Tensor], sparsity: float, current: Mask | None = None,
                    scope: str = "global") -> Mask:
    """Remove the smallest-|w| weights among those still kept by `current` until exactly
    round(sparsity * total) weights are removed (globally, or per layer with scope='layer').
    The result is nested in `current` by construction."""
    current = current or Mask.ones_like(weights)
    if scope == "layer":
        return Mask({k: _prune_scores({k: w.abs()}, Mask({k: current[k]}), sparsity)[k]
                     for k, w in weights.items()})
    return _prune_scores({k: w.abs() for k, w in weights.items()}, current, sparsity)


def _prune_scores(scores: dict[str, torch.Tensor], current: Mask, sparsity: float, count: str = "round") -> Mask:
    """Keep the highest scores among currently-kept entries.

    count='round': exactly round(s*N) are removed, scores ranked in float32, ties broken by topk.
    count='reference': the pruning-at-init rule of the released code (see _reference_prune)."""
    if count == "reference":
        return _reference_prune(scores, current, sparsity)
    names = list(scores)
    flat = torch.cat([scores[k].detach().flatten().float() for k in names])
    alive = torch.cat([current[k].flatten() for k in names])
    n_keep = flat.numel() - target_removed(flat.numel(), sparsity)
    if n_keep > int(alive.sum()):
        raise MaskError(f"cannot reach sparsity {sparsity:.4f}: the current mask already removes more")
    flat = torch.where(alive, flat, torch.full_like(flat, -math.inf))
    keep = torch.zeros_like(alive)
    keep[torch.topk(flat, n_keep, sorted=False).indices] = True
    return _unflatten(keep, scores)


def _unflatten(keep: torch.Tensor, like: dict[str, torch.Tensor]) -> Mask:
    """A flat bool vector over the tensors of `like` (concatenated in order) -> Mask of their shapes."""
    out, i = Mask(), 0
    for k, t in like.items():
        out[k] = keep[i:i + t.numel()].view_as(t)
        i += t.numel()
    return out


def _reference_prune(scores: dict[str, torch.Tensor], current: Mask, sparsity: float) -> Mask:
    """Synaptic-Flow's Pruner._global_mask, as ToST runs it: the threshold is the k-th smallest of ALL the
    scores (k = reference_removed(N, s)) in their own dtype, and every score below it is removed; k < 1
    leaves the mask as it is. The reference removes every score <= threshold, so ties there remove more
    than k (weights that only ever see zero padding score exactly 0 on small inputs: at 20% on an 8x8
    ResNet-18 it removes ~60%; Synaptic-Flow's prune_loop then refuses the mask). Here the tied entries
    are removed only up to k (already removed ones first, then in order), so without ties at the threshold
    the mask is the reference's and with them the count stays exact. That code ranks the removed entries
    with the rest (SynFlow scores them 0, so they stay removed); one scoring above the threshold, which
    the reference would revive, is an error."""
    names = list(scores)
    flat = torch.cat([scores[k].detach().flatten() for k in names])
    alive = torch.cat([current[k].flatten() for k in names])
    k = reference_removed(flat.numel(), sparsity)
    if k < 1:
        return Mask({n: current[n].clone() for n in names})
    threshold = torch.kthvalue(flat, k).values
    keep = flat > threshold
    tied = flat == threshold
    order = torch.cat([(tied & ~alive).nonzero().flatten(), (tied & alive).nonzero().flatten()])
    keep[order[k - int((flat < threshold).sum()):]] = True  # the ties beyond the count stay
    if bool((keep & ~alive).any()):
        raise MaskError("reference ranking: a removed weight scores above the threshold and would be revived")
    return _unflatten(keep, scores)


@dataclass
class PruneContext:
    """What a mask method gets. `model` holds the weights the method prunes from (the dense
    initialisation or the trained network, per the method's `weights`); `weights` are its prunable
    tensors (live parameters of `model`)."""
    model: nn.Module
    weights: dict[str, torch.Tensor]
    sparsity: float
    spec: dict
    previous: Mask | None = None
    source: Mask | None = None                      # ratios_from: another method's mask, same sparsity
    batches: Callable[[], tuple] | None = None      # -> (x, y), normalised training batches
    generator: torch.Generator | None = None        # for random draws
    workdir: str | None = None                      # methods that train (lth_iter): where their resumable runs go
