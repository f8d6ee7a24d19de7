"""A tiny name -> object registry; models, mask methods, tweaks and artefacts each keep one."""
from __future__ import annotations


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
