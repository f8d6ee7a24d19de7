"""Tables and figures from run summaries. An artefact kind is a function registered in ARTEFACTS:
    fn(spec, tidy, paper, outputs) -> None
`tidy` has one row per (sparsity, variant) with mean, std, n of the metric over seeds and the paper's
value beside it; `paper` is the paper's values (columns sparsity [exact percent], printed, variant, value, source).
Kinds that show analyses of runs (Hessian, landscape, activations, trajectories) are registered in
analyses.ANALYSIS_ARTEFACTS instead and read each run's analysis JSON (see build and analyses.py).
A new table or figure is a config entry using an existing kind, or one small function here."""
from __future__ import annotations

import json

import pandas as pd

from ..registry import Registry

ARTEFACTS = Registry("artefact kind")
PAPER_MATCH = 0.05  # percentage points between our sparsity and the paper's (both exact, 2 decimals)


def label(cfg_variants: dict, name: str) -> str:
    return cfg_variants.get(name, {}).get("label", name)


KEYS = ["experiment", "mask", "sparsity", "variant"]


def read_runs(rows: list[dict], metric: str) -> pd.DataFrame:
    records = []
    for r in rows:
        with open(r["path"]) as f:
            s = json.load(f)
        records.append({**{k: r[k] for k in KEYS + ["seed", "exact"]}, "value": s[metric]})
    return pd.DataFrame.from_records(records)


def read_file(path: str):
    """A row's file: JSON (analysis results, mask reports) as a dict, CSV (per-epoch metrics) as a DataFrame."""
    if path.endswith(".csv"):
        return pd.read_csv(path)
    with open(path) as f:
        return json.load(f)


def read_paper(paths: list[str]) -> pd.DataFrame:
    """Paper values: columns sparsity (exact percent), variant, value, and optionally experiment
    and mask (when a paper table spans several); printed and source are for people."""
    frames = [pd.read_csv(p) for p in paths]
    if not frames:
        return pd.DataFrame(columns=["sparsity", "variant", "value"])
    paper = pd.concat(frames)
    return paper.drop_duplicates([c for c in KEYS + ["stage"] if c in paper.columns])


def paper_at(paper: pd.DataFrame, row: dict, same: dict | None = None) -> float:
    """The paper's value for a cell: same variant (and experiment/mask where the file names them;
    `same` maps our experiment to the paper's, e.g. a demo stand-in; and stage where the row names
    one, e.g. activation tables), sparsity within PAPER_MATCH percentage points of ours."""
    if paper.empty:
        return float("nan")
    p = paper[paper["variant"] == row["variant"]]
    want = {"experiment": (same or {}).get(row["experiment"], row["experiment"]), "mask": row["mask"],
            "stage": row.get("stage")}
    for key in ("experiment", "mask", "stage"):
        if key in p.columns and (key != "stage" or want[key] is not None):
            p = p[p[key] == want[key]]
    if p.empty:
        return float("nan")
    d = (p["sparsity"] - 100 * row["sparsity"]).abs()
    return float(p.loc[d.idxmin(), "value"]) if d.min() <= PAPER_MATCH else float("nan")


def summarise(runs: pd.DataFrame, paper: pd.DataFrame, aid: str, metric: str, same: dict | None = None) -> pd.DataFrame:
    """One row per cell: mean, std (ddof 1; 0 for one seed), n over seeds, and the paper's value."""
    g = runs.groupby(KEYS, sort=False)
    tidy = g["value"].agg(mean="mean", std="std", n="count").reset_index()
    tidy["exact_sparsity"] = g["exact"].first().values
    tidy["std"] = tidy["std"].fillna(0.0)
    tidy.insert(0, "artefact", aid)
    tidy.insert(5, "metric", metric)
    tidy["paper"] = [paper_at(paper, r, same) for r in tidy.to_dict("records")]
    return tidy


def build(spec: dict, variants_cfg: dict, rows: list[dict], paper_paths: list[str], outputs: list[str], aid: str):
    paper = read_paper(paper_paths)
    if spec["kind"] in ANALYSIS_ARTEFACTS:  # rows name files the kind reads itself: analysis JSON, metrics CSV, mask reports
        results = [(r, read_file(r["path"])) for r in rows]
        labels = {v: label(variants_cfg, v) for v in variants_cfg}
        ANALYSIS_ARTEFACTS.get(spec["kind"])({**spec, "id": aid}, results, paper, labels, outputs)
        return
    runs = read_runs(rows, spec["metric"])
    tidy = summarise(runs, paper, aid, spec["metric"], spec.get("paper_experiments"))
    tidy["label"] = [label(variants_cfg, v) for v in tidy["variant"]]
    ARTEFACTS.get(spec["kind"])(spec, tidy, paper, outputs)


from . import figures, tables  # noqa: E402,F401  (register the kinds)
from .analyses import ANALYSIS_ARTEFACTS  # noqa: E402
from . import curves  # noqa: E402,F401  (series, per-epoch and per-layer curves)
from . import initialisation  # noqa: E402,F401  (seed 004: methods x initialisations, signal at init)
from . import basin  # noqa: E402,F401  (seed 004 §4.3: ensembles, disagreement, the pruning solution's basin)
from . import sanity  # noqa: E402,F401  (seed 001: learning-rate lines, jackpot conditions, R_p, Table E.1)
