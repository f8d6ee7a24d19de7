"""Artefact kinds that show analyses of runs (ticketlab.analysis) rather than their accuracy.

A kind here is fn(spec, results, paper, labels, outputs): `results` pairs each row of the artefact
(experiment, mask, seed, sparsity, exact, variant) with the analysis JSON of that run; `labels` maps
variant names to their labels. Tidy CSVs have one row per shown cell with mean, std (ddof 1, 0 for
one seed) and n over seeds.
"""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from ..registry import Registry  # noqa: E402
from . import PAPER_MATCH  # noqa: E402
from .figures import save  # noqa: E402
from .tables import _num  # noqa: E402

ANALYSIS_ARTEFACTS = Registry("analysis artefact kind")
CELL = ["experiment", "mask", "sparsity", "variant"]


def _stats(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    g = df.groupby(keys, sort=False)["value"]
    out = g.agg(mean="mean", std="std", n="count").reset_index()
    out["std"] = out["std"].fillna(0.0)
    return out


def _sp(s: float) -> str:
    return f"{100 * s:.2f}%"


def _paper_value(paper: pd.DataFrame, variant: str, stage: str, sparsity: float, single: bool) -> float:
    """The paper's value for (variant, stage) at our sparsity (within PAPER_MATCH points) or, for a
    table at one sparsity (`single`), at the paper's only sparsity."""
    p = paper[(paper["variant"] == variant) & (paper["stage"] == stage)] if len(paper) else paper
    if p.empty:
        return float("nan")
    if single and p["sparsity"].nunique() == 1:
        return float(p["value"].iloc[0])
    d = (p["sparsity"] - 100 * sparsity).abs()
    return float(p.loc[d.idxmin(), "value"]) if d.min() <= PAPER_MATCH else float("nan")


@ANALYSIS_ARTEFACTS.register("activation_table")
def activation_table(spec, results, paper, labels, outputs):
    """% exactly-zero activations per stage. rows_by sparsity (seed 000 Table A1: rows sparsity,
    columns stage x variant) or variant (seed 002 Table 1: rows variant, columns stage)."""
    recs = [{**{k: r[k] for k in CELL + ["seed", "exact"]}, "stage": st, "value": v}
            for r, res in results for st, v in res["stages"].items()]
    order = results[0][1]["order"]
    tidy = _stats(pd.DataFrame(recs), CELL + ["stage"])
    single = spec["rows_by"] == "variant"
    tidy["paper"] = [_paper_value(paper, r["variant"], r["stage"], r["sparsity"], single) for _, r in tidy.iterrows()]
    tidy.insert(0, "artefact", spec["id"])
    tidy.to_csv(outputs[0], index=False)
    cell = tidy.set_index(["sparsity", "variant", "stage"])
    lines = [f"# {spec.get('title', '')}".rstrip(), "",
             "% of exactly-zero activation outputs per stage, mean ± std over seeds; (paper) = the paper's value."]
    if single:
        (s,) = tidy["sparsity"].unique()
        ps = sorted(paper["sparsity"].unique()) if len(paper) else []
        lines += [f"Sparsity {_sp(s)} (ours)" + (f"; the paper's table is at {ps[0]:.2f}%." if len(ps) == 1 else "."), ""]
        head = ["Activation"] + [h for st in order for h in (f"{st} (ours)", f"{st} (paper)")]
        body = [[labels.get(v, v)] + [x for st in order for x in _cell(cell, (s, v, st))] for v in spec["variants"]]
    else:
        lines.append("")
        head = ["Sparsity"] + [h for st in order for v in spec["variants"]
                               for h in (f"{st} {labels.get(v, v)} (ours)", "(paper)")]
        body = [[_sp(s)] + [x for st in order for v in spec["variants"] for x in _cell(cell, (s, v, st))]
                for s in sorted(tidy["sparsity"].unique())]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(b) + " |" for b in body]
    with open(outputs[1], "w") as f:
        f.write("\n".join(lines) + "\n")


def _cell(cell, key):
    if key not in cell.index:
        return ["–", "–"]
    r = cell.loc[key]
    ours = f"{r['mean']:.2f} ± {r['std']:.2f}" if r["n"] > 1 else f"{r['mean']:.2f}"
    return [ours, _num(r["paper"])]


@ANALYSIS_ARTEFACTS.register("analysis_sparsity")
def analysis_sparsity(spec, results, paper, labels, outputs):
    """A scalar of the analysis (`show`, e.g. the top Hessian eigenvalue) against sparsity, one series
    per variant: lines (seed 000 Fig. 2) or grouped bars (Fig. A13)."""
    field = spec["show"][0]
    recs = [{**{k: r[k] for k in CELL + ["seed"]}, "value": res[field]} for r, res in results]
    tidy = _stats(pd.DataFrame(recs), CELL)
    tidy.insert(0, "artefact", spec["id"])
    tidy.insert(5, "field", field)
    tidy.to_csv(outputs[2], index=False)
    xs = sorted(tidy["sparsity"].unique())
    fig, ax = plt.subplots(figsize=(5, 3.4))
    width = 0.8 / len(spec["variants"])
    for i, v in enumerate(spec["variants"]):
        d = tidy[tidy["variant"] == v].set_index("sparsity").reindex(xs)
        pos = np.arange(len(xs))
        if spec.get("style") == "bars":
            ax.bar(pos + (i - (len(spec["variants"]) - 1) / 2) * width, d["mean"], width, yerr=d["std"],
                   label=labels.get(v, v), color=f"C{i}", capsize=2)
        else:
            ax.errorbar(pos, d["mean"], yerr=d["std"], fmt="o-", ms=3, capsize=2, label=labels.get(v, v), color=f"C{i}")
    ax.set_xticks(range(len(xs)), [f"{100 * s:.0f}" for s in xs])
    ax.set_xlabel("sparsity (%)")
    ax.set_ylabel(field.replace("_", " "))
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    save(fig, spec, outputs)


def _curves(results, names) -> pd.DataFrame:
    recs = []
    for r, res in results:
        for name in names:
            c = res["curves"][name]
            recs += [{**{k: r[k] for k in CELL + ["seed"]}, "curve": name, "x": x, "value": y} for x, y in zip(c["x"], c["y"])]
    return _stats(pd.DataFrame(recs), CELL + ["curve", "x"])


@ANALYSIS_ARTEFACTS.register("curve_lines")
def curve_lines(spec, results, paper, labels, outputs):
    """Curves of the analysis (`show`) per variant, mean ± std over seeds at each x: trajectories
    (x = epoch, or step for the gradient flow; LR decays dotted, best-validation epoch marked x) and
    perturbation curves (x = distance). With twin: true, two curves share a panel (left / right axis)."""
    names = spec["show"]
    tidy = _curves(results, names)
    tidy.insert(0, "artefact", spec["id"])
    tidy.to_csv(outputs[2], index=False)
    first = results[0][1]
    groups = [names] if spec.get("twin") and len(names) == 2 else [[n] for n in names]
    sps = sorted(tidy["sparsity"].unique())
    fig, axes = plt.subplots(len(sps), len(groups), figsize=(4.6 * len(groups), 3.4 * len(sps)), squeeze=False)
    for row, s in enumerate(sps):
        for col, group in enumerate(groups):
            ax = axes[row][col]
            panel_axes = []
            for side, name in enumerate(group):
                a = ax.twinx() if side else ax
                panel_axes.append(a)
                for i, v in enumerate(spec["variants"]):
                    d = tidy[(tidy["variant"] == v) & (tidy["curve"] == name) & (tidy["sparsity"] == s)].sort_values("x")
                    style = "--" if side else "-"
                    a.plot(d["x"], d["mean"], style, color=f"C{i}", label=f"{labels.get(v, v)}" + (f" ({name})" if len(group) > 1 else ""))
                    if (d["n"] > 1).any():
                        a.fill_between(d["x"], d["mean"] - d["std"], d["mean"] + d["std"], color=f"C{i}", alpha=0.15)
                    best = [res.get("best_val_epoch") for r, res in results if r["variant"] == v and r["sparsity"] == s]
                    if name.endswith("_acc") and best and best[0] in set(d["x"]):
                        a.plot([best[0]], d.loc[d["x"] == best[0], "mean"], "x", color=f"C{i}", ms=8)
                if name in spec.get("log", []):
                    a.set_yscale("log")
                a.set_ylabel(name.replace("_", " ") + (" (dashed)" if side else ""))
            steps = first.get("steps_per_epoch", 1) if group[0] == "gradient_flow" else 1
            for m in first.get("milestones", []):
                ax.axvline(m * steps, ls=":", color="k", lw=0.8)
            ax.set_xlabel({"gradient_flow": "step", "loss": "distance along the top eigenvector",
                           "acc": "distance along the top eigenvector"}.get(group[0], "epoch"))
            ax.set_title(f"sparsity {_sp(s)}", fontsize=8)
            handles, labs = [], []
            for a in panel_axes:
                h, lab = a.get_legend_handles_labels()
                handles, labs = handles + h, labs + lab
            ax.legend(handles, labs, fontsize=6)
            ax.grid(alpha=0.3)
    save(fig, spec, outputs)


@ANALYSIS_ARTEFACTS.register("landscape")
def landscape(spec, results, paper, labels, outputs):
    """One panel per variant (the first seed shown): filled contours (style contour) or a surface
    (style surface) of the loss on the 2-D grid, or a line in 1-D; loss clamped at `clamp` if given."""
    recs = []
    for r, res in results:
        loss, acc = np.asarray(res["loss"]), np.asarray(res["acc"])
        ys = res["y"] if res["dims"] == 2 else [0.0]
        for j, yv in enumerate(ys):
            for i, xv in enumerate(res["x"]):
                idx = (j, i) if res["dims"] == 2 else (i,)
                recs.append({**{k: r[k] for k in CELL + ["seed"]}, "x": xv, "y": yv if res["dims"] == 2 else None,
                             "loss": loss[idx], "acc": acc[idx]})
    tidy = pd.DataFrame(recs)
    tidy.insert(0, "artefact", spec["id"])
    tidy.to_csv(outputs[2], index=False)
    seed = results[0][0]["seed"]
    shown = {r["variant"]: res for r, res in results if r["seed"] == seed}
    surface = spec.get("style") == "surface"
    n = len(spec["variants"])
    fig = plt.figure(figsize=(3.6 * n, 3.3))
    clamp = spec.get("clamp")
    for i, v in enumerate(spec["variants"]):
        res = shown[v]
        loss = np.asarray(res["loss"], dtype=float)
        if clamp is not None:
            loss = np.minimum(loss, clamp)
        if res["dims"] == 1:
            ax = fig.add_subplot(1, n, i + 1)
            ax.plot(res["x"], loss)
            ax.set_xlabel("direction")
            ax.set_ylabel("loss")
        elif surface:
            ax = fig.add_subplot(1, n, i + 1, projection="3d")
            X, Y = np.meshgrid(res["x"], res["y"])
            ax.plot_surface(X, Y, loss, cmap="viridis", linewidth=0)
            ax.set_zlabel("loss", fontsize=7)
        else:
            ax = fig.add_subplot(1, n, i + 1)
            cs = ax.contourf(res["x"], res["y"], loss, levels=20, cmap="viridis")
            ax.contour(res["x"], res["y"], loss, levels=20, colors="k", linewidths=0.3)
            fig.colorbar(cs, ax=ax, fraction=0.046)
        ax.set_title(f"{labels.get(v, v)}", fontsize=8)
    if spec.get("title"):
        spec = {**spec, "title": f"{spec['title']} (seed {seed})"}
    save(fig, spec, outputs)
