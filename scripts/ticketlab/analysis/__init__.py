"""Analyses of trained runs: a registered kind is fn(model, mask, data, settings) -> JSON-able dict.

The caller (ticketlab.jobs.analyse) rebuilds the run's model as trained (tweaks, weights, mask
applied), puts it in eval mode on the device, and passes the full settings (the kind's `defaults`
under the configured values). Kinds leave the model as they found it and are deterministic given
settings["seed"]. Adding an analysis = one module here with a function registered by @analysis(name, **defaults),
plus an entry in the config's `analyses:`.

Flags of a kind: `arrays` (the result's "arrays", a dict of numpy arrays, goes to an .npz beside the
JSON: rule analysis_arrays), `needs_init` (it also receives init=, the state dict the run started
training from, rebuilt from the run's spec), `needs_reference` (it also receives reference=, the final
weights of the run named by the analysis settings `reference` / `reference_dense`, e.g. the pruning
solution a ticket's mask came from), `trains` (the kind re-trains the run with monitors instead of analysing
its weights: called as fn(spec, outdir, threads, job_started), rule trajectory; analysis.trajectory).
"""
from __future__ import annotations

from ..registry import Registry, import_modules

ANALYSES = Registry("analysis kind")


COMMON = ("kind", "weights", "reference", "reference_dense")  # settings of every kind, not passed to it


def analysis(name: str, *, arrays: bool = False, needs_init: bool = False, needs_reference: bool = False,
             trains: bool = False, **defaults):
    def deco(fn):
        fn.defaults = defaults
        fn.arrays, fn.needs_init, fn.needs_reference, fn.trains = arrays, needs_init, needs_reference, trains
        return ANALYSES.register(name)(fn)
    return deco


import_modules(__name__, __path__)  # every module here: the kinds register themselves
