"""The results tree: every path and file name the workflow's jobs read and write (pure: no torch, no config).

    results/data/{dataset}.npz
    results/runs/{dataset}/{model}/{recipe}/seed{seed}/dense/                      dense training
    results/masks/{dataset}/{model}/{recipe}/seed{seed}/{mask}/s{sparsity}.pt      one mask per sparsity
    results/masks/{dataset}/{model}/{recipe}/seed{seed}/{mask}/s{sparsity}.json    its per-layer report
    results/runs/{dataset}/{model}/{recipe}/seed{seed}/{mask}/s{sparsity}/{variant}/   re-training
    results/analysis/{run}/{analysis}.json       an analysis of a run ({run}: its path under results/runs)
    results/analysis/{run}/{analysis}.npz        its arrays, for kinds that write them
    results/analysis/{run}/{analysis}/           a trajectory analysis's monitored re-run (final.pt, metrics)
    results/tables/{id}.csv|md, results/figures/{id}.png|pdf|csv                   artefacts

A training run's directory holds final.pt, metrics.csv, summary.json (and checkpoint.pt while it runs);
the dense run also init.pt and rewind_e{k}.pt for each of its recipe's save_epochs.

Names in paths are configuration keys (dataset, model, recipe, mask set, variant). Sparsity is in
percent with two decimals (s36.00). The dense network is the mask set `dense` at s00.00, and its
`lth` variant is the dense run itself. A variant name may carry a replica suffix (lth@o3).
"""
from __future__ import annotations

import os

RESULTS = "results"
RUNS = f"{RESULTS}/runs"

# what a training run writes in its directory
FINAL = "final.pt"
METRICS = "metrics.csv"
SUMMARY = "summary.json"
CHECKPOINT = "checkpoint.pt"  # while it runs (resumed from after a kill)
INIT = "init.pt"              # the dense run: its initial weights
RUN_FILES = (FINAL, METRICS, SUMMARY)  # what every run (and a trajectory's re-run) leaves

REPLICA = "@o"  # variant@o<k>: replica k of the variant's run, same initialisation and mask, another data order


class W:
    """Wildcards-like record (dataset, model, recipe, seed[, mask, sparsity, variant]), so the path and plan
    functions serve Snakemake and plain Python alike."""

    def __init__(self, **kw):
        self.__dict__.update(kw)


def rewind_name(epoch: int) -> str:
    """The dense run's weights after `epoch` (a save_epochs entry)."""
    return f"rewind_e{epoch}.pt"


def weights_name(epoch: int) -> str:
    """The dense run's weights after `epoch`: init.pt at 0."""
    return INIT if epoch == 0 else rewind_name(epoch)


def dense_files(save_epochs) -> list[str]:
    """What the dense run writes in its directory."""
    return [INIT, FINAL, METRICS, SUMMARY] + [rewind_name(k) for k in save_epochs]


def sp_tag(s: float) -> str:
    return f"{100 * s:05.2f}"


def sp_value(tag: str) -> float:
    return float(tag) / 100


def data_path(dataset: str) -> str:
    return f"{RESULTS}/data/{dataset}.npz"


def run_prefix(dataset, model, recipe, seed) -> str:
    return f"{RUNS}/{dataset}/{model}/{recipe}/seed{seed}"


def dense_dir(w) -> str:
    """w: a record with dataset, model, recipe and seed (W, Snakemake wildcards)."""
    return f"{run_prefix(w.dataset, w.model, w.recipe, w.seed)}/dense"


def init_weights(w, epoch: int) -> str:
    """The dense run's weights after `epoch` (0: its initialisation)."""
    return f"{dense_dir(w)}/{weights_name(epoch)}"


def mask_path(w, mask: str, s: float) -> str:
    return f"{RESULTS}/masks/{w.dataset}/{w.model}/{w.recipe}/seed{w.seed}/{mask}/s{sp_tag(s)}.pt"


def mask_report(w, mask: str, s: float) -> str:
    """The JSON beside a mask file (per-layer density)."""
    return report_path(mask_path(w, mask, s))


def run_dir(w, mask: str, s: float, variant: str) -> str:
    """s: the exact sparsity (see plan.exact_sparsity)."""
    if mask == "dense" or s == 0:
        return dense_dir(w) if variant == "lth" else f"{dense_dir(w)}/s00.00/{variant}"
    return f"{run_prefix(w.dataset, w.model, w.recipe, w.seed)}/{mask}/s{sp_tag(s)}/{variant}"


def run_key(run: str) -> str:
    """A run directory's path under results/runs (the {run} of analysis paths, what parse_run reads)."""
    return run.removeprefix(RUNS + "/")


def parse_run(run: str):
    """The wildcards of a run from its path under results/runs (see run_dir, run_key): a record with
    dataset, model, recipe, seed, mask, sparsity (tag) and variant."""
    parts = run.split("/")
    if len(parts) < 5 or not parts[3].startswith("seed"):
        raise ValueError(f"not a run path: {run!r}")
    w = dict(dataset=parts[0], model=parts[1], recipe=parts[2], seed=parts[3][4:])
    rest = parts[4:]
    if rest == ["dense"]:
        mask, tag, variant = "dense", "00.00", "lth"
    elif len(rest) == 3 and rest[1].startswith("s"):
        mask, tag, variant = rest[0], rest[1][1:], rest[2]
    else:
        raise ValueError(f"not a run path: {run!r}")
    return W(**w, mask=mask, sparsity=tag, variant=variant)


def parse_mask(path: str):
    """The wildcards of a mask file from its path (see mask_path): dataset, model, recipe, seed, mask, sparsity."""
    *_, dataset, model, recipe, seed, mask, sparsity = path.removesuffix(".pt").split("/")
    return W(dataset=dataset, model=model, recipe=recipe, seed=seed.removeprefix("seed"), mask=mask,
             sparsity=sparsity.removeprefix("s"))


def replica_names(variant: str, replicas: int) -> list[str]:
    return [f"{variant}{REPLICA}{k}" for k in range(1, replicas + 1)] if replicas else [variant]


def split_replica(name: str) -> tuple[str, int]:
    """'lth@o3' -> ('lth', 3); 'lth' -> ('lth', 0)."""
    base, sep, k = name.partition(REPLICA)
    if sep and not k.isdigit():
        raise ValueError(f"variant {name!r}: replica suffix must be {REPLICA}<number>")
    return base, int(k) if sep else 0


def cycles_dir(mask_file: str) -> str:
    """Where a mask method that trains (lth_iter) keeps its resumable runs: beside the mask file."""
    return os.path.splitext(mask_file)[0] + ".cycles"


def report_path(mask_file: str) -> str:
    """The per-layer density report written beside a mask file."""
    return os.path.splitext(mask_file)[0] + ".json"


def trajectory_dir(run: str, name: str) -> str:
    """The directory of trajectory analysis `name`'s monitored re-run of `run` (a run directory or its run_key);
    it holds RUN_FILES."""
    return f"{RESULTS}/analysis/{run_key(run)}/{name}"


def analysis_path(run: str, name: str) -> str:
    """run: a run directory (results/runs/...) or its run_key."""
    return f"{trajectory_dir(run, name)}.json"


def arrays_path(json_path: str) -> str:
    """The .npz beside an analysis JSON, for kinds that write arrays (rule analysis_arrays)."""
    return json_path.removesuffix(".json") + ".npz"


def run_of_file(path: str) -> str:
    """The run (run_key) a run's file (results/runs/<run>/...) or one of its analyses (results/analysis/<run>/<name>
    .json) belongs to."""
    head = os.path.dirname(path)
    if path.startswith(f"{RESULTS}/analysis/"):
        return head.removeprefix(f"{RESULTS}/analysis/")
    return run_key(head)


def curves_path(experiment: str) -> str:
    """The report's figure of the training curves of an experiment's runs (rule curves)."""
    return f"{RESULTS}/curves/{experiment}.png"


def artefact_files(aid: str, output: str) -> list[str]:
    """The files artefact `aid` writes, by its kind's output (table, figure or claims); the first is the one to
    ask Snakemake for, and the one the report shows (report_file)."""
    if output == "table":
        return [f"{RESULTS}/tables/{aid}.csv", f"{RESULTS}/tables/{aid}.md"]
    if output == "claims":
        return [f"{RESULTS}/tables/{aid}.csv", f"{RESULTS}/tables/{aid}.md", f"{RESULTS}/tables/{aid}.rst"]
    return [f"{RESULTS}/figures/{aid}.png", f"{RESULTS}/figures/{aid}.pdf", f"{RESULTS}/figures/{aid}.csv"]


def tidy_csv(aid: str, output: str) -> str:
    """The tidy CSV of an artefact (what claims read)."""
    return next(f for f in artefact_files(aid, output) if f.endswith(".csv"))
