"""Mask methods: a registered method is fn(ctx: masks.PruneContext) -> masks.Mask (called by jobs.make_mask).

A method lives in a module of this package (every module here is imported, so its registration runs),
registered with `@mask_method(name, weights=..., settings=...)`: weights 'init' (it prunes the dense run's
initialisation, e.g. SNIP) or 'trained' (it prunes the trained dense network, e.g. IMP); settings, the keys of
its mask set it reads beyond COMMON. They arrive in ctx.spec (the mask set's configuration).
Modules: magnitude (imp, omp), zoo (random, SNIP, GraSP, SynFlow, magnitude at init, layer-wise L1,
ratios_from), iterative (lth_iter, which trains). Adding a mask method = one module
here + a mask set in the config.
"""
from __future__ import annotations

from ..registry import Registry, import_modules

MASK_METHODS = Registry("mask method")
# the keys of a mask set that every method accepts: what it is, which layers it covers, the ticket's rewind
# epoch, and which weights it prunes (planning reads them: plan.mask_spec, config)
COMMON = ("method", "layers", "keep_dense", "rewind_epoch", "from_epoch", "from_variant")


def mask_method(name: str, weights: str = "trained", settings: tuple = ()):
    """Register fn(ctx: PruneContext) -> Mask. weights: 'init' (prunes the dense initialisation,
    e.g. SNIP) or 'trained' (prunes a trained network, e.g. IMP); settings: the keys of its mask set it reads
    beyond COMMON (the config refuses any other)."""
    def deco(fn):
        fn.weights, fn.settings = weights, tuple(settings)
        return MASK_METHODS.register(name)(fn)
    return deco


import_modules(__name__, __path__)
