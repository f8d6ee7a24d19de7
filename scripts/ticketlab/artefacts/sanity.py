"""Artefact kinds of sanity (Sanity Checks for Lottery Tickets): accuracy against the learning rate and
against the remaining weights, the jackpot conditions (Appendix B / C), the correlation indicator R_p
(Appendix G), and Table E.1 generated from the configuration.

Each experiment is one network/dataset at one learning rate (one recipe per LR), so these kinds read
`spec["setup"]` (plan.artefact_job: the shown experiments' datasets, models, recipes, and the masks and
variants shown) for an experiment's learning rate and group, "<model>/<dataset>" (config names; labels
from `experiment_labels`, keyed by experiment or group). Lines and table roles come from the config:
`series` (a label and one [mask, variant] point each; mask `dense` = the pretrained network), variants
with init rr (A_RR) and small_dense (A_SD); the other variants shown are tickets (LT, WR).

lr_lines             accuracy vs learning rate, a panel per group and sparsity (Figures D.x, F.x)
remaining_lines      accuracy vs remaining weights, a panel per experiment; dense as a dashed line (Fig. A.1)
jackpot_table        A_PRE, A_LT, A_RR, A_SD and the conditions per group, mask, sparsity and ticket
                     (artefacts.jackpot)
correlation_lines    R_p vs p per experiment, a line per series; R_p = p (no correlation) dotted (Appendix G)
hyperparameter_table Table E.1 from the configuration (reads no runs: plan.CONFIG_KINDS)
"""
from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from . import artefact_kind, extra_tag, numerics_line, params_reference  # noqa: E402
from .analyses import _curves, _md, _sp  # noqa: E402
from .curves import series_points  # noqa: E402
from .figures import save  # noqa: E402


def recipe_of(setup: dict, experiment: str, variant: str | None = None) -> dict:
    """The recipe a variant's runs of an experiment train with (the variant's `recipe` keys on top)."""
    r = setup["recipes"][setup["experiments"][experiment]["recipe"]]
    return {**r, **(setup["variants"].get(variant, {}).get("recipe", {}) if variant else {})}


def group_of(setup: dict, experiment: str) -> str:
    e = setup["experiments"][experiment]
    return f"{e['model']}/{e['dataset']}"


def group_label(spec: dict, group: str) -> str:
    return spec.get("experiment_labels", {}).get(group, group)


def with_setup(spec: dict, tidy: pd.DataFrame) -> pd.DataFrame:
    """The tidy frame with each row's group and learning rate."""
    setup = spec["setup"]
    return tidy.assign(group=[group_of(setup, e) for e in tidy["experiment"]],
                       lr=[recipe_of(setup, e, v)["lr"] for e, v in zip(tidy["experiment"], tidy["variant"])])


def _series(spec: dict, tidy: pd.DataFrame) -> pd.DataFrame:
    for s in spec["series"]:
        if len(s["points"]) != 1:
            raise ValueError(f"artefact {spec.get('id', '')}: series {s['label']!r} of kind {spec['kind']} "
                             f"takes one [mask, variant] point (its line runs over learning rates or sparsities)")
    return series_points(spec, with_setup(spec, tidy.assign(params_plain=params_reference(tidy)))).drop(columns="x")


def _band(ax, x, line, color, style="o-", label=None):
    ax.plot(x, line["mean"], style, color=color, ms=3, label=label)
    if (line["n"] > 1).any():
        ax.fill_between(x, line["mean"] - line["std"], line["mean"] + line["std"], color=color, alpha=0.2)


@artefact_kind("lr_lines", output="figure", setup=True, settings=("series", "experiment_labels"))
def lr_lines(spec: dict, tidy: pd.DataFrame, paper: pd.DataFrame, outputs: list[str]) -> None:
    """Mean ± std over seeds against the learning rate (log axis), one panel per group and sparsity, a
    line per series; a dense series (the pretrained network) appears in every panel of its group."""
    d = _series(spec, tidy)
    d.to_csv(outputs[2], index=False)
    groups = list(dict.fromkeys(d["group"]))
    sps = sorted(s for s in d["sparsity"].unique() if s > 0)
    fig, axes = plt.subplots(len(groups), len(sps), figsize=(3.8 * len(sps), 3.2 * len(groups)), squeeze=False)
    for gi, g in enumerate(groups):
        for si, s in enumerate(sps):
            ax = axes[gi][si]
            here = d[(d["group"] == g) & ((d["sparsity"] == s) | (d["mask"] == "dense"))]
            for i, entry in enumerate(spec["series"]):
                line = here[here["series"] == entry["label"]].sort_values("lr")
                if not line.empty:
                    _band(ax, line["lr"], line, f"C{i}", "o--" if line["mask"].iloc[0] == "dense" else "o-",
                          entry["label"] + extra_tag(line))
            lrs = sorted(here["lr"].unique())
            ax.set_xscale("log")
            ax.set_xticks(lrs, [f"{x:g}" for x in lrs])
            ax.minorticks_off()
            ax.set_xlabel("learning rate")
            ax.set_ylabel(spec["metric"].replace("_", " ") + " (%)")
            ax.set_title(f"{group_label(spec, g)}, sparsity {_sp(s)}", fontsize=8)
            ax.legend(fontsize=6)
            ax.grid(alpha=0.3)
    save(fig, spec, outputs, numerics_line(d))


@artefact_kind("remaining_lines", output="figure", setup=True, settings=("series", "experiment_labels"))
def remaining_lines(spec: dict, tidy: pd.DataFrame, paper: pd.DataFrame, outputs: list[str]) -> None:
    """Mean ± std over seeds against the remaining weights (%, evenly spaced like the paper's axis), one
    panel per experiment (titled with its group and learning rate), a line per series; a dense series is
    the pretrained network's accuracy, dashed across the panel."""
    d = _series(spec, tidy)
    d.to_csv(outputs[2], index=False)
    exps = list(dict.fromkeys(e for e in spec["experiments"] if e in set(d["experiment"])))
    xs = sorted((s for s in d["sparsity"].unique() if s > 0))
    pos = {s: i for i, s in enumerate(xs)}
    fig, axes = plt.subplots(1, len(exps), figsize=(4.2 * len(exps), 3.4), squeeze=False)
    for ax, e in zip(axes[0], exps):
        here = d[d["experiment"] == e]
        for i, entry in enumerate(spec["series"]):
            line = here[here["series"] == entry["label"]].sort_values("sparsity")
            if line.empty:
                continue
            if (line["mask"] == "dense").all():
                ax.axhline(line["mean"].iloc[0], ls="--", color=f"C{i}", lw=1, label=entry["label"] + extra_tag(line))
            else:
                _band(ax, [pos[s] for s in line["sparsity"]], line, f"C{i}", label=entry["label"] + extra_tag(line))
        ax.set_xticks(range(len(xs)), [f"{100 * (1 - s):.1f}" for s in xs])
        ax.set_xlabel("remaining weights (%)")
        ax.set_ylabel(spec["metric"].replace("_", " ") + " (%)")
        ax.set_title(f"{spec.get('experiment_labels', {}).get(e, group_label(spec, group_of(spec['setup'], e)))}, "
                     f"lr {recipe_of(spec['setup'], e)['lr']:g}", fontsize=8)
        ax.legend(fontsize=6)
        ax.grid(alpha=0.3)
    save(fig, spec, outputs, numerics_line(d))


# ------------------------------------------------------------------------------------------- jackpot

@artefact_kind("correlation_lines", output="figure", files=True, shows=("correlation",), setup=True,
               settings=("series", "experiment_labels"))
def correlation_lines(spec, results, paper, labels, outputs):
    """R_p against p (the `correlation` analysis), mean ± std over seeds, one panel per experiment (its
    group and learning rate), a line per series ([mask, variant] point: the dense run gives
    (theta_0, theta_T), a ticket (theta_0 * m, theta_T * m), its re-initialisation (theta'_0 * m, ...));
    the dotted diagonal R_p = p is what independent weights give."""
    tidy = _curves(results, ["r_p"])
    labelled = []
    for entry in spec["series"]:
        (mask, variant), = entry["points"]
        labelled.append(tidy[(tidy["mask"] == mask) & (tidy["variant"] == variant)].assign(series=entry["label"]))
    tidy = pd.concat(labelled, ignore_index=True)
    tidy.insert(0, "artefact", spec["id"])
    tidy.to_csv(outputs[2], index=False)
    exps = [e for e in spec["experiments"] if e in set(tidy["experiment"])]
    fig, axes = plt.subplots(1, len(exps), figsize=(4.2 * len(exps), 3.6), squeeze=False)
    for ax, e in zip(axes[0], exps):
        here = tidy[tidy["experiment"] == e]
        ps = sorted(here["x"].unique())
        ax.plot(ps, ps, ":", color="k", lw=1, label="R_p = p (independent)")
        for i, entry in enumerate(spec["series"]):
            line = here[here["series"] == entry["label"]].sort_values("x")
            if not line.empty:
                s = line["sparsity"].iloc[0]
                _band(ax, line["x"], line, f"C{i}",
                      label=entry["label"] + (f" ({_sp(s)})" if s > 0 else "") + extra_tag(line))
        ax.set_xlabel("p (top-p fraction of the remaining weights, per layer)")
        ax.set_ylabel("R_p (initial vs trained)")
        setup = spec["setup"]
        ax.set_title(f"{group_label(spec, group_of(setup, e))}, lr {recipe_of(setup, e)['lr']:g}", fontsize=8)
        ax.legend(fontsize=6)
        ax.grid(alpha=0.3)
    save(fig, spec, outputs, numerics_line(tidy))


# ------------------------------------------------------------------------------------ Table E.1

E1_ROWS = [("epochs", "Training epochs (T)"), ("rewind_epoch", "Rewinding epochs (t)"), ("batch_size", "Batch size"),
           ("scheduler", "Learning rate scheduler"), ("decay_epochs", "Learning rate decay (epoch)"),
           ("decay_factor", "Learning rate decay factor"), ("momentum", "Momentum"), ("l2", "ℓ2 regularization"),
           ("warmup_epochs", "Warmup epochs"), ("imp_rate", "IMP prune ratio (per iteration)"),
           ("imp_iterations", "IMP total iterations")]


def hyperparameters(setup: dict, experiment: str, variants: list[str]) -> dict[str, tuple]:
    """Table E.1's settings of one experiment as configured: name -> (value compared with the paper's,
    text shown). t = the rewinding variants' rewind_epoch; IMP = the first imp mask set the experiment
    prunes with, its rate and the level of its highest configured sparsity."""
    e, r = setup["experiments"][experiment], recipe_of(setup, experiment)
    step = r.get("schedule", "step") == "step"
    warm = r.get("warmup") or {}
    out = {"epochs": (r["epochs"], str(r["epochs"])), "batch_size": (r["batch_size"], str(r["batch_size"])),
           "scheduler": (r.get("schedule", "step"), r.get("schedule", "step")),
           "decay_epochs": ("-".join(map(str, r["milestones"])) if step else "n/a",) * 2,
           "decay_factor": (1 / r.get("gamma", 0.1) if step else "n/a",
                            f"{1 / r.get('gamma', 0.1):g}" if step else "n/a"),
           "momentum": (r["momentum"], f"{r['momentum']:g}"), "l2": (r["weight_decay"], f"{r['weight_decay']:g}"),
           "warmup_epochs": (warm.get("epochs", 0), f"{warm['epochs']} ({warm.get('shape', 'constant')} from lr "
                             f"{warm['lr']:g})" if warm else "0"),
           "lr": (r["lr"], f"{r['lr']:g}")}
    rewinds = sorted({setup["variants"][v]["rewind_epoch"] for v in variants
                      if setup["variants"][v].get("init") == "rewind"})
    out["rewind_epoch"] = (rewinds[0] if len(rewinds) == 1 else "/".join(map(str, rewinds)) or "n/a",
                           "/".join(map(str, rewinds)) or "n/a")
    imp = next((m for m in e["sparsities"] if m in setup["masks"] and setup["masks"][m]["method"] == "imp"), None)
    if imp is None:
        out["imp_rate"] = out["imp_iterations"] = ("n/a", "n/a")
    else:
        rate = setup["masks"][imp]["rate"]
        level = max(round(math.log(1 - s) / math.log(1 - rate)) for s in e["sparsities"][imp] if s > 0)
        out["imp_rate"], out["imp_iterations"] = (rate, f"{100 * rate:g}%"), (level, str(level))
    return out


def _same(ours, theirs) -> bool | None:
    """Ours equals the paper's: numerically where both are numbers, else as text; None without a paper value."""
    if theirs is None or (isinstance(theirs, float) and math.isnan(theirs)):
        return None
    try:
        return math.isclose(float(ours), float(theirs), rel_tol=1e-9)
    except (TypeError, ValueError):
        return str(ours).strip().lower() == str(theirs).strip().lower()


def e1_table(spec: dict, paper: pd.DataFrame) -> pd.DataFrame:
    """One row per experiment and hyperparameter: ours (value, text), the paper's (value, printed) from
    the paper file's rows whose experiment is paper_experiments[experiment] (default the dataset's
    name) and variant the hyperparameter, and whether they match."""
    setup, recs = spec["setup"], []
    for e in spec["experiments"]:
        key = spec.get("paper_experiments", {}).get(e, setup["experiments"][e]["dataset"])
        mine = paper[paper["experiment"] == key] if "experiment" in paper else paper.iloc[:0]
        for name, (value, text) in hyperparameters(setup, e, spec["variants"]).items():
            p = mine[mine["variant"] == name]
            theirs, printed = (p["value"].iloc[0], p["printed"].iloc[0]) if not p.empty else (None, "–")
            recs.append({"experiment": e, "paper_column": key, "hyperparameter": name, "ours": value, "ours_text": text,
                         "paper": theirs, "paper_printed": printed, "match": _same(value, theirs)})
    return pd.DataFrame(recs)


@artefact_kind("hyperparameter_table", output="table", files=True, setup=True, config_only=True,
               settings=("paper", "paper_experiments"))
def hyperparameter_table(spec, results, paper, labels, outputs):
    """Table E.1 from the configuration actually used: rows the hyperparameters, a column pair (ours, the
    paper's) per set of experiments sharing every value but the learning rate (their LRs in the last row)."""
    t = e1_table(spec, paper)
    t.insert(0, "artefact", spec["id"])
    t["numerics"] = "none (the configuration; no runs read)"
    t.to_csv(outputs[0], index=False)
    cols = {}  # (paper column, our texts) -> experiments
    for e, d in t.groupby("experiment", sort=False):
        texts = tuple(d.loc[d["hyperparameter"] != "lr", "ours_text"])
        cols.setdefault((d["paper_column"].iloc[0], texts), []).append(e)
    head, body = ["Hyperparameter"], []
    for (key, _), exps in cols.items():
        head += [f"ours: {', '.join(exps)}", f"paper ({key})"]
    cell = t.set_index(["experiment", "hyperparameter"])
    for name, title in E1_ROWS + [("lr", "Learning rate (not in Table E.1)")]:
        row = [title]
        for exps in cols.values():
            c = cell.loc[(exps[0], name)]
            mark = {True: "", False: " ≠", None: ""}[c["match"]]
            ours = (c["ours_text"] if name != "lr"
                    else ", ".join(dict.fromkeys(cell.loc[(e, "lr"), "ours_text"] for e in exps)))
            row += [ours + mark, str(c["paper_printed"])]
        body.append(row)
    lines = [f"# {spec.get('title', '')}".rstrip(), "",
             "Generated from the configuration; ≠ marks a setting that differs from the paper's Table E.1 "
             "(the config comments say why). Columns: experiments sharing all settings but the learning rate.",
             "Numerics: none (read from the configuration, no runs).", ""]
    with open(outputs[1], "w") as f:
        f.write("\n".join(lines + _md(head, body)) + "\n")
