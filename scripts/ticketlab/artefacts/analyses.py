"""Artefact kinds that show analyses of runs (ticketlab.analysis) rather than their accuracy.

A kind here is fn(spec, results, paper, labels, outputs): `results` pairs each row of the artefact
(experiment, mask, seed, sparsity, exact, variant) with the analysis JSON of that run; `labels` maps
variant names to their labels. Tidy CSVs have one row per shown cell with mean, std (ddof 1, 0 for
one seed) and n over seeds, and the cell's params (non-zero trainable parameters of the analysed model,
extras included; jobs.analyse) and numerics (the run's training and the analysis job's own, which is fp32).
"""
from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from . import (PAPER_MATCH, artefact_kind, extra_tag, joined, numerics_line, numerics_of, paper_at, params_line,  # noqa: E402
               params_of, params_reference, params_tags)
from .figures import save  # noqa: E402
from .tables import _num  # noqa: E402

CELL = ["experiment", "mask", "sparsity", "variant"]


def _stats(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    g = df.groupby(keys, sort=False)
    out = g["value"].agg(mean="mean", std="std", n="count").reset_index()
    out["std"] = out["std"].fillna(0.0)
    if "params" in df:  # rows of runs (fields): the cell's params over seeds and its numerics
        out["params"] = g["params"].mean().values
        out["numerics"] = g["numerics"].agg(joined).values
    return out


def fields(res: dict) -> dict:
    """What a row's file says about the model behind it: params (NaN if not recorded) and numerics."""
    return {"params": params_of(res), "numerics": numerics_of(res)}


def _sp(s: float) -> str:
    return f"{100 * s:.2f}%"


def _variants(spec: dict, results) -> list[str]:
    """The variants shown, in the spec's order (default: the order of the rows)."""
    return spec.get("variants") or list(dict.fromkeys(r["variant"] for r, _ in results))


def _paper_value(paper: pd.DataFrame, row: dict, same: dict | None, single: bool) -> float:
    """The paper's value for a cell (paper_at: same variant, stage, experiment/mask where the file
    names them, sparsity within PAPER_MATCH points) or, for a table by variant (`single`) whose paper
    table has one sparsity, the paper's value at that sparsity (named in the table's header)."""
    v = paper_at(paper, row, same)
    if math.isnan(v) and single and not paper.empty and paper["sparsity"].nunique() == 1:
        v = paper_at(paper, {**row, "sparsity": float(paper["sparsity"].iloc[0]) / 100}, same)
    return v


def threshold_of(res: dict) -> float:
    """The activations analysis's threshold (|a| <= it counts as zero); 0 (exact zeros) in results
    written before the setting existed."""
    return float(res.get("threshold", res.get("analysis", {}).get("threshold", 0.0)))


def threshold_line(thresholds) -> str:
    ts = sorted(set(thresholds))
    what = lambda t: "exactly zero (a == 0)" if t == 0 else f"|a| <= {t:g}"  # noqa: E731
    if len(ts) > 1:
        return ("Zero activations: MIXED definitions — " + "; ".join(what(t) for t in ts)
                + " (per cell in the CSV's `threshold`).")
    return f"Zero activations: {what(ts[0])} (the analysis's `threshold`; 0 = exact zeros)."


@artefact_kind("activation_table", output="table", files=True, shows=("activations",),
               settings=("rows_by", "paper", "paper_experiments"))
def activation_table(spec, results, paper, labels, outputs):
    """% zero activations (|a| <= the analysis's threshold) per stage. rows_by sparsity (spend Table A1:
    rows sparsity, columns stage x variant, ours then the paper's) or variant (tost Table 1: rows
    variant, columns stage; one table per sparsity)."""
    recs = [{**{k: r[k] for k in CELL + ["seed", "exact"]}, "stage": st, "value": v, "threshold": threshold_of(res),
             **fields(res)} for r, res in results for st, v in res["stages"].items()]
    order = list(dict.fromkeys(st for _, res in results for st in res.get("order", res["stages"])))
    runs = pd.DataFrame(recs)
    tidy = _stats(runs, CELL + ["stage"])
    g = runs.groupby(CELL + ["stage"], sort=False)
    tidy["exact_sparsity"] = g["exact"].first().values
    tidy["threshold"] = g["threshold"].max().values  # one analysis per cell: its seeds share the setting
    single = spec.get("rows_by", "sparsity") == "variant"
    same = spec.get("paper_experiments")
    tidy["paper"] = [_paper_value(paper, r, same, single) for r in tidy.to_dict("records")]
    tidy.insert(0, "artefact", spec["id"])
    tidy.to_csv(outputs[0], index=False)
    variants = _variants(spec, results)
    tags = params_tags(tidy)
    lines = [f"# {spec.get('title', '')}".rstrip(), "",
             "% of activation outputs counted as zero per stage, ours mean ± std over seeds (n per cell in the CSV); "
             "(paper) = the paper's value.", threshold_line(runs["threshold"]), params_line(tidy), numerics_line(tidy)]
    groups = list(tidy.groupby(["experiment", "mask"], sort=False))
    for (e, m), sub in groups:
        cell = sub.set_index(["sparsity", "variant", "stage"])
        if len(groups) > 1:
            lines += ["", f"## {e}, {m}"]
        if single:
            ps = sorted(paper["sparsity"].unique()) if not paper.empty else []
            for s in sorted(sub["sparsity"].unique()):
                note = (f"; the paper's table is at {ps[0]:.2f}%"
                        if len(ps) == 1 and abs(ps[0] - 100 * s) > PAPER_MATCH else "")
                head = ["Activation"] + [h for st in order for h in (f"{st} (ours)", f"{st} (paper)")]
                body = [[labels.get(v, v) + tags.get((e, m, s, v), "")]
                        + [x for st in order for x in _cell(cell, (s, v, st))]
                        for v in variants]
                lines += ["", f"Sparsity {_sp(s)} (ours){note}.", ""] + _md(head, body)
        else:
            head = ["Sparsity"] + [h for st in order for v in variants
                                   for h in (f"{st} {labels.get(v, v)} (ours)", "(paper)")]
            body = [[_sp(s) + "".join(f" {labels.get(v, v)}{tags[e, m, s, v]}"
                                      for v in variants if tags.get((e, m, s, v)))]
                    + [x for st in order for v in variants for x in _cell(cell, (s, v, st))]
                    for s in sorted(sub["sparsity"].unique())]
            lines += [""] + _md(head, body)
    with open(outputs[1], "w") as f:
        f.write("\n".join(lines) + "\n")


def _md(head: list[str], body: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(b) + " |" for b in body]


def _cell(cell, key):
    if key not in cell.index:
        return ["–", "–"]
    r = cell.loc[key]
    ours = f"{r['mean']:.2f} ± {r['std']:.2f}" if r["n"] > 1 else f"{r['mean']:.2f}"
    return [ours, _num(r["paper"])]


@artefact_kind("analysis_sparsity", output="figure", files=True, shows=("hessian", "perturbation"),
               settings=("show", "style"))
def analysis_sparsity(spec, results, paper, labels, outputs):
    """A scalar of the analysis (`show`, e.g. the top Hessian eigenvalue) against sparsity, one series
    per variant: lines (spend Fig. 2) or grouped bars (Fig. A13)."""
    field = spec["show"][0]
    for r, res in results:
        if not isinstance(res.get(field), (int, float)):
            scalars = sorted(k for k, x in res.items() if isinstance(x, (int, float)))
            raise KeyError(f"{r['path']}: no scalar {field!r} (has {scalars})")
    recs = [{**{k: r[k] for k in CELL + ["seed"]}, "value": res[field], **fields(res)} for r, res in results]
    tidy = _stats(pd.DataFrame(recs), CELL)
    tidy.insert(0, "artefact", spec["id"])
    tidy.insert(5, "field", field)
    tidy["params_plain"] = params_reference(tidy)
    tidy.to_csv(outputs[2], index=False)
    xs = sorted(tidy["sparsity"].unique())
    variants = _variants(spec, results)
    fig, ax = plt.subplots(figsize=(5, 3.4))
    width = 0.8 / len(variants)
    for i, v in enumerate(variants):
        d = tidy[tidy["variant"] == v].set_index("sparsity").reindex(xs)
        pos = np.arange(len(xs))
        lab = labels.get(v, v) + extra_tag(d)
        if spec.get("style") == "bars":
            ax.bar(pos + (i - (len(variants) - 1) / 2) * width, d["mean"], width, yerr=d["std"],
                   label=lab, color=f"C{i}", capsize=2)
        else:
            ax.errorbar(pos, d["mean"], yerr=d["std"], fmt="o-", ms=3, capsize=2, label=lab, color=f"C{i}")
    ax.set_xticks(range(len(xs)), [f"{100 * s:.0f}" for s in xs])
    ax.set_xlabel("sparsity (%)")
    ax.set_ylabel(field.replace("_", " "))
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    save(fig, spec, outputs, numerics_line(tidy))


def _curves(results, names) -> pd.DataFrame:
    recs = []
    for r, res in results:
        for name in names:
            if name not in res.get("curves", {}):
                raise KeyError(f"{r['path']}: no curve {name!r} (has {sorted(res.get('curves', {}))}); "
                               "was it measured (the analysis settings)?")
            c = res["curves"][name]
            recs += [{**{k: r[k] for k in CELL + ["seed"]}, "curve": name, "x": x, "value": y, **fields(res)}
                     for x, y in zip(c["x"], c["y"])]
    tidy = _stats(pd.DataFrame(recs), CELL + ["curve", "x"])
    tidy["params_plain"] = params_reference(tidy)
    return tidy


@artefact_kind("curve_lines", output="figure", files=True, shows=("perturbation", "trajectory"),
               settings=("show", "log", "twin"))
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
    variants = _variants(spec, results)
    fig, axes = plt.subplots(len(sps), len(groups), figsize=(4.6 * len(groups), 3.4 * len(sps)), squeeze=False)
    for row, s in enumerate(sps):
        for col, group in enumerate(groups):
            ax = axes[row][col]
            panel_axes = []
            for side, name in enumerate(group):
                a = ax.twinx() if side else ax
                panel_axes.append(a)
                for i, v in enumerate(variants):
                    d = tidy[(tidy["variant"] == v) & (tidy["curve"] == name)
                             & (tidy["sparsity"] == s)].sort_values("x")
                    style = "--" if side else "-"
                    a.plot(d["x"], d["mean"], style, color=f"C{i}", label=labels.get(v, v) + extra_tag(d)
                           + (f" ({name})" if len(group) > 1 else ""))
                    if (d["n"] > 1).any():
                        a.fill_between(d["x"], d["mean"] - d["std"], d["mean"] + d["std"], color=f"C{i}", alpha=0.15)
                    best = [res.get("best_val_epoch") for r, res in results if r["variant"] == v and r["sparsity"] == s]
                    if name.endswith("_acc") and best and best[0] in set(d["x"]):
                        a.plot([best[0]], d.loc[d["x"] == best[0], "mean"], "x", color=f"C{i}", ms=8)
                if name in spec.get("log", []):
                    a.set_yscale("log")
                a.set_ylabel(name.replace("_", " ") + (" (dashed)" if side else ""))
            per_step = group[0].startswith("gradient_flow")  # the gradient flow, and DST's at mask updates
            steps = first.get("steps_per_epoch", 1) if per_step else 1
            for m in first.get("milestones", []):
                ax.axvline(m * steps, ls=":", color="k", lw=0.8)
            ax.set_xlabel("step" if per_step else {"loss": "distance along the top eigenvector",
                                                   "acc": "distance along the top eigenvector"}.get(group[0], "epoch"))
            ax.set_title(f"sparsity {_sp(s)}", fontsize=8)
            handles, labs = [], []
            for a in panel_axes:
                h, lab = a.get_legend_handles_labels()
                handles, labs = handles + h, labs + lab
            ax.legend(handles, labs, fontsize=6)
            ax.grid(alpha=0.3)
    save(fig, spec, outputs, numerics_line(tidy))


@artefact_kind("landscape", output="figure", files=True, shows=("landscape",), settings=("style", "clamp"))
def landscape(spec, results, paper, labels, outputs):
    """One panel per variant (one row of panels per sparsity), the first seed of the rows shown:
    filled contours (style contour, default) or a surface (style surface) of the loss on the 2-D
    grid, or a line in 1-D; loss clamped at `clamp` for display if given; one colour / z scale for
    all panels so that sharper and flatter landscapes compare. The CSV keeps every grid point of
    every seed, unclamped."""
    recs = []
    for r, res in results:
        loss, acc = np.asarray(res["loss"], dtype=float), np.asarray(res["acc"], dtype=float)
        ys = res["y"] if res["dims"] == 2 else [None]
        for j, yv in enumerate(ys):
            for i, xv in enumerate(res["x"]):
                idx = (j, i) if res["dims"] == 2 else (i,)
                recs.append({**{k: r[k] for k in CELL + ["seed"]}, "x": xv, "y": yv, "loss": loss[idx], "acc": acc[idx],
                             **fields(res)})
    tidy = pd.DataFrame(recs)
    tidy.insert(0, "artefact", spec["id"])
    tidy.to_csv(outputs[2], index=False)

    variants = _variants(spec, results)
    sps = sorted({r["sparsity"] for r, _ in results})
    shown = {}  # (sparsity, variant) -> (seed, result): the first row of each cell
    for r, res in results:
        shown.setdefault((r["sparsity"], r["variant"]), (r["seed"], res))
    models = pd.DataFrame([{**{k: r[k] for k in CELL}, "params": params_of(res)} for r, res in results])
    models = models.groupby(CELL, sort=False)["params"].mean().reset_index()
    tags = params_tags(models)
    clamp = spec.get("clamp")

    def display(res):
        z = np.asarray(res["loss"], dtype=float)
        z = np.where(np.isfinite(z), z, np.nan if clamp is None else clamp)
        return np.minimum(z, clamp) if clamp is not None else z

    every = np.concatenate([display(res).ravel() for _, res in shown.values()])
    lo, hi = float(np.nanmin(every)), float(np.nanmax(every))
    hi = hi if hi > lo else lo + 1.0
    levels = np.linspace(lo, hi, 21)
    surface = spec.get("style") == "surface"
    nr, nc = len(sps), len(variants)
    fig = plt.figure(figsize=(3.6 * nc, 3.3 * nr))
    for row, s in enumerate(sps):
        for col, v in enumerate(variants):
            if (s, v) not in shown:
                continue
            seed, res = shown[s, v]
            z, k = display(res), row * nc + col + 1
            if res["dims"] == 1:
                ax = fig.add_subplot(nr, nc, k)
                ax.plot(res["x"], z)
                ax.set_ylim(lo, hi + 0.05 * (hi - lo))
                ax.set_xlabel("distance along direction", fontsize=7)
                ax.set_ylabel("loss", fontsize=7)
                ax.grid(alpha=0.3)
            elif surface:
                ax = fig.add_subplot(nr, nc, k, projection="3d")
                X, Y = np.meshgrid(res["x"], res["y"])
                ax.plot_surface(X, Y, z, cmap="viridis", vmin=lo, vmax=hi, linewidth=0)
                ax.set_zlim(lo, hi)
                ax.set_zlabel("loss", fontsize=7)
                ax.tick_params(labelsize=6)
            else:
                ax = fig.add_subplot(nr, nc, k)
                cs = ax.contourf(res["x"], res["y"], z, levels=levels, cmap="viridis")
                ax.contour(res["x"], res["y"], z, levels=levels, colors="k", linewidths=0.3)
                ax.plot([0], [0], "r+", ms=6)  # the trained weights
                fig.colorbar(cs, ax=ax, fraction=0.046, format="%.3g")
            where = f", {_sp(s)}" if len(sps) > 1 else ""
            tag = next((t for k, t in tags.items() if k[2:] == (s, v) and t), "")
            ax.set_title(f"{labels.get(v, v)}{where} (seed {seed}){tag}", fontsize=8)
    seeds = sorted({seed for seed, _ in shown.values()})
    note = (f"one model each: seed {', '.join(map(str, seeds))}"
            + (f"; loss clamped at {clamp:g}" if clamp is not None else ""))
    title = f"{spec['title']} ({note})" if spec.get("title") else note
    save(fig, {**spec, "title": title}, outputs, numerics_line(tidy))
