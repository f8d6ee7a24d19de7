"""The report's training curves: for one experiment, the loss and accuracy per epoch of every run its artefacts
show (their metrics.csv), a line per mask set, sparsity and variant (the mean over seeds), one column per mask set.
A figure to look at, not an artefact of a paper: it has no id and no paper values."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from .layout import parse_run, sp_value  # noqa: E402

PANELS = (("train_loss", "training loss"), ("val_acc", "validation accuracy (%)"), ("test_acc", "test accuracy (%)"))


def curves(runs: list[str], metrics: list[str]) -> pd.DataFrame:
    """The runs' metrics.csv rows, each with its run's mask, sparsity, variant and seed (runs: run_keys, in the
    order of the files)."""
    if len(runs) != len(metrics):
        raise ValueError(f"{len(runs)} runs but {len(metrics)} metrics files")
    parts = []
    for run, path in zip(runs, metrics):
        w = parse_run(run)
        parts.append(pd.read_csv(path).assign(mask=w.mask, sparsity=sp_value(w.sparsity), variant=w.variant,
                                              seed=int(w.seed)))
    return pd.concat(parts, ignore_index=True)


def plot(experiment: str, runs: list[str], metrics: list[str], out: str) -> None:
    d = curves(runs, metrics)
    shown = [(c, label) for c, label in PANELS if c in d and d[c].notna().any()]
    masks = sorted(d["mask"].unique(), key=lambda m: (m != "dense", m))
    variants = sorted(d["variant"].unique())
    colour = {v: plt.get_cmap("tab20")(i % 20) for i, v in enumerate(variants)}
    fig, axes = plt.subplots(len(shown), len(masks), figsize=(3.6 * len(masks), 2.6 * len(shown)), squeeze=False)
    for j, mask in enumerate(masks):
        dm = d[d["mask"] == mask]
        levels = sorted(dm["sparsity"].unique())
        for (s, v), cell in dm.groupby(["sparsity", "variant"]):
            mean = cell.groupby("epoch")[[c for c, _ in shown]].mean()
            shade = 0.35 + 0.65 * (levels.index(s) + 1) / len(levels)  # sparser: more opaque
            for i, (c, _) in enumerate(shown):
                axes[i][j].plot(mean.index, mean[c], color=colour[v], alpha=shade, lw=1,
                                label=v if levels.index(s) == len(levels) - 1 else None)
        for i, (_, label) in enumerate(shown):
            ax = axes[i][j]
            ax.set_ylabel(label, fontsize=8)
            ax.grid(alpha=0.3)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.tick_params(labelsize=7)
        axes[0][j].set_title(f"{mask}: sparsity {', '.join(f'{100 * s:g}' for s in levels)}%", fontsize=8)
        axes[-1][j].set_xlabel("epoch", fontsize=8)
        axes[0][j].legend(fontsize=6, ncol=2)
    fig.suptitle(f"{experiment}: training curves of {d.groupby(['mask', 'sparsity', 'variant', 'seed']).ngroups} "
                 f"runs (mean over seeds; darker = sparser)", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
