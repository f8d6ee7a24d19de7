"""The papers' claims as data (config/claims/<prefix>.yaml, schema workflow/schemas/claims.schema.yaml): loading
them and checking them against a configuration, and which artefacts a claims artefact (kind claims) reads.
Pure: no torch, so the config check runs on every `snakemake` call; the verdicts are ticketlab.artefacts.claims.

A claims artefact names claim files (`claims: [spend]`) and optionally the claims it decides (`decide`, default
all): the others are reported as not decided in this configuration, and their artefacts are not built for it,
which is how a smaller tier (config/quick/) leaves out what it cannot decide."""
from __future__ import annotations

import functools
import os
from pathlib import Path

import jsonschema
import yaml

from .defaults import artefact_variants

REPO = Path(__file__).resolve().parents[2]
CLAIMS_DIR = REPO / "config" / "claims"
SCHEMA = REPO / "workflow" / "schemas" / "claims.schema.yaml"
SIDES = ("a", "b", "select")


class ClaimError(ValueError):
    """A claim file that does not fit its schema or the configuration; the message names the file and key."""


def claims_path(name: str) -> Path:
    return CLAIMS_DIR / f"{name}.yaml"


def _shown(path: Path) -> str:
    """A claim file's path as errors name it: relative to the repository where it is in it."""
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


@functools.lru_cache(maxsize=1)
def _schema() -> dict:
    return yaml.safe_load(SCHEMA.read_text())


@functools.lru_cache(maxsize=32)
def _load(path: str, mtime: int) -> dict:
    try:
        with open(path) as f:
            doc = yaml.safe_load(f)
    except yaml.YAMLError as e:
        raise ClaimError(f"{path}: not valid YAML ({e})") from e
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(_schema()).iter_errors(doc))
    if error is not None:
        where = ".".join(str(p) for p in error.absolute_path) or "(top level)"
        raise ClaimError(f"{path}: {where}: {error.message}")
    for c in doc["claims"].values():
        c.setdefault("over", "every")
    return doc


def load(name: str) -> dict:
    """The claim file config/claims/<name>.yaml, checked against its schema (cached while the file is unchanged)."""
    path = claims_path(name)
    if not path.is_file():
        raise ClaimError(f"no claim file {_shown(path)}")
    return _load(str(path), os.stat(path).st_mtime_ns)


def decided(cfg: dict, a: dict, doc: dict) -> list[str]:
    """The ids of a claim file's claims that the claims artefact `a` decides: all, those `decide` lists, or with
    `decide: targets` those whose artefact the configuration targets (a paper configuration's own)."""
    keep = a.get("decide")
    if keep == "targets":
        return [cid for cid, c in doc["claims"].items() if c["artefact"] in cfg.get("targets", cfg["artefacts"])]
    return [cid for cid in doc["claims"] if keep is None or cid in keep]


def sources(cfg: dict, aid: str) -> list[str]:
    """The artefacts whose tidy CSVs claims artefact `aid` reads: those of the claims it decides, sorted."""
    a = cfg["artefacts"][aid]
    out = set()
    for name in a["claims"]:
        doc = load(name)
        out.update(doc["claims"][cid]["artefact"] for cid in decided(cfg, a, doc))
    return sorted(out)


def planned_sparsities(cfg: dict, a: dict) -> set[float]:
    """The nominal sparsities artefact `a` shows in this configuration (as plan.artefact_runs plans them)."""
    out = set()
    for ename in a.get("experiments", []):
        planned = cfg["experiments"][ename]["sparsities"]
        for mask in a.get("masks", []):
            out.update([0.0] if mask == "dense" else a.get("sparsities", planned.get(mask, [])))
    return out


def _values(f) -> list:
    """The plain values a filter names (none for ranges and max / min)."""
    if isinstance(f, dict) or f in ("max", "min"):
        return []
    return f if isinstance(f, list) else [f]


def _check_claim(cfg: dict, c: dict, where: str, decides: bool) -> None:
    if c["artefact"] not in cfg["artefacts"]:
        raise ClaimError(f"{where}.artefact: no artefact {c['artefact']!r} in the configuration")
    art = cfg["artefacts"][c["artefact"]]
    if art["kind"] == "claims":
        raise ClaimError(f"{where}.artefact: {c['artefact']!r} is a claims artefact; a claim reads a table or figure")
    if not decides:
        return
    shown = set(artefact_variants(art))
    planned = planned_sparsities(cfg, art)
    for side in SIDES:
        for col, f in c.get(side, {}).items():
            if col == "variant" and shown:
                bad = [v for v in _values(f) if v not in shown]
                if bad:
                    raise ClaimError(f"{where}.{side}.variant: {c['artefact']} shows no variant {bad[0]!r} "
                                     f"(its variants: {sorted(shown)})")
            if col == "sparsity" and planned:
                bad = [s for s in _values(f) if not any(abs(s - p) < 1e-6 for p in planned)]
                if bad:
                    raise ClaimError(f"{where}.{side}.sparsity: {c['artefact']} shows no sparsity {bad[0]!r} in "
                                     f"this configuration (its sparsities: {sorted(planned)})")
    if "b" in c and set(c["b"]) == {"value"} and not isinstance(c["b"]["value"], (int, float)):
        raise ClaimError(f"{where}.b.value: a constant is a number, not {c['b']['value']!r}")


def check(cfg: dict) -> None:
    """Every claims artefact's claim files load and fit the configuration: each claim names an artefact of the
    configuration; each claim it decides names variants that artefact shows and sparsities it plans; `decide`
    names claims of its files. Raises ClaimError naming the file and the key."""
    for aid, a in cfg["artefacts"].items():
        if a["kind"] != "claims":
            continue
        known = set()
        for i, name in enumerate(a["claims"]):
            try:
                doc = load(name)
            except ClaimError as e:
                raise ClaimError(f"artefacts.{aid}.claims[{i}]: {e}") from e
            keep = set(decided(cfg, a, doc))
            known |= set(doc["claims"])
            for cid, c in doc["claims"].items():
                _check_claim(cfg, c, f"{_shown(claims_path(name))}: claims.{cid}", cid in keep)
        unknown = sorted(set(a.get("decide", [])) - known) if a.get("decide") != "targets" else []
        if unknown:
            raise ClaimError(f"artefacts.{aid}.decide: no claim {unknown[0]!r} in {a['claims']}")
