"""Figure kinds of curves first needed by dlth (DLTH): accuracy along a series of tickets (cycles),
a metric over the training epochs of runs (their metrics.csv), and the layer-wise sparsity of masks
(their JSON reports).

series_lines   (ARTEFACTS: the tidy frame of run summaries) accuracy against the position in each of
               `series` (a label and its [mask, variant] points, x = 1, 2, ...: e.g. LTH-Iter with 1..5
               cycles = five mask sets, RST with 1..5 cycles = five variants); one panel per experiment
               and sparsity (dlth Fig. 4 at 70%, Fig. 5's lines one sparsity at a time).
epoch_lines    (reads: metrics) columns of metrics.csv (`show`, e.g. test_acc) per epoch, one panel per
               sparsity, a line per variant (dlth Fig. 3); drawn by analyses.curve_lines.
layer_sparsity (reads: mask) the sparsity of every covered layer, in the network's order, a line per
               sparsity, one panel per experiment and mask (dlth Fig. 9 / 10: GraSP's layer ratios).
"""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from ..jobs import summary_beside  # noqa: E402
from . import artefact_kind, extra_tag, numerics_line, params_reference  # noqa: E402
from .analyses import _sp, _stats, curve_lines  # noqa: E402
from .figures import legend_with_paper, save  # noqa: E402


def series_points(spec: dict, tidy: pd.DataFrame) -> pd.DataFrame:
    """The tidy rows of every series point: columns series, x (1-based position) beside the cell's."""
    parts = []
    for s in spec["series"]:
        for x, (mask, variant) in enumerate(s["points"], start=1):
            d = tidy[(tidy["mask"] == mask) & (tidy["variant"] == variant)]
            parts.append(d.assign(series=s["label"], x=x))
    return pd.concat(parts, ignore_index=True)


@artefact_kind("series_lines", output="figure", settings=("series", "x_label", "experiment_labels"))
def series_lines(spec: dict, tidy: pd.DataFrame, paper: pd.DataFrame, outputs: list[str]) -> None:
    """Mean ± std over seeds against the position in each series; the paper's values, where it gives
    them, as hollow markers on the right-hand axis (its own scale, as sparsity_lines)."""
    tidy["params_plain"] = params_reference(tidy)
    points = series_points(spec, tidy)
    points.to_csv(outputs[2], index=False)
    panels = list(points.groupby(["experiment", "sparsity"], sort=True))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.8 * len(panels), 3.4), squeeze=False)
    for ax, ((e, s), d) in zip(axes[0], panels):
        axp = ax.twinx() if d["paper"].notna().any() else None
        for i, entry in enumerate(spec["series"]):
            line = d[d["series"] == entry["label"]].sort_values("x")
            if line.empty:
                continue
            ax.errorbar(line["x"], line["mean"], yerr=line["std"], fmt="o-", ms=3, capsize=2, color=f"C{i}",
                        label=entry["label"] + extra_tag(line))
            if axp is not None and line["paper"].notna().any():
                axp.plot(line["x"], line["paper"], "o:", mfc="none", color=f"C{i}", lw=0.8, ms=4,
                         label=f"{entry['label']}, paper")
        ax.set_xticks(sorted(d["x"].unique()))
        ax.set_xlabel(spec.get("x_label", "cycles"))
        ax.set_ylabel(spec["metric"].replace("_", " ") + " (%)")
        ax.set_title(f"{spec.get('experiment_labels', {}).get(e, e)}, sparsity {_sp(s)}", fontsize=8)
        legend_with_paper(ax, axp)
    save(fig, spec, outputs, numerics_line(points))


def epoch_curves(metrics: pd.DataFrame, names: list[str], path: str) -> dict:
    """A run's metrics.csv as curve_lines reads a trajectory: curves over epochs, the best-validation
    epoch (as the run summary picks it) and the LR decays (epochs after which the LR drops)."""
    missing = [n for n in names if n not in metrics.columns]
    if missing:
        raise KeyError(f"{path}: no column {missing} (has {list(metrics.columns)})")
    best = metrics.sort_values(["val_acc", "epoch"], ascending=[False, True]).iloc[0]
    drops = [int(e) - 1 for e, a, b in zip(metrics["epoch"][1:], metrics["lr"][:-1], metrics["lr"][1:]) if b < a]
    return {"curves": {n: {"x": metrics["epoch"].tolist(), "y": metrics[n].tolist()} for n in names},
            "best_val_epoch": int(best["epoch"]), "milestones": drops}


def beside(path: str) -> dict:
    """params and numerics of the run whose metrics.csv is `path`: from the summary.json the same training
    job writes beside it (not an input of the artefact rule, but never older than the metrics); {} if absent."""
    s = summary_beside(path)
    return {k: s[k] for k in ("params", "numerics") if k in s}


@artefact_kind("epoch_lines", output="figure", files=True, settings=("show", "log", "twin"))
def epoch_lines(spec, results, paper, labels, outputs):
    """Per-epoch metrics of the runs (`show`), mean ± std over seeds, one panel per sparsity; params and
    numerics from each run's summary.json beside its metrics.csv."""
    curve_lines(spec, [(r, {**epoch_curves(m, spec["show"], r["path"]), **beside(r["path"])}) for r, m in results],
                paper, labels, outputs)


@artefact_kind("layer_sparsity", output="figure", files=True, settings=("experiment_labels", "mask_labels"))
def layer_sparsity(spec, results, paper, labels, outputs):
    """Sparsity (%) of each covered layer from the masks' reports, mean ± std over seeds, against the
    layer's position (1 = the first covered layer); one line per sparsity. Rows are masks' layers, not runs:
    no params column (a mask's kept count is not a run's parameters when a tweak adds dense extras); the
    CSV's `kept` is the layer's kept weights. Mask reports record no numerics."""
    recs = [{"experiment": r["experiment"], "mask": r["mask"], "sparsity": r["sparsity"], "seed": r["seed"],
             "layer": i, "name": name, "value": 100.0 * (1.0 - layer["density"]), "kept": layer.get("kept")}
            for r, rep in results for i, (name, layer) in enumerate(rep["layers"].items(), start=1)]
    runs = pd.DataFrame(recs).drop_duplicates(["experiment", "mask", "sparsity", "seed", "layer"])
    tidy = _stats(runs, ["experiment", "mask", "sparsity", "layer", "name"])
    tidy["kept"] = runs.groupby(["experiment", "mask", "sparsity", "layer", "name"], sort=False)["kept"].mean().values
    tidy["numerics"] = "not recorded (mask reports)"
    tidy.insert(0, "artefact", spec["id"])
    tidy.to_csv(outputs[2], index=False)
    panels = list(tidy.groupby(["experiment", "mask"], sort=False))
    fig, axes = plt.subplots(1, len(panels), figsize=(6.4 * len(panels), 3.6), squeeze=False)
    for ax, ((e, m), d) in zip(axes[0], panels):
        for i, (s, line) in enumerate(d.groupby("sparsity")):
            line = line.sort_values("layer")
            ax.plot(line["layer"], line["mean"], "o-", ms=2, lw=1, color=f"C{i}", label=_sp(s))
            if (line["n"] > 1).any():
                ax.fill_between(line["layer"], line["mean"] - line["std"], line["mean"] + line["std"],
                                color=f"C{i}", alpha=0.2)
        last = d.sort_values("layer").iloc[-1]
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel(f"layer index (last: {last['name']})")
        ax.set_ylabel("layer sparsity (%)")
        ax.set_title(f"{spec.get('experiment_labels', {}).get(e, e)}, {spec.get('mask_labels', {}).get(m, m)}",
                     fontsize=8)
        ax.legend(title="overall", fontsize=6, title_fontsize=6)
        ax.grid(alpha=0.3)
    save(fig, spec, outputs, "Masks' per-layer sparsity (kept weights in the CSV); not the trained runs' parameters.")
