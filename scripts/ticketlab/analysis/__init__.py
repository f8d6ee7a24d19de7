"""Analyses of trained runs: a registered kind is fn(model, mask, data, settings) -> JSON-able dict.

The caller (ticketlab.jobs.analyse) rebuilds the run's model as trained (tweaks, weights, mask
applied), puts it in eval mode on the device, and passes the full settings (the kind's `defaults`
under the configured values). Kinds leave the model as they found it and are deterministic given
settings["seed"]. Adding an analysis = one function here, registered with @analysis(name, **defaults).
"""
from __future__ import annotations

from ..registry import Registry

ANALYSES = Registry("analysis kind")


def analysis(name: str, **defaults):
    def deco(fn):
        fn.defaults = defaults
        return ANALYSES.register(name)(fn)
    return deco


from . import activations, hessian, landscape  # noqa: E402,F401  (register the kinds)
