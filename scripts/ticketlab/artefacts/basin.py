"""Artefact kinds of gradflow §4.3: do lottery tickets re-learn the pruning solution?

ensemble_table (Table 2) reads `predictions` analyses: per row of the table (a group of runs: the
replicas of a variant, or one variant over several seeds) the test accuracy, the accuracy of the
ensemble of the group (mean of the class probabilities), the mean pairwise fractional disagreement
within the group, and the mean disagreement with the `baseline` run (the pruning solution).
basin_figure (Figure 5) reads `interpolation` analyses: a 2-D MDS embedding of the initial and final
points of the runs and of the reference (pruning solution), the mean distances d_init and d_final,
and the loss along the straight lines from the initial / final points to the reference.

Both read each row's arrays from the analysis's .npz (row["arrays"]).
"""
from __future__ import annotations

import math
from itertools import combinations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from . import artefact_kind, joined, mean_of, numerics_line, params_line, params_tags  # noqa: E402
from .analyses import _md, _paper_value, fields  # noqa: E402
from .figures import save  # noqa: E402

INTERVAL = 0.8  # Fig. 5: mean with 80% confidence intervals over the runs
METRICS = {"test_acc": ("Test Acc.", 2), "ensemble": ("Ensemble", 2), "disagree": ("Disagree.", 4),
           "disagree_pruned": ("Disagree. w/ Pruned", 4)}
DISTANCES = {"test_acc": ("Acc test", 2), "d_init": ("d_init", 2), "d_final": ("d_final", 2)}


def _stat(values) -> dict:
    """mean, std (ddof 1; 0 for one value) and n; NaN for none."""
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        return {"mean": math.nan, "std": math.nan, "n": 0}
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0, "n": int(v.size)}


def disagreement(a: np.ndarray, b: np.ndarray) -> float:
    """Fraction of examples whose predicted classes (argmax of the probabilities) differ (Fort et al. 2020)."""
    return float((a.argmax(1) != b.argmax(1)).mean())


def accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    return 100.0 * float((probs.argmax(1) == labels).mean())


def group_metrics(probs: list[np.ndarray], labels: np.ndarray, reference: np.ndarray | None = None,
                  is_reference: list[bool] | None = None) -> dict[str, dict]:
    """Table 2's columns for one group of models (probability arrays over the same examples): test
    accuracy (%), ensemble accuracy (%, argmax of the mean probabilities; groups of two or more),
    pairwise disagreement over all pairs within the group, and disagreement with the reference
    model's predictions over the members that are not the reference itself."""
    is_reference = is_reference or [False] * len(probs)
    pairs = [disagreement(a, b) for a, b in combinations(probs, 2)]
    ensemble = [accuracy(np.mean(probs, axis=0), labels)] if len(probs) > 1 else []
    vs_ref = [] if reference is None else [disagreement(p, reference) for p, r in zip(probs, is_reference) if not r]
    return {"test_acc": _stat([accuracy(p, labels) for p in probs]), "ensemble": _stat(ensemble),
            "disagree": _stat(pairs), "disagree_pruned": _stat(vs_ref)}


def _arrays(row: dict) -> dict:
    with np.load(row["arrays"]) as z:
        return {k: z[k] for k in z.files}


def _label(spec: dict, labels: dict, experiment: str, variant: str) -> str:
    own = spec.get("labels", {})
    return own.get(f"{experiment}:{variant}", own.get(variant, labels.get(variant, variant)))


def _groups(spec: dict, results) -> dict[tuple, list]:
    """(experiment, mask, sparsity, variant) -> [(row, result)], in the order of the spec's `rows`
    (default: its variants), each group's rows in the artefact's order (seeds, then replicas)."""
    groups: dict[tuple, list] = {}
    for r, res in results:
        groups.setdefault((r["experiment"], r["mask"], r["sparsity"], r["variant"]), []).append((r, res))
    rows = spec.get("rows") or [[m, v] for m in spec["masks"] for v in spec["variants"]]

    def order(key):
        e, m, _, v = key
        return min((i for i, r in enumerate(rows) if r[:2] == [m, v] and r[2:] in ([], [e])), default=len(rows))
    return dict(sorted(groups.items(), key=lambda kv: order(kv[0])))


def _reference_row(spec: dict, results, seed: int):
    """The baseline variant's run (no replica) of this seed: the pruning solution the group is compared with."""
    for r, _ in results:
        if r["variant"] == spec.get("baseline") and r["seed"] == seed and r["replica"] == 0:
            return r
    return None


def _paper(paper, row: dict, same) -> float:
    return _paper_value(paper, row, same, single=True)


def _cell(mean: float, std: float, n: int, digits: int) -> str:
    if math.isnan(mean):
        return "–"
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if n > 1 else f"{mean:.{digits}f}"


@artefact_kind("ensemble_table", output="table", files=True, shows=("predictions",),
               settings=("baseline", "labels", "paper", "paper_experiments"))
def ensemble_table(spec, results, paper, labels, outputs):
    """gradflow Table 2: one row per group of runs, ours mean ± std (ddof 1, over the runs; over the
    pairs for Disagree.) beside the paper's; every group is compared with the baseline run of its
    first seed, that run itself left out (5 Diff. Pruned: the 4 others, as the paper's footnote)."""
    same = spec.get("paper_experiments")
    recs, lines = [], []
    groups = _groups(spec, results)
    models = pd.DataFrame([{"experiment": e, "mask": m, "sparsity": s, "variant": v,
                            "params": mean_of(fields(res)["params"] for _, res in members)}
                           for (e, m, s, v), members in groups.items()])
    tags = params_tags(models) if len(models) else {}
    for (e, m, s, v), members in groups.items():
        ref_row = _reference_row(spec, results, members[0][0]["seed"])
        ref = _arrays(ref_row) if ref_row else None
        arrays = [_arrays(r) for r, _ in members]
        for r, a in zip([r for r, _ in members], arrays):
            if ref is not None and not np.array_equal(a["labels"], ref["labels"]):
                raise ValueError(f"{r['arrays']}: predictions on other examples than {ref_row['arrays']}")
        stats = group_metrics([a["probs"].astype(np.float64) for a in arrays], arrays[0]["labels"],
                              None if ref is None else ref["probs"].astype(np.float64),
                              [ref_row is not None and r["path"] == ref_row["path"] for r, _ in members])
        label = _label(spec, labels, e, v)
        row = {"experiment": e, "mask": m, "sparsity": s, "variant": v}
        info = [fields(res) for _, res in members]
        run = {"params": mean_of(i["params"] for i in info),
               "numerics": joined(i["numerics"] for i in info)}
        cells = [label + tags.get((e, m, s, v), "")]
        for metric, (_, digits) in METRICS.items():
            st = stats[metric]
            theirs = _paper(paper, {**row, "stage": metric}, same)
            theirs_std = _paper(paper, {**row, "stage": f"{metric}_std"}, same)
            recs.append({"artefact": spec["id"], **row, "label": label, "metric": metric, **st, "paper": theirs,
                         "paper_std": theirs_std, **run})
            cells += [_cell(st["mean"], st["std"], st["n"], digits),
                      _cell(theirs, 0.0 if math.isnan(theirs_std) else theirs_std,
                            1 if math.isnan(theirs_std) else 2, digits)]
        lines.append(cells)
    tidy = pd.DataFrame(recs)
    tidy.to_csv(outputs[0], index=False)
    head = ["Initialization"] + [h for name, _ in METRICS.values() for h in (f"{name} (ours)", "(paper)")]
    sps = sorted({r["sparsity"] for r, _ in results if r["mask"] != "dense"})
    where = ", ".join(f"{100 * s:.2f}%" for s in sps)
    text = [f"# {spec.get('title', '')}".rstrip(), "",
            f"Sparsity {where}. Test accuracy (%) of each run on the test set; Ensemble: accuracy of the mean "
            "class probabilities of the row's runs; Disagree.: fraction of test examples two runs classify "
            "differently, mean over all pairs; Disagree. w/ Pruned: the same against the pruning solution "
            f"({labels.get(spec.get('baseline'), spec.get('baseline'))} of the row's first seed), the run itself "
            "left out. Ours: mean ± std (ddof 1) over the runs (over the pairs for Disagree.); n per cell in the CSV.",
            params_line(tidy), numerics_line(tidy), ""] + _md(head, lines)
    with open(outputs[1], "w") as f:
        f.write("\n".join(text) + "\n")


def pairwise_distances(points: np.ndarray) -> np.ndarray:
    """Euclidean distances between the rows of `points`, in float64 (row by row: no n x n x dim array)."""
    from scipy.spatial.distance import cdist
    return cdist(np.asarray(points, dtype=np.float64), np.asarray(points, dtype=np.float64))


def embed(distances: np.ndarray, seed: int = 0) -> np.ndarray:
    """2-D metric MDS (sklearn's SMACOF from the classical-MDS start, so deterministic) of a distance matrix."""
    from sklearn.manifold import MDS
    mds = MDS(n_components=2, metric_mds=True, metric="precomputed", init="classical_mds", max_iter=3000,
              eps=1e-12, random_state=seed)
    return mds.fit_transform(distances)


def interval(values: np.ndarray, level: float = INTERVAL) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean over the first axis and its two-sided `level` t-interval (mean ± t * std / sqrt(n), ddof 1);
    a single run gives no interval (lo = hi = mean)."""
    from scipy.stats import t
    v = np.asarray(values, dtype=float)
    mean = v.mean(0)
    if len(v) < 2:
        return mean, mean, mean
    half = t.ppf(0.5 + level / 2, len(v) - 1) * v.std(0, ddof=1) / math.sqrt(len(v))
    return mean, mean - half, mean + half


MARKERS = ["v", "o", "s", "^", "D", "P"]


@artefact_kind("basin_figure", output="figure", files=True, shows=("interpolation",),
               settings=("labels", "paper", "paper_experiments"))
def basin_figure(spec, results, paper, labels, outputs):
    """gradflow Figure 5, one row of three panels per (experiment, mask, sparsity): (a) 2-D MDS of the
    runs' initial (hollow) and final (filled) points and the reference (star, labelled by labels.reference,
    default Prune), all on one mask; (b) test
    accuracy and mean L2 distance to the reference at the start (d_init) and the end (d_final), ours
    mean ± std and the paper's; (c) loss along (1 - a) theta + a theta_ref from the initial (dashed)
    and final (solid) points, mean and 80% t-interval over the runs."""
    same = spec.get("paper_experiments")
    variants = spec["variants"]
    cells = sorted({(r["experiment"], r["mask"], r["sparsity"]) for r, _ in results},
                   key=lambda c: (spec["experiments"].index(c[0]), c[2]))
    recs, runs = [], {}  # runs: (experiment, mask, sparsity, variant) -> params and numerics of its runs
    fig, axes = plt.subplots(len(cells), 3, figsize=(13.5, 3.9 * len(cells)), squeeze=False)
    for (e, m, s), (ax_mds, ax_tab, ax_path) in zip(cells, axes):
        rows = {v: [(r, res) for r, res in results
                    if (r["experiment"], r["mask"], r["sparsity"], r["variant"]) == (e, m, s, v)]
                for v in variants}
        cell = {"experiment": e, "mask": m, "sparsity": s}
        for v in variants:
            info = [fields(res) for _, res in rows[v]]
            runs[(e, m, s, v)] = {"params": mean_of(i["params"] for i in info),
                                  "numerics": joined(i["numerics"] for i in info)}
        # (a) MDS of every start and end point and each distinct reference
        tags, points, refs = [], [], {}
        for v in variants:
            for r, res in rows[v]:
                a = _arrays(r)
                tags += [(v, "start", r["seed"], r["replica"]), (v, "end", r["seed"], r["replica"])]
                points += [a["init"], a["final"]]
                refs.setdefault(res["reference"], a["reference"])
        tags += [("reference", "end", None, None)] * len(refs)
        points += list(refs.values())
        xy = embed(pairwise_distances(np.stack(points)))
        for (v, when, seed, rep), (x, y) in zip(tags, xy):
            recs.append({**cell, "variant": v, "quantity": f"mds_{when}", "seed": seed, "replica": rep,
                         "mds_x": x, "mds_y": y})
        for i, v in enumerate(variants):
            for when, fill in (("start", "none"), ("end", f"C{i}")):
                pts = np.array([p for t, p in zip(tags, xy) if t[:2] == (v, when)])
                ax_mds.plot(pts[:, 0], pts[:, 1], MARKERS[i % len(MARKERS)], color=f"C{i}", mfc=fill, ms=7, ls="none",
                            label=f"{_label(spec, labels, e, v)}-{when}")
        ref_xy = np.array([p for t, p in zip(tags, xy) if t[0] == "reference"])
        ax_mds.plot(ref_xy[:, 0], ref_xy[:, 1], "*", color="k", ms=12, ls="none",
                    label=f"{spec.get('labels', {}).get('reference', 'Prune')}-end")
        ax_mds.set_aspect("equal", adjustable="datalim")
        ax_mds.legend(fontsize=6)
        ax_mds.set_title("(a) MDS projection", fontsize=9)
        ax_mds.grid(alpha=0.3)
        # (b) accuracy and distances to the reference
        table = []
        for q, (name, digits) in DISTANCES.items():
            line = [name]
            for v in variants:
                st = _stat([res[q] for _, res in rows[v]])
                theirs = _paper(paper, {**cell, "variant": v, "stage": q}, same)
                recs.append({**cell, "variant": v, "quantity": q, **st, "paper": theirs})
                line.append(f"{_cell(st['mean'], st['std'], st['n'], digits)}\n"
                            f"(paper {'–' if math.isnan(theirs) else f'{theirs:.{digits}f}'})")
            table.append(line)
        ax_tab.axis("off")
        t = ax_tab.table(cellText=table, colLabels=[""] + [_label(spec, labels, e, v) for v in variants],
                         loc="center", cellLoc="center")
        t.auto_set_font_size(False)
        t.set_fontsize(8)
        t.scale(1.0, 3.0)
        ax_tab.set_title(f"(b) L2 distances to the pruning solution ({e}, {100 * s:.2f}%)", fontsize=9)
        # (c) loss along the linear paths
        for i, v in enumerate(variants):
            for curve, style, name in (("init", "--", "init"), ("final", "-", "solution")):
                xs = rows[v][0][1]["curves"][curve]["x"]
                mean, lo, hi = interval([res["curves"][curve]["loss"] for _, res in rows[v]])
                ax_path.plot(xs, mean, style, color=f"C{i}", label=f"{_label(spec, labels, e, v)} {name}")
                ax_path.fill_between(xs, lo, hi, color=f"C{i}", alpha=0.15)
                recs += [{**cell, "variant": v, "quantity": f"loss_{curve}", "alpha": x, "mean": a, "lo": b, "hi": c,
                          "n": len(rows[v])} for x, a, b, c in zip(xs, mean, lo, hi)]
        ax_path.set_xlabel("interpolation coefficient (α)")
        ax_path.set_ylabel("training loss")
        ax_path.set_title("(c) loss interpolation to the pruning solution (α = 1)", fontsize=9)
        ax_path.legend(fontsize=6)
        ax_path.grid(alpha=0.3)
    out = pd.DataFrame(recs)
    keys = list(zip(out["experiment"], out["mask"], out["sparsity"], out["variant"]))
    out["params"] = [runs.get(k, {}).get("params", np.nan) for k in keys]  # the reference's rows: NaN
    out["numerics"] = [runs.get(k, {}).get("numerics", "") for k in keys]
    out.insert(0, "artefact", spec["id"])
    out.to_csv(outputs[2], index=False)
    save(fig, spec, outputs, numerics_line(out[out["variant"].isin(variants)]))
