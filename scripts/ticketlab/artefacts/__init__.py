"""Tables and figures from run summaries. An artefact kind is a function registered in ARTEFACTS:
    fn(spec, tidy, paper, outputs) -> None
`tidy` has one row per (sparsity, variant) with mean, std, n of the metric over seeds and the paper's
value beside it, and what the runs were: params (non-zero trainable parameters at the end, extras such as
Skip's dense 1x1 convs included; summary["params"]["nonzero"], mean over seeds) and numerics (device and
precision, summary["numerics"]); `paper` is the paper's values (columns sparsity [exact percent], printed,
variant, value, source). Every kind writes both into its CSV and says them in its .md / figure (params_line,
params_tags, extra_tag, numerics_line).
Kinds that read their own files (analyses of runs: Hessian, landscape, activations, trajectories; metrics,
mask reports) are registered in ANALYSIS_ARTEFACTS instead (artefact_kind(files=True); see build).
A new table or figure is a config entry using an existing kind, or a new kind: one function in a module
here, registered with @artefact_kind (what it writes and reads, and its own config keys: settings=), plus its
name in the schema's kind enum."""
from __future__ import annotations

import json
import math

import pandas as pd

from ..registry import Registry, import_modules

ARTEFACTS = Registry("artefact kind")  # kinds of run summaries: fn(spec, tidy, paper, outputs)
ANALYSIS_ARTEFACTS = Registry("analysis artefact kind")  # kinds that read their own files: see artefact_kind


# The config keys every artefact kind accepts (plan and config read them for every kind; each kind its title),
# and those the shared code path reads for every kind of a flag; an artefact entry's other keys must be among
# its kind's own settings (artefact_kind(settings=...); config.py refuses the rest; the schema says what each means)
COMMON = ("kind", "title", "variants", "experiment", "experiments", "mask", "masks")
RUNS = ("seeds", "sparsities", "replicas", "rows")  # plan.artefact_runs: the runs shown (kinds that read runs)
SUMMARIES = ("metric", "paper", "paper_experiments")  # build: the tidy frame of run summaries and the paper's values
OWN_FILES = ("reads",)  # plan.artefact_runs: which file of each row (files=True, no shows: not an analysis)
ANALYSIS = ("analysis",)  # plan.artefact_runs: the analysis shown (kinds with shows)
SOURCES = ("claims", "decide")  # plan.artefact_runs / artefact_job: the claim files, and which claims are decided


def shared_settings(files: bool, shows: tuple, config_only: bool, sources: bool = False) -> tuple:
    """The keys, beyond COMMON, that the shared code path reads for a kind of these flags."""
    return ((() if config_only else RUNS) + (() if files else SUMMARIES) + (ANALYSIS if shows else ())
            + (OWN_FILES if files and not shows and not config_only else ()) + (SOURCES if sources else ()))


def artefact_kind(name: str, *, output: str, files: bool = False, shows: tuple = (), setup: bool = False,
                  config_only: bool = False, sources: bool = False, settings: tuple = ()):
    """Register an artefact kind with what planning needs to know of it (ticketlab.catalog; the rules, the
    paths and the config checks follow from it):
    output       'table' (results/tables/<id>.csv, .md), 'figure' (results/figures/<id>.png, .pdf, .csv) or
                 'claims' (results/tables/<id>.csv, .md, .rst: the .rst for the report's first page)
    files        False: fn(spec, tidy, paper, outputs) on the runs' summaries (ARTEFACTS); True: the kind reads
                 each row's own file (an analysis JSON, a metrics.csv, a mask report) and is called as
                 fn(spec, results, paper, labels, outputs) (ANALYSIS_ARTEFACTS)
    shows        the analysis kinds it can show (its config entry then names an `analysis` of one of them)
    setup        it also gets the settings of its experiments (spec["setup"], plan.experiment_setup)
    config_only  it reads no runs: the table is the configuration itself
    sources      (with files and config_only) its rows are other artefacts' tidy CSVs (claims: plan.artefact_runs
                 asks ticketlab.claims which)
    settings     the config keys of its own it reads from spec, and `paper` if it shows its `paper` frame
                 (fn.settings: these after shared_settings of its flags); an artefact entry with a key neither
                 in COMMON nor there is a config error"""
    if output not in ("table", "figure", "claims"):
        raise ValueError(f"artefact kind {name!r}: output must be 'table', 'figure' or 'claims', not {output!r}")

    def deco(fn):
        fn.output, fn.files, fn.shows, fn.setup, fn.config_only = output, files, tuple(shows), setup, config_only
        fn.sources = sources
        fn.settings = tuple(dict.fromkeys(shared_settings(files, shows, config_only, sources) + tuple(settings)))
        return (ANALYSIS_ARTEFACTS if files else ARTEFACTS).register(name)(fn)
    return deco


PAPER_MATCH = 0.05  # percentage points between our sparsity and the paper's (both exact, 2 decimals)


def label(cfg_variants: dict, name: str) -> str:
    return cfg_variants.get(name, {}).get("label", name)


KEYS = ["experiment", "mask", "sparsity", "variant"]
PARAMS_SAME = 1e-3  # relative: counts this close are one model size (a weight or two that trained to exactly 0)


def params_of(result: dict) -> float:
    """A run's (summary.json) or analysed model's (analysis JSON) non-zero trainable parameters, extras
    included; NaN for files written before they recorded it (an int `params` was the total, zeros included)."""
    p = result.get("params")
    return float(p["nonzero"]) if isinstance(p, dict) and p.get("nonzero") is not None else math.nan


def numerics_label(n: dict | None) -> str:
    """'cuda bf16', 'cpu fp32' (train.Fast.resolved), with channels_last / compiled where on; 'unknown' if not
    recorded."""
    if not n:
        return "unknown"
    on = [name for name, key in (("channels_last", "channels_last"), ("compiled", "compile"), ("tf32 convs", "tf32"))
          if n.get(key)]
    return " ".join([n["device"], n["precision"]] + on)


def numerics_of(result: dict) -> str:
    """The numerics behind a file: a run summary's own; an analysis JSON's (jobs.analyse) {"trained", "analysed"}
    as 'trained cuda bf16, analysed cuda fp32' (one label when they agree)."""
    n = result.get("numerics")
    if not n or "device" in n:
        return numerics_label(n)
    trained, analysed = numerics_label(n.get("trained")), numerics_label(n.get("analysed"))
    return trained if trained == analysed else f"trained {trained}, analysed {analysed}"


def joined(values) -> str:
    """The distinct labels of a cell's seeds, e.g. 'cpu fp32 + cuda bf16' when they mix."""
    return " + ".join(sorted(set(values)))


def mean_of(values) -> float:
    """Mean of the known values (NaN: not recorded), NaN when none is known."""
    return float(pd.Series(list(values), dtype=float).mean())


def numerics_line(tidy: pd.DataFrame) -> str:
    """The .md line saying which numerics produced a table (several: how many cells each)."""
    counts = tidy["numerics"].value_counts().sort_index() if "numerics" in tidy else pd.Series({"unknown": len(tidy)})
    if len(counts) <= 1:
        return (f"Numerics: {counts.index[0]} (device and precision of the runs)." if len(counts)
                else "Numerics: no runs.")
    return ("Numerics: MIXED — " + "; ".join(f"{k} ({v} of {len(tidy)} rows)" for k, v in counts.items())
            + "; per cell in the CSV's `numerics`.")


def params_line(tidy: pd.DataFrame) -> str:
    """The .md line saying what the params tags mean (or that the runs did not record their counts)."""
    if "params" not in tidy or tidy["params"].isna().all():
        return "Params: not recorded (results written before runs and analyses counted their parameters)."
    return ("Params: non-zero trainable parameters at the end of the run, extras included (the CSV's `params`, "
            "mean over seeds); [N params vs M] marks a run whose count differs from the plain run's, M (LTH on the "
            "same mask and sparsity, else LTH on another mask at that sparsity), e.g. the dense 1x1 conv + BN paths of "
            "Skip / AT.")


def params_reference(tidy: pd.DataFrame) -> list[float]:
    """Per row, the plain run's params beside it: the `lth` run of the same experiment, mask and sparsity;
    else the fewest of the `lth` runs of that experiment and sparsity on other masks (e.g. Table A4's
    LTH + AT row beside the other masks' LTH rows); else the fewest at its cell (extras only add)."""
    if "params" not in tidy:
        return [math.nan] * len(tidy)
    plain = tidy[(tidy["variant"] == "lth") & tidy["params"].notna()]
    cell = plain.groupby(["experiment", "mask", "sparsity"])["params"].min().to_dict()
    same_sparsity = plain.groupby(["experiment", "sparsity"])["params"].min().to_dict()
    fewest = tidy.groupby(["experiment", "mask", "sparsity"])["params"].min().to_dict()
    return [cell.get((e, m, s), same_sparsity.get((e, s), fewest.get((e, m, s))))
            for e, m, s in zip(tidy["experiment"], tidy["mask"], tidy["sparsity"])]


def fmt_params(n: float) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}k" if n >= 1e3 else f"{n:.0f}"


def params_tag(p: float, ref: float) -> str:
    """' [1.53M params vs 335.0k]' when a run's count differs from the plain run's; '' when equal or unknown."""
    if any(x is None or math.isnan(x) for x in (p, ref)) or abs(p - ref) <= PARAMS_SAME * ref:
        return ""
    ours, plain = fmt_params(p), fmt_params(ref)
    if ours == plain:  # close counts (a small-dense match): exact, so the difference shows
        ours, plain = f"{p:,.0f}", f"{ref:,.0f}"
    return f" [{ours} params vs {plain}]"


def params_tags(tidy: pd.DataFrame) -> dict[tuple, str]:
    """(experiment, mask, sparsity, variant) -> params_tag of that cell."""
    refs = params_reference(tidy)
    ps = tidy["params"] if "params" in tidy else [math.nan] * len(tidy)
    return {tuple(r[k] for k in KEYS): params_tag(p, ref) for r, p, ref in zip(tidy.to_dict("records"), ps, refs)}


def extra_tag(d: pd.DataFrame) -> str:
    """For a figure's line (rows with params, params_plain): ' (+1.22M params)', the mean of what its runs
    have more than the plain runs at the same points; '' when none."""
    if "params" not in d or d["params"].isna().all():
        return ""
    extra, plain = (d["params"] - d["params_plain"]).mean(), d["params_plain"].mean()
    if math.isnan(extra) or abs(extra) <= PARAMS_SAME * plain:
        return ""
    return f" ({'+' if extra > 0 else '−'}{fmt_params(abs(extra))} params)"


def read_runs(rows: list[dict], metric: str) -> pd.DataFrame:
    records = []
    for r in rows:
        with open(r["path"]) as f:
            s = json.load(f)
        records.append({**{k: r[k] for k in KEYS + ["seed", "exact"]}, "value": s[metric],
                        "params": params_of(s), "numerics": numerics_of(s)})
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
    tidy["params"] = g["params"].mean().values  # equal over seeds unless a tweak's extras differ by seed
    tidy["numerics"] = g["numerics"].agg(joined).values
    return tidy


def build(spec: dict, variants_cfg: dict, rows: list[dict], paper_paths: list[str], outputs: list[str], aid: str):
    paper = read_paper(paper_paths)
    # rows name files the kind reads itself: analysis JSON, metrics CSV, mask reports
    if spec["kind"] in ANALYSIS_ARTEFACTS:
        results = [(r, read_file(r["path"])) for r in rows]
        labels = {v: label(variants_cfg, v) for v in variants_cfg}
        ANALYSIS_ARTEFACTS.get(spec["kind"])({**spec, "id": aid}, results, paper, labels, outputs)
        return
    runs = read_runs(rows, spec["metric"])
    tidy = summarise(runs, paper, aid, spec["metric"], spec.get("paper_experiments"))
    tidy["label"] = [label(variants_cfg, v) for v in tidy["variant"]]
    ARTEFACTS.get(spec["kind"])({**spec, "id": aid}, tidy, paper, outputs)


import_modules(__name__, __path__)  # every module here: the kinds register themselves
