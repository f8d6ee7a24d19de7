"""Artefact kinds of gradflow (sparse initialisation): a table of training methods x initialisations, and
the signal at initialisation against sparsity.

init_table          rows = methods, columns = initialisations (spec `grid`: rows [label, one variant per
                    column], `columns`: the column names), e.g. Table 1's Scratch / SET / RigL x Original /
                    Liu et al. / Ours; the artefact's other variants (Baseline, Lottery, Small Dense) follow in
                    a second table, one column each. Cells: ours mean ± std over seeds / the paper's value.
init_signal_lines   the `init_signal` analysis (analysis/init_signal.py): std of the output at initialisation
                    against sparsity, one line per initialisation, mean ± std over random masks and seeds,
                    log scale (Figure 1c).
"""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from . import artefact_kind, joined, numerics_line, params_line, params_tags  # noqa: E402
from .analyses import _md, fields  # noqa: E402
from .figures import save  # noqa: E402
from .tables import _num  # noqa: E402

INIT_LABELS = {"dense": "Masked dense (Original)", "liu": "Liu et al. (2019)", "fanin": "Ours (Eq. 1, per-unit fan-in)"}


def _cell(r, tags: dict | None = None) -> str:
    ours = f"{r['mean']:.2f} ± {r['std']:.2f}" if r["n"] > 1 else f"{r['mean']:.2f}"
    tag = (tags or {}).get((r["experiment"], r["mask"], r["sparsity"], r["variant"]), "")
    return f"{ours}{tag} / {_num(r['paper'])}"


@artefact_kind("init_table", output="table", settings=("grid", "columns", "experiment_labels"))
def init_table(spec: dict, tidy: pd.DataFrame, paper: pd.DataFrame, outputs: list[str]) -> None:
    """Per experiment: the grid (one table per sparsity of its runs), then every other variant of the
    artefact with its sparsity."""
    tidy.to_csv(outputs[0], index=False)
    grid, columns = {row[0]: row[1:] for row in spec["grid"]}, spec["columns"]
    for row, vs in grid.items():
        if len(vs) != len(columns) or not set(vs) <= set(spec["variants"]):
            raise ValueError(f"init_table: grid row {row!r} needs one variant of `variants` per column "
                             f"({len(columns)}: {columns}), has {vs}")
    in_grid = {v for vs in grid.values() for v in vs}
    labels = dict(zip(tidy["variant"], tidy["label"]))
    tags = params_tags(tidy)
    lines = [f"# {spec.get('title', '')}".rstrip(), "",
             f"Metric: {spec['metric']}; each cell: ours mean ± std over seeds (n per cell in the CSV) "
             "/ the paper's value.",
             params_line(tidy), numerics_line(tidy)]
    for e in spec["experiments"]:
        sub = tidy[tidy["experiment"] == e]
        if len(spec["experiments"]) > 1:
            lines += ["", f"## {spec.get('experiment_labels', {}).get(e, e)}"]
        cells = sub.set_index(["variant", "sparsity"], drop=False)
        shown = sub[sub["variant"].isin(in_grid)]
        for s in sorted(shown["sparsity"].unique()):
            body = [[row] + [_cell(cells.loc[(v, s)], tags) if (v, s) in cells.index else "–" for v in vs]
                    for row, vs in grid.items()]
            lines += ["", f"Sparsity {100 * s:.2f}%:", ""] + _md(["Method"] + list(columns), body)
        others = [v for v in spec["variants"] if v not in in_grid and v in set(sub["variant"])]
        if others:
            rows = pd.concat([sub[sub["variant"] == v].sort_values("sparsity") for v in others])
            head = [f"{labels.get(r['variant'], r['variant'])} ({100 * r['sparsity']:.2f}%)"
                    for _, r in rows.iterrows()]
            lines += [""] + _md(head, [[_cell(r, tags) for _, r in rows.iterrows()]])
    with open(outputs[1], "w") as f:
        f.write("\n".join(lines) + "\n")


@artefact_kind("init_signal_lines", output="figure", files=True, shows=("init_signal",))
def init_signal_lines(spec, results, paper, labels, outputs):
    """One panel: the output std at initialisation against the random masks' sparsity, one line per
    initialisation (mean ± std over the draws of every analysed run). Rows are random masks drawn on the
    architecture, not trained runs: no params column; numerics are the analysis job's."""
    recs = [{"experiment": r["experiment"], "variant": r["variant"], "seed": r["seed"], "init": method,
             "sparsity": d["sparsity"], "draw": d["draw"], "value": d["std"], "numerics": fields(res)["numerics"]}
            for r, res in results for method, draws in res["draws"].items() for d in draws]
    runs = pd.DataFrame(recs)
    g = runs.groupby(["experiment", "init", "sparsity"], sort=False)
    tidy = g["value"].agg(mean="mean", std="std", n="count").reset_index()
    tidy["std"] = tidy["std"].fillna(0.0)
    tidy["numerics"] = g["numerics"].agg(joined).values
    tidy.insert(0, "artefact", spec["id"])
    tidy.to_csv(outputs[2], index=False)
    fig, ax = plt.subplots(figsize=(4.8, 3.4))
    for i, method in enumerate(dict.fromkeys(tidy["init"])):
        d = tidy[tidy["init"] == method].sort_values("sparsity")
        x = 100 * d["sparsity"]
        ax.plot(x, d["mean"], "o-", ms=3, color=f"C{i}", label=INIT_LABELS.get(method, method))
        ax.fill_between(x, (d["mean"] - d["std"]).clip(lower=d["mean"] * 1e-3), d["mean"] + d["std"],
                        color=f"C{i}", alpha=0.2)
    ax.set_yscale("log")
    ax.set_xlabel("sparsity (%)")
    ax.set_ylabel("std of the pre-softmax output")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    save(fig, spec, outputs, numerics_line(tidy))
