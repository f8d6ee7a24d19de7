"""Analyses of trained runs: a registered kind is fn(model, mask, data, settings) -> JSON-able dict.

The caller (ticketlab.jobs.analyse) rebuilds the run's model as trained (tweaks, weights, mask
applied), puts it in eval mode on the device, and passes the full settings (the kind's `defaults`
under the configured values). Kinds leave the model as they found it and are deterministic given
settings["seed"]. Adding an analysis = one function here, registered with @analysis(name, **defaults).

Flags of a kind: `arrays` (the result's "arrays", a dict of numpy arrays, goes to an .npz beside the
JSON: rule analysis_arrays), `needs_init` (it also receives init=, the state dict the run started
training from, rebuilt from the run's spec), `needs_reference` (it also receives reference=, the final
weights of the run named by the analysis settings `reference` / `reference_dense`, e.g. the pruning
solution a ticket's mask came from).
"""
from __future__ import annotations

from ..registry import Registry

ANALYSES = Registry("analysis kind")


COMMON = ("kind", "weights", "reference", "reference_dense")  # settings of every kind, not passed to it


def analysis(name: str, *, arrays: bool = False, needs_init: bool = False, needs_reference: bool = False,
             **defaults):
    def deco(fn):
        fn.defaults = defaults
        fn.arrays, fn.needs_init, fn.needs_reference = arrays, needs_init, needs_reference
        return ANALYSES.register(name)(fn)
    return deco


from . import activations, basin, correlation, hessian, init_signal, landscape  # noqa: E402,F401  (register the kinds)
