"""Does it reproduce? The verdict on each claim of a paper (config/claims/<prefix>.yaml; ticketlab.claims loads
and checks them), from the tidy CSVs of the artefacts the claims read.

Each cell (the rows of side a and side b paired on the key columns) gives a difference d = mean_a - mean_b and
a 95% t interval: Welch's, from each side's std and n over seeds (the tidy CSVs keep mean, std and n per cell,
not the seeds' values, so the interval is the unpaired one, wider than a paired one would be when the variants
share seeds), with Welch-Satterthwaite degrees of freedom; against a constant, the one-sample interval.
Pooled claims (over: pooled) judge the mean of the cells' differences, with variance sum(var_c) / C^2 and the
same degrees-of-freedom rule over all the cells' terms. The verdict: reproduced (the interval lies on the
claimed side of 0, or inside the claimed range), contradicted (on the other side, or outside the range),
inconclusive (it straddles, or a side has one seed: no interval); a claim over several cells is reproduced when
every cell is, contradicted when any is. Flags (expect true / false) are judged per cell from the artefact's own
test (e.g. the jackpot conditions), inconclusive on one seed. A claim whose rows are absent is `missing`, naming
what; one the configuration does not decide (the claims artefact's `decide`) is `not decided`."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from . import artefact_kind

LEVEL = 0.95
REPRODUCED, CONTRADICTED, INCONCLUSIVE, MISSING, NOT_DECIDED = (
    "reproduced", "contradicted", "inconclusive", "missing", "not decided")
VERDICTS = (REPRODUCED, CONTRADICTED, INCONCLUSIVE, MISSING, NOT_DECIDED)
# the columns that name a cell (paired on by default when neither side names them); the others are values
CELL_KEYS = ("experiment", "group", "mask", "init", "sparsity", "variant", "ticket", "stage", "layer", "curve",
             "field", "quantity", "metric", "series", "lr", "x")
COLUMNS = {"value": "mean", "std": "std", "n": "n"}


class ClaimDataError(ValueError):
    """A claim that does not fit its artefact's CSV (a column it lacks, rows it cannot pair)."""


def _matches(col: pd.Series, f) -> pd.Series:
    if isinstance(f, dict):
        keep = pd.Series(True, index=col.index)
        if "min" in f:
            keep &= col >= f["min"] - 1e-6
        if "max" in f:
            keep &= col <= f["max"] + 1e-6
        return keep
    values = f if isinstance(f, list) else [f]
    if pd.api.types.is_numeric_dtype(col) and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                  for v in values):
        return np.isclose(col.to_numpy(dtype=float)[:, None], np.array(values, float)[None, :], atol=1e-6).any(1)
    return col.astype(str).isin([str(v) for v in values])


def select(df: pd.DataFrame, filters: dict, what: str) -> pd.DataFrame:
    """The rows `filters` keeps: values, lists and ranges first, then max / min among what those keep."""
    for col in filters:
        if col not in df.columns:
            raise ClaimDataError(f"{what}: the CSV has no column {col!r} (columns: {list(df.columns)})")
    plain = {c: f for c, f in filters.items() if f not in ("max", "min")}
    for col, f in plain.items():
        df = df[_matches(df[col], f)]
    for col, f in filters.items():
        if f in ("max", "min") and len(df):
            df = df[np.isclose(df[col].astype(float), getattr(df[col].astype(float), f)(), atol=1e-9)]
    return df


def welch(a: tuple, b: tuple) -> tuple[float, float, float]:
    """(d, se, df) of mean_a - mean_b from (mean, std, n) of each side; b = (value, 0, inf) is a constant.
    df is NaN when a side has one seed (no variance to estimate)."""
    d = a[0] - b[0]
    if a[2] < 2 or b[2] < 2:
        return d, math.nan, math.nan
    terms = _terms(a, b)
    return d, math.sqrt(sum(v for v, _ in terms)), _satterthwaite(terms)


def _terms(a: tuple, b: tuple) -> list[tuple[float, float]]:
    """The variance terms (std^2 / n, n) of the two sides' means; a constant's (n inf) is 0."""
    return [(s ** 2 / n if math.isfinite(n) else 0.0, n) for _, s, n in (a, b)]


def _satterthwaite(terms: list[tuple[float, float]]) -> float:
    """Welch-Satterthwaite degrees of freedom of a sum of variance terms (v_i, n_i); terms of constants (n inf)
    and zero variance add nothing. Infinite when every term is 0 (the interval is then the point)."""
    total = sum(v for v, _ in terms)
    den = sum(v ** 2 / (n - 1) for v, n in terms if math.isfinite(n) and v > 0)
    return total ** 2 / den if den > 0 else math.inf


def interval(d: float, se: float, df: float, level: float = LEVEL) -> tuple[float, float]:
    if math.isnan(df):
        return math.nan, math.nan
    if se == 0 or math.isinf(df):
        half = se * stats.norm.ppf(0.5 + level / 2)
    else:
        half = se * stats.t.ppf(0.5 + level / 2, df)
    return d - half, d + half


def judge(lo: float, hi: float, expect, rng=None) -> str:
    """The verdict on an interval [lo, hi] of a - b (NaN: none, one seed)."""
    if math.isnan(lo):
        return INCONCLUSIVE
    if expect == "greater":
        return REPRODUCED if lo > 0 else CONTRADICTED if hi < 0 else INCONCLUSIVE
    if expect == "less":
        return REPRODUCED if hi < 0 else CONTRADICTED if lo > 0 else INCONCLUSIVE
    r1, r2 = rng
    return REPRODUCED if r1 <= lo and hi <= r2 else CONTRADICTED if hi < r1 or lo > r2 else INCONCLUSIVE


def _margin(cell: dict, expect, rng) -> float:
    """How safely a cell holds the claim (smaller: weaker), to report the weakest cell of an `every` claim."""
    lo, hi, d = cell["ci_low"], cell["ci_high"], cell["diff"]
    lo, hi = (d, d) if math.isnan(lo) else (lo, hi)
    if expect == "greater":
        return lo
    if expect == "less":
        return -hi
    if expect == "range":
        return min(lo - rng[0], rng[1] - hi)
    return 0.0


def _flag(v) -> bool | None:
    """A flag cell as a bool; None when the artefact left it undecided (empty, NaN, anything else)."""
    text = str(v).strip().lower()
    return True if text in ("true", "1", "1.0") else False if text in ("false", "0", "0.0") else None


def _cell_name(key: dict) -> str:
    """Cell keys or filters in words: sparsity=0.9, variant=lth, sparsity in [0.5, 0.8], sparsity >= 0.5."""
    def one(k, v):
        if isinstance(v, dict):
            lo, hi = v.get("min"), v.get("max")
            return f"{k} in [{lo:g}, {hi:g}]" if lo is not None and hi is not None else \
                f"{k} >= {lo:g}" if lo is not None else f"{k} <= {hi:g}"
        return f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
    return ", ".join(one(k, v) for k, v in key.items()) or "all"


def cells(claim: dict, df: pd.DataFrame, what: str) -> tuple[list[dict], str]:
    """The claim's cells: for each pairing key, the two sides' (mean, std, n) and the difference with its
    interval and verdict. Returns (cells, why none) — the second says which rows are missing when none pair."""
    cols = {**COLUMNS, **claim.get("columns", {})}
    shared = claim.get("select", {})
    a = select(df, {**shared, **claim["a"]}, f"{what}.a")
    if a.empty:
        return [], f"{claim['artefact']} has no rows with {_cell_name({**shared, **claim['a']})}"
    b_side = claim.get("b")
    constant = b_side is not None and set(b_side) == {"value"}
    # cells pair the sides on the key columns where they select alike: a column the sides filter differently
    # (variant x vs variant y) is what the claim compares; against a constant or a flag nothing is paired
    rows_b = b_side if b_side is not None and not constant else None
    differ = set() if rows_b is None else {c for c in set(claim["a"]) | set(rows_b)
                                           if claim["a"].get(c) != rows_b.get(c)}
    by = claim.get("by") or [c for c in CELL_KEYS if c in df.columns and c not in differ]
    for c in list(by) + [cols["value"]] + ([] if claim["expect"] in (True, False) else [cols["std"], cols["n"]]):
        if c not in df.columns:
            raise ClaimDataError(f"{what}: {claim['artefact']}'s CSV has no column {c!r} (columns: {list(df.columns)})")
    b = None if b_side is None or constant else select(df, {**shared, **b_side}, f"{what}.b")
    if b is not None and b.empty:
        return [], f"{claim['artefact']} has no rows with {_cell_name({**shared, **b_side})}"
    out, unpaired = [], []
    for key, ga in (a.groupby(by, sort=True, dropna=False) if by else [((), a)]):
        key = dict(zip(by, key if isinstance(key, tuple) else (key,)))
        gb = None
        if b is not None:
            gb = b[np.logical_and.reduce([_matches(b[k], v) for k, v in key.items()])] if key else b
            if gb.empty:
                unpaired.append(_cell_name(key))
                continue
        for g, side in ((ga, "a"), (gb, "b")):
            if g is not None and len(g) > 1:
                raise ClaimDataError(f"{what}: {len(g)} rows of side {side} in cell {_cell_name(key)}; name the "
                                     f"column(s) that tell them apart (by, or a filter)")
        out.append(_judge_cell(claim, cols, key, ga.iloc[0], None if gb is None else gb.iloc[0],
                               b_side["value"] if constant else None))
    if not out:
        return [], f"no cell of {claim['artefact']} has both sides (a's cells without b: {', '.join(unpaired)})"
    return out, (f"unpaired cells left out: {', '.join(unpaired)}" if unpaired else "")


def _judge_cell(claim, cols, key, ra, rb, constant) -> dict:
    cell = {"cell": _cell_name(key)}
    if claim["expect"] in (True, False):
        n = float(ra[cols["n"]]) if cols["n"] in ra else math.nan
        value = _flag(ra[cols["value"]])
        verdict = (MISSING if value is None else INCONCLUSIVE if not n >= 2
                   else REPRODUCED if value == claim["expect"] else CONTRADICTED)
        return {**cell, "a": value, "b": None, "n_a": n, "n_b": None, "diff": math.nan, "ci_low": math.nan,
                "ci_high": math.nan, "df": math.nan, "verdict": verdict, "se": math.nan}
    sa = (float(ra[cols["value"]]), float(ra[cols["std"]]), float(ra[cols["n"]]))
    sb = (float(constant), 0.0, math.inf) if rb is None else (
        float(rb[cols["value"]]), float(rb[cols["std"]]), float(rb[cols["n"]]))
    if any(math.isnan(v) for v in (sa[0], sb[0])):
        return {**cell, "a": sa[0], "b": sb[0], "n_a": sa[2], "n_b": sb[2], "diff": math.nan, "se": math.nan,
                "ci_low": math.nan, "ci_high": math.nan, "df": math.nan, "verdict": MISSING}
    d, se, df = welch(sa, sb)
    lo, hi = interval(d, se, df)
    return {**cell, "a": sa[0], "b": sb[0], "n_a": sa[2], "n_b": sb[2] if math.isfinite(sb[2]) else None,
            "diff": d, "se": se, "df": df, "ci_low": lo, "ci_high": hi,
            "verdict": judge(lo, hi, claim["expect"], claim.get("range")), "_terms": _terms(sa, sb)}


def pooled(claim: dict, cs: list[dict]) -> dict:
    """The mean difference over the cells, its interval from all cells' variance terms, and its verdict."""
    c = len(cs)
    d = sum(x["diff"] for x in cs) / c
    if any(math.isnan(x["df"]) for x in cs):
        return {"diff": d, "ci_low": math.nan, "ci_high": math.nan, "df": math.nan, "verdict": INCONCLUSIVE}
    terms = [t for x in cs for t in x["_terms"]]
    se = math.sqrt(sum(v for v, _ in terms)) / c
    df = _satterthwaite(terms)
    lo, hi = interval(d, se, df)
    return {"diff": d, "ci_low": lo, "ci_high": hi, "df": df,
            "verdict": judge(lo, hi, claim["expect"], claim.get("range"))}


def combine(claim: dict, cs: list[dict]) -> dict:
    """An `every` claim: reproduced if every cell is, contradicted if any cell is; the numbers of its weakest cell."""
    verdicts = [x["verdict"] for x in cs]
    verdict = (CONTRADICTED if CONTRADICTED in verdicts else MISSING if MISSING in verdicts
               else REPRODUCED if all(v == REPRODUCED for v in verdicts) else INCONCLUSIVE)
    order = {CONTRADICTED: 0, MISSING: 1, INCONCLUSIVE: 2, REPRODUCED: 3}
    weakest = min(cs, key=lambda x: (order[x["verdict"]], _margin(x, claim["expect"], claim.get("range"))))
    return {**{k: weakest[k] for k in ("diff", "ci_low", "ci_high", "df")}, "verdict": verdict,
            "weakest": weakest["cell"]}


def evaluate(claim: dict, df: pd.DataFrame | None, what: str) -> dict:
    """The verdict on one claim with its numbers: diff, ci_low, ci_high, df (the pooled difference, or the weakest
    cell's), counts of cells per verdict, a per-cell detail line, and why where there is no verdict."""
    empty = {"diff": math.nan, "ci_low": math.nan, "ci_high": math.nan, "df": math.nan, "cells": 0, "detail": ""}
    if df is None:
        return {**empty, "verdict": MISSING, "reason": f"artefact {claim['artefact']} not read"}
    cs, why = cells(claim, df, what)
    if not cs:
        return {**empty, "verdict": MISSING, "reason": why}
    flag = claim["expect"] in (True, False)
    out = pooled(claim, cs) if claim["over"] == "pooled" and not flag else combine(claim, cs)
    counts = {v: sum(x["verdict"] == v for x in cs) for v in (REPRODUCED, CONTRADICTED, INCONCLUSIVE, MISSING)}
    n_min = min(min(x["n_a"], x["n_b"] if x["n_b"] is not None else math.inf) for x in cs)
    reason = why if out["verdict"] != INCONCLUSIVE or n_min >= 2 else \
        f"n = {n_min:g} seed(s): no interval; {why}".rstrip("; ")
    return {**out, "cells": len(cs), **{f"cells_{k}": n for k, n in counts.items()}, "n_min": n_min,
            "detail": "; ".join(_detail(x, claim) for x in cs), "reason": reason}


def fmt_diff(d: float, lo: float, hi: float) -> str:
    if math.isnan(d):
        return "–"
    return f"{d:+.3g}" + ("" if math.isnan(lo) else f" [{lo:+.3g}, {hi:+.3g}]")


def _detail(x: dict, claim: dict) -> str:
    if claim["expect"] in (True, False):
        return f"{x['cell']}: {x['a']} (n={x['n_a']:g}) {x['verdict']}"
    return f"{x['cell']}: {x['a']:.4g} vs {x['b']:.4g}, {fmt_diff(x['diff'], x['ci_low'], x['ci_high'])} {x['verdict']}"


def comparison(claim: dict) -> str:
    """The claim's test in words, e.g. 'variant=at_trt − variant=lth > 0 at every cell (sparsity min 0.89)'."""
    def side(s):
        return ", ".join(f"{k}={v}" if not isinstance(v, dict) else f"{k} in [{v.get('min', '')}, {v.get('max', '')}]"
                         for k, v in s.items())
    if claim["expect"] in (True, False):
        value = claim.get("columns", {}).get("value", "value")
        test = f"{value} is {str(claim['expect']).lower()} for {side(claim['a'])}"
    else:
        b = claim["b"]
        rhs = f"{b['value']:g}" if set(b) == {"value"} else side(b)
        op = {"greater": "> 0", "less": "< 0"}.get(claim["expect"]) or \
            f"in [{claim['range'][0]:g}, {claim['range'][1]:g}]"
        test = f"({side(claim['a'])}) − ({rhs}) {op}"
    where = f" where {side(claim['select'])}" if claim.get("select") else ""
    return f"{test}{where}, {'pooled over' if claim['over'] == 'pooled' else 'at every'} cell"


def verdicts(spec: dict, frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per claim of the artefact's claim files: the verdict and its numbers (see evaluate)."""
    rows = []
    for name, doc in spec["claim_files"].items():
        for cid, claim in doc["claims"].items():
            where = f"config/claims/{name}.yaml: claims.{cid}"
            if cid not in spec["decided"].get(name, doc["claims"]):
                r = {"verdict": NOT_DECIDED, "reason": f"not decided in this configuration "
                     f"(artefacts.{spec['id']}.decide)", "cells": 0}
            else:
                r = evaluate(claim, frames.get(claim["artefact"]), where)
            rows.append({"artefact": spec["id"], "paper": name, "claim": cid, "reads": claim["artefact"],
                         "where": claim["where"],
                         "quote": claim["quote"], "comparison": comparison(claim), **r})
    cols = ["artefact", "paper", "claim", "verdict", "diff", "ci_low", "ci_high", "df", "cells", "cells_reproduced",
            "cells_contradicted", "cells_inconclusive", "cells_missing", "n_min", "weakest", "reads", "where",
            "comparison", "quote", "reason", "detail"]
    return pd.DataFrame.from_records(rows).reindex(columns=cols)


def counts_line(tidy: pd.DataFrame) -> str:
    c = tidy["verdict"].value_counts()
    return ", ".join(f"{int(c[v])} {v}" for v in VERDICTS if v in c) or "no claims"


def write_md(spec: dict, tidy: pd.DataFrame, path: str) -> None:
    lines = [f"# {spec.get('title', spec['id'])}", "",
             "Each claim of the paper, tested on the tidy CSVs of the artefacts it reads: the difference a − b "
             f"(the weakest cell's, or the pooled one) with its {LEVEL:.0%} interval (Welch's t over seeds), then "
             "reproduced (interval on the claimed side), contradicted (on the other side) or inconclusive "
             "(straddles, or one seed).", ""]
    for paper, t in tidy.groupby("paper", sort=False):
        lines += [f"## {paper}: {spec['claim_files'][paper]['paper']}", "", f"Verdicts: {counts_line(t)}.", "",
                  "| Claim | Where | Verdict | a − b [95% CI] | Cells (reproduced / all) | Artefact |",
                  "|---|---|---|---|---|---|"]
        for r in t.to_dict("records"):
            cells_txt = f"{int(r['cells_reproduced'])} / {int(r['cells'])}" if r["cells"] else "–"
            lines.append(f"| {r['claim']} | {r['where']} | **{r['verdict']}** | "
                         f"{fmt_diff(r['diff'], r['ci_low'], r['ci_high'])} | {cells_txt} | {r['reads']} |")
        lines.append("")
        for r in t.to_dict("records"):
            lines += [f"- **{r['claim']}** ({r['verdict']}): “{r['quote']}” — {r['where']}.",
                      f"  Test: {r['comparison']}."]
            for k in ("reason", "detail"):
                if isinstance(r[k], str) and r[k]:
                    lines.append(f"  {k.capitalize()}: {r[k]}.")
        lines.append("")
    with open(path, "w") as f:
        f.write("\n".join(lines))


def _rst(text: str) -> str:
    for ch in "\\*`|_":
        text = text.replace(ch, "\\" + ch)
    return text


def write_rst(spec: dict, tidy: pd.DataFrame, path: str, outputs_of: dict[str, str]) -> None:
    """The claims table for the report's first page (workflow/report/workflow.rst includes it): a row per claim,
    its artefact linked to that artefact's entry in the report (`<file>`_ targets Snakemake defines)."""
    lines = [f"Claims: {counts_line(tidy)} (``{spec['id']}``, 95% intervals; tables/{spec['id']}.md has the quotes "
             "and every cell).", "", ".. list-table::", "   :header-rows: 1", "",
             "   * - Paper", "     - Claim", "     - Verdict", "     - a − b [95% CI]", "     - Artefact"]
    for r in tidy.to_dict("records"):
        link = outputs_of.get(r["reads"])
        lines += [f"   * - {r['paper']}", f"     - {_rst(r['claim'])} ({_rst(r['where'])})", f"     - {r['verdict']}",
                  f"     - {_rst(fmt_diff(r['diff'], r['ci_low'], r['ci_high']))}",
                  f"     - `{link}`_" if link else f"     - {_rst(r['reads'])}"]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


@artefact_kind("claims", output="claims", files=True, config_only=True, sources=True)
def claims_table(spec, results, paper, labels, outputs):
    """The verdict on every claim of the claim files named by `claims` (results: each source artefact's row,
    {artefact, path, report}, and its tidy CSV)."""
    frames = {r["artefact"]: df for r, df in results}
    tidy = verdicts(spec, frames)
    tidy.to_csv(outputs[0], index=False)
    write_md(spec, tidy, outputs[1])
    write_rst(spec, tidy, outputs[2], {r["artefact"]: r["report"] for r, _ in results})
