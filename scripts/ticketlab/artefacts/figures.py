"""Figure kinds: accuracy against sparsity, as in the papers' line plots (png + pdf + tidy csv)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from . import artefact_kind, extra_tag, numerics_line, params_reference  # noqa: E402


def crossing(tidy: pd.DataFrame, first: str, second: str) -> float | None:
    """The paper's "critical sparsity", where the two lines cross: the first sparsity (> 0) at which
    `second` catches up with `first` after `first` was ahead; None when they never cross that way."""
    t = tidy[tidy["sparsity"] > 0].pivot(index="sparsity", columns="variant", values="mean").sort_index()
    ahead = (t[first] - t[second]).tolist()
    for i in range(1, len(ahead)):
        if ahead[i - 1] > 0 >= ahead[i]:
            return float(t.index[i])
    return None


@artefact_kind("sparsity_lines", output="figure", settings=("panels",))
def sparsity_lines(spec: dict, tidy: pd.DataFrame, paper: pd.DataFrame, outputs: list[str]) -> None:
    """One panel per `panels` entry: mean ± std over seeds against sparsity (evenly spaced like the
    papers' axes); the dense value of each variant as a dashed line; the paper's values, where the
    paper gives them, as hollow markers on the right-hand axis (its own scale: the demo's dataset
    is not the paper's); optional critical-sparsity marker. A variant whose runs have more parameters
    than the plain ones says how many more in its legend entry."""
    panels = spec.get("panels") or [{"variants": spec["variants"]}]
    tidy["params_plain"] = params_reference(tidy)
    tidy.to_csv(outputs[2], index=False)
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
    xs = sorted(s for s in tidy["sparsity"].unique() if s > 0)
    pos = {s: i for i, s in enumerate(xs)}
    for ax, panel in zip(axes[0], panels):
        shown = tidy[(tidy["experiment"] == panel.get("experiment", spec["experiments"][0]))
                     & (tidy["mask"] == panel.get("mask", spec["masks"][0]))]
        axp = ax.twinx() if shown.loc[shown["variant"].isin(panel["variants"]), "paper"].notna().any() else None
        for i, v in enumerate(panel["variants"]):
            color = f"C{i}"
            d = shown[shown["variant"] == v].sort_values("sparsity")
            lab = d["label"].iloc[0] + extra_tag(d)
            dense, sparse = d[d["sparsity"] == 0], d[d["sparsity"] > 0]
            x = [pos[s] for s in sparse["sparsity"]]
            ax.plot(x, sparse["mean"], "o-", color=color, label=lab, ms=3)
            ax.fill_between(x, sparse["mean"] - sparse["std"], sparse["mean"] + sparse["std"], color=color, alpha=0.2)
            if not dense.empty:
                ax.axhline(dense["mean"].iloc[0], ls="--", color=color, lw=1, label=f"{lab}, dense")
            if axp is not None and sparse["paper"].notna().any():
                axp.plot(x, sparse["paper"], "o:", mfc="none", color=color, lw=0.8, ms=4, label=f"{lab}, paper")
        if panel.get("mark_crossing"):
            c = crossing(shown[shown["variant"].isin(panel["mark_crossing"])], *panel["mark_crossing"])
            if c is not None:
                ax.axvline(pos[c], color="k", lw=0.8, ls="-.", label=f"critical sparsity {100 * c:.1f}%")
        ax.set_xticks(range(len(xs)), [f"{100 * s:.0f}" for s in xs])
        ax.set_xlabel("sparsity (%)")
        ax.set_ylabel(spec["metric"].replace("_", " ") + " (%)")
        ax.set_title(panel.get("title", ""))
        legend_with_paper(ax, axp)
    save(fig, spec, outputs, numerics_line(tidy))


def legend_with_paper(ax, axp) -> None:
    """One legend for a panel and its twin axis of the paper's values (axp, or None), and the grid."""
    handles, labels = ax.get_legend_handles_labels()
    if axp is not None:
        axp.set_ylabel("paper (%)", fontsize=8)
        more = axp.get_legend_handles_labels()
        handles, labels = handles + more[0], labels + more[1]
    ax.legend(handles, labels, fontsize=6)
    ax.grid(alpha=0.3)


def save(fig, spec: dict, outputs: list[str], note: str | None = None) -> None:
    """Title, layout, an optional footnote (e.g. the numerics line), png (150 dpi) and pdf (outputs[0],
    outputs[1]); closes the figure."""
    if spec.get("title"):
        fig.suptitle(spec["title"], fontsize=10)
    if note:
        fig.text(0.005, 0.005, note, fontsize=6, ha="left", va="bottom", color="0.3")
    fig.tight_layout(rect=(0, 0.03 if note else 0, 1, 1))
    for out in outputs[:2]:
        fig.savefig(out, dpi=150)
    plt.close(fig)
