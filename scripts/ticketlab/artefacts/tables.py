"""Table kinds: the tidy CSV and a Markdown table laid out like the paper's, ours beside the paper's."""
from __future__ import annotations

import math

import pandas as pd

from . import artefact_kind, numerics_line, params_line, params_tags


def _num(x: float, sign: bool = False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:+.2f}" if sign else f"{x:.2f}"


@artefact_kind("sparsity_table", output="table", settings=("baseline", "difference"))
def sparsity_table(spec: dict, tidy: pd.DataFrame, paper: pd.DataFrame, outputs: list[str]) -> None:
    """Rows: sparsity; columns: variants (ours mean ± std over seeds, then the paper's value), each
    with its difference to `baseline`; optional `difference` column (first minus second variant)."""
    base = spec.get("baseline")
    key = tidy.set_index(["sparsity", "variant"])  # one experiment and mask (checked in the config)
    if base:
        tidy["delta"] = [r["mean"] - key.loc[(r["sparsity"], base), "mean"] for _, r in tidy.iterrows()]
        tidy["paper_delta"] = [r["paper"] - key.loc[(r["sparsity"], base), "paper"] for _, r in tidy.iterrows()]
    tidy.to_csv(outputs[0], index=False)

    tags = params_tags(tidy)
    labels = dict(zip(tidy["variant"], tidy["label"]))
    head = ["Sparsity"]
    for v in spec["variants"]:
        head += [f"{labels[v]} (ours)", f"{labels[v]} (paper)"]
    diff = spec.get("difference")
    if diff:
        head += [f"{labels.get(diff[0], diff[0])} − {labels.get(diff[1], diff[1])} (ours)", "(paper)"]
    lines = [f"# {spec.get('title', '')}".rstrip(), "",
             f"Metric: {spec['metric']}, mean ± std over seeds (n per cell in the CSV). "
             f"Deltas in parentheses are to {labels.get(base, base)}." if base else
             f"Metric: {spec['metric']}, mean ± std over seeds (n per cell in the CSV).",
             params_line(tidy), numerics_line(tidy), "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in sorted(tidy["sparsity"].unique()):
        cells = [f"{100 * s:.2f}%"]
        for v in spec["variants"]:
            r = key.loc[(s, v)]
            ours, theirs = f"{r['mean']:.2f} ± {r['std']:.2f}", _num(r["paper"])
            if base and v != base:
                d = r["mean"] - key.loc[(s, base), "mean"]
                pd_ = r["paper"] - key.loc[(s, base), "paper"]
                ours += f" ({_num(d, True)})"
                theirs += f" ({_num(pd_, True)})" if not math.isnan(pd_) else ""
            cells += [ours + tags.get((r["experiment"], r["mask"], s, v), ""), theirs]
        if diff:
            a, b = key.loc[(s, diff[0])], key.loc[(s, diff[1])]
            cells += [_num(a["mean"] - b["mean"], True), _num(a["paper"] - b["paper"], True)]
        lines.append("| " + " | ".join(cells) + " |")
    with open(outputs[1], "w") as f:
        f.write("\n".join(lines) + "\n")


@artefact_kind("grid_table", output="table", settings=("mask_labels", "experiment_labels", "summary_rows"))
def grid_table(spec: dict, tidy: pd.DataFrame, paper: pd.DataFrame, outputs: list[str]) -> None:
    """Rows: mask x variant (e.g. SNIP, SNIP + ToST), or the `rows` pairs given; columns: experiment
    x sparsity (e.g. ResNet-32 CIFAR-10 at 90/95/98%); each cell ours mean ± std over seeds and the
    paper's value. A row of mask `dense` (e.g. [dense, lth]: the dense run, tost Table 2's
    "[No Pruning]") has one value per experiment, shown in each of its sparsity columns (no 0% column)."""
    tidy.to_csv(outputs[0], index=False)
    tags = params_tags(tidy)
    labels = dict(zip(tidy["variant"], tidy["label"]))
    mask_labels = spec.get("mask_labels", {})
    exp_labels = spec.get("experiment_labels", {})
    key = tidy.set_index(["experiment", "mask", "sparsity", "variant"])
    sparse = tidy[tidy["mask"] != "dense"]
    cols = [(e, s) for e in spec["experiments"]
            for s in sorted(sparse.loc[sparse["experiment"] == e, "sparsity"].unique()) or [0.0]]
    head = ["Mask", "Training"] + [f"{exp_labels.get(e, e)} {100 * s:g}%" for e, s in cols]
    pairs = spec.get("rows") or [[m, v] for m in spec["masks"] for v in spec["variants"]]
    dense_note = ("A `dense` row is the unpruned network: its one value per experiment is repeated in each "
                  "sparsity column." if any(m == "dense" for m, *_ in pairs) else "")
    lines = [f"# {spec.get('title', '')}".rstrip(), "",
             (f"Metric: {spec['metric']}; each cell: ours mean ± std over seeds / the paper's value. "
              f"{dense_note}").rstrip(),
             params_line(tidy), numerics_line(tidy), "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m, v, *_ in pairs:  # [mask, variant] or [mask, variant, experiment]
        plain_dense = m == "dense" and v == "lth"  # the dense run itself: no ticket training to name
        cells = [mask_labels.get(m, m), "" if plain_dense else labels.get(v, v)]
        for e, s in cols:
            k = (e, m, 0.0 if m == "dense" else s, v)
            r = key.loc[k] if k in key.index else None
            cells.append("–" if r is None
                         else f"{r['mean']:.2f} ± {r['std']:.2f}{tags.get(k, '')} / {_num(r['paper'])}")
        lines.append("| " + " | ".join(cells) + " |")
    if spec.get("summary_rows"):  # over the methods: a dense row is their reference, not one of them
        lines += summary_rows(key, [(m, v) for m, v, *_ in pairs if m != "dense"], cols)
    with open(outputs[1], "w") as f:
        f.write("\n".join(lines) + "\n")


def summary_rows(key: pd.DataFrame, pairs: list[tuple[str, str]], cols: list[tuple[str, float]]) -> list[str]:
    """Markdown rows Mean and Std of each column over the rows' means (std with ddof 0, as dlth's
    Table 4 over its cycle numbers): ours / the paper's (– unless the paper gives every row)."""
    out = []
    for name, stat in (("Mean", lambda x: x.mean()), ("Std", lambda x: x.std(ddof=0))):
        cells = [name, ""]
        for e, s in cols:
            rows = [key.loc[(e, m, s, v)] for m, v in pairs if (e, m, s, v) in key.index]
            values = [pd.Series([r[c] for r in rows], dtype=float) for c in ("mean", "paper")]
            ours, theirs = [stat(x) if len(x) and x.notna().all() else None for x in values]
            cells.append(f"{_num(ours)} / {_num(theirs)}")
        out.append("| " + " | ".join(cells) + " |")
    return out
