"""Magnitude pruning of trained weights: IMP (one level per mask file) and one-shot OMP."""
from __future__ import annotations

from ..masks import Mask, PruneContext, magnitude_prune
from . import mask_method


@mask_method("imp", settings=("rate", "scope"))
def imp_mask(ctx: PruneContext) -> Mask:
    """One IMP level: global (or layer-wise) magnitude pruning of the weights trained under the
    previous level's mask (none at level 1: the dense model) to the next level's sparsity."""
    return magnitude_prune(ctx.weights, ctx.sparsity, ctx.previous, ctx.spec.get("scope", "global"))


@mask_method("omp", settings=("scope",))
def omp_mask(ctx: PruneContext) -> Mask:
    """One-shot magnitude pruning of the trained dense model straight to the sparsity."""
    return magnitude_prune(ctx.weights, ctx.sparsity, None, ctx.spec.get("scope", "global"))
