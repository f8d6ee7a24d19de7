"""A tiny name -> object registry; models, mask methods, tweaks, analyses and artefacts each keep one.

One registration style: a registry lives in its package's __init__, each entry in a module of the package is
registered by a decorator, and the package imports all its modules (import_modules), so that adding an entry
is adding a module.
"""
from __future__ import annotations

import importlib
import pkgutil


class Registry(dict):
    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def register(self, name: str | None = None):
        def deco(obj):
            key = name or obj.__name__
            if key in self:
                raise ValueError(f"{self.kind} {key!r} registered twice")
            self[key] = obj
            return obj
        return deco

    def get(self, name):  # noqa: D401 - dict-like, with a clear error
        try:
            return self[name]
        except KeyError:
            raise KeyError(f"unknown {self.kind} {name!r}; known: {sorted(self)}") from None


def import_modules(package: str, path) -> None:
    """Import every module of a package (its registrations run): import_modules(__name__, __path__)."""
    for m in pkgutil.iter_modules(path):
        importlib.import_module(f"{package}.{m.name}")
