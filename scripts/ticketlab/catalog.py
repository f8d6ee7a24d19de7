"""What planning needs to know of the registries, without importing torch: each tweak's settings schema
and whether it needs a teacher, each mask method's weights (init or trained), each analysis kind's
defaults and flags (arrays, needs_init, needs_reference, trains), each artefact kind's output (table or
figure), flags (files, shows, setup, config_only, sources) and settings (the config keys it reads beyond the keys
every kind accepts, artefact_common).

The registries live in modules that import torch (2-3 s on this project's machines), which the Snakefile
would pay on every `snakemake` call, a no-op included. So their declarations are read once from the
registries and kept in a small JSON cache keyed by the package's code (path, mtime and size of every
.py file, as the job server's fingerprint): any edit of the package makes a new entry. A process that has
the registries imported already (a test, a job) reads them live, so a kind registered at run time is
seen there. TICKETLAB_CACHE names the cache folder (default $XDG_CACHE_HOME/ticketlab or
~/.cache/ticketlab); an unwritable folder only costs the import.
"""
from __future__ import annotations

import functools
import glob
import hashlib
import json
import os
import sys
import tempfile

PACKAGE = os.path.dirname(os.path.abspath(__file__))
REGISTRIES = ("ticketlab.tweaks", "ticketlab.pruners", "ticketlab.analysis", "ticketlab.artefacts")
KEEP = 8  # cache entries kept (the newest): a checkout or two and the edits between


def code_fingerprint(root: str = PACKAGE) -> str:
    """The package's code as of now: path, mtime and size of every .py file under root."""
    files = []
    for d, _, names in os.walk(root):
        for n in names:
            if n.endswith(".py"):
                st = os.stat(os.path.join(d, n))
                files.append((os.path.relpath(os.path.join(d, n), root), st.st_mtime_ns, st.st_size))
    return hashlib.sha256(repr(sorted(files)).encode()).hexdigest()[:20]


def cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.environ.get("TICKETLAB_CACHE") or os.path.join(base, "ticketlab")


def read_registries() -> dict:
    """The declarations, from the registries themselves (imports torch)."""
    from .analysis import ANALYSES
    from .artefacts import ANALYSIS_ARTEFACTS, ARTEFACTS, COMMON
    from .pruners import COMMON as MASK_COMMON, MASK_METHODS
    from .tweaks import TWEAKS
    return {
        "tweaks": {n: {"schema": t.schema, "needs_teacher": bool(getattr(t, "needs_teacher", False))}
                   for n, t in TWEAKS.items()},
        "masks": {n: {"weights": m.weights, "settings": sorted(m.settings)} for n, m in MASK_METHODS.items()},
        "mask_common": sorted(MASK_COMMON),
        "analyses": {n: {"defaults": a.defaults, "arrays": a.arrays, "needs_init": a.needs_init,
                         "needs_reference": a.needs_reference, "trains": a.trains} for n, a in ANALYSES.items()},
        "artefacts": {n: {"output": k.output, "files": k.files, "shows": sorted(k.shows), "setup": k.setup,
                          "config_only": k.config_only, "sources": k.sources, "settings": sorted(k.settings)}
                      for n, k in {**ARTEFACTS, **ANALYSIS_ARTEFACTS}.items()},
        "artefact_common": sorted(COMMON),
    }


@functools.lru_cache(maxsize=1)
def _cached(fingerprint: str) -> dict:
    path = os.path.join(cache_dir(), f"catalog-{fingerprint}.json")
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        pass
    # JSON in and out, so that a cache hit and a miss give the same values (tuples read back as lists)
    out = json.loads(json.dumps(read_registries()))
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(out, f)
        os.replace(tmp, path)
        old = sorted(glob.glob(os.path.join(os.path.dirname(path), "catalog-*.json")), key=os.path.getmtime)
        for stale in old[:-KEEP]:  # entries of code as it was some edits ago
            os.remove(stale)
    except OSError:
        pass
    return out


def catalog() -> dict:
    """{"tweaks": {name: {schema, needs_teacher}}, "masks": {name: {weights}}, "analyses": {kind: {defaults,
    arrays, needs_init, needs_reference, trains}}, "artefacts": {kind: {output, files, shows, setup,
    config_only, settings}}, "artefact_common": [key]}: live when the registries are imported, else from
    the cache."""
    if all(m in sys.modules for m in REGISTRIES):
        from .analysis import ANALYSES
        from .artefacts import ANALYSIS_ARTEFACTS, ARTEFACTS
        from .pruners import MASK_METHODS
        from .tweaks import TWEAKS
        return _live(len(TWEAKS), len(MASK_METHODS), len(ANALYSES), len(ARTEFACTS) + len(ANALYSIS_ARTEFACTS))
    return _cached(_fingerprint_once())


@functools.lru_cache(maxsize=1)
def _fingerprint_once() -> str:  # planning reads the code as it was when the process first asked
    return code_fingerprint()


@functools.lru_cache(maxsize=4)
def _live(*sizes) -> dict:  # keyed by the registries' sizes: a kind registered since is seen
    return json.loads(json.dumps(read_registries()))


def entry(section: str, name: str) -> dict:
    """One declaration, with the registries' error for an unknown name."""
    known = catalog()[section]
    if name not in known:
        kind = {"tweaks": "tweak", "masks": "mask method", "analyses": "analysis kind",
                "artefacts": "artefact kind"}[section]
        raise KeyError(f"unknown {kind} {name!r}; known: {sorted(known)}")
    return known[name]
