"""What each Snakemake job does, callable from tests and, through run_job, from the rules' entry points
(scripts/*.py -> ticketlab.entry, in the job server's children or directly). A job is described by a plain
dict of JSON values (entry.describe): its kind (one of JOBS, named by the rule's entry script), params, inputs and
outputs (named as the rule names them), log and threads. A job reads the files the rule passes it (its
input), never the paths written in its params: those are its identity (Snakemake's re-run trigger), and under
a module prefix or a storage plugin the files are elsewhere."""
from __future__ import annotations

import contextlib
import json
import os
import sys
import time

import numpy as np

from .layout import SUMMARY, cycles_dir
from .specs import AnalysisJob, ArtefactJob, MaskJob, RunSpec


@contextlib.contextmanager
def logged(path: str | None):
    """Send the job's prints and errors to its log file (line-buffered, so progress is visible)."""
    if not path:
        yield
        return
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w", buffering=1) as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
        yield


def prepare_data(spec: dict, out: str) -> dict:
    from .data import prepare
    summary = prepare(spec, out)
    print(json.dumps(summary, default=str))
    return summary


def train(spec: dict | RunSpec, outdir: str, threads: int = 1, started: float | None = None) -> dict:
    """started: when the job's process started (its summary counts the start-up as job_start)."""
    from .training import run
    return run(spec, outdir, threads, job_started=started)


def make_mask(spec: dict | MaskJob, out: str) -> None:
    """Make one mask: load the weights the method prunes from (`spec['weights']`), then call the
    registered method with the previous level's mask (IMP), the source mask (ratios_from) and a
    source of training batches (data-driven methods)."""
    import torch

    from .masks import Mask, MaskError, PruneContext, covered
    from .pruners import MASK_METHODS
    from .training import Data, architecture, load_weights

    job = MaskJob.from_dict(spec)
    spec, settings = job.params(), job.settings  # pruners read the settings from ctx.spec, as the config has them
    torch.manual_seed(job.seed)
    data = Data(job.data, torch.device("cpu"))
    model = architecture(job.model, data)
    load_weights(model, job.weights, allow_missing_extra=False)
    weights = covered(model, settings["layers"], settings.get("keep_dense", []))
    previous = Mask.load(job.previous, model) if job.previous else None
    source = Mask.load(job.source, model) if job.source else None
    for path, m in ((job.previous, previous), (job.source, source)):
        if m is not None and set(m) != set(weights):
            raise MaskError(f"{path}: covers {len(m)} tensors, "
                            f"but layers={settings['layers']!r} selects {len(weights)}")
    g = torch.Generator().manual_seed(job.seed)
    ctx = PruneContext(model=model, weights=weights, sparsity=job.sparsity, spec=spec, previous=previous,
                       source=source, generator=g,
                       batches=data.sampler(settings.get("batch_size", 256), {}, g),
                       workdir=cycles_dir(out))
    mask = MASK_METHODS.get(job.method)(ctx)
    meta = {k: spec.get(k)
            for k in ("method", "sparsity", "layers", "keep_dense", "scope", "weights", "previous", "source")}
    mask.save(out, **meta)
    r = mask.report()
    print(f"{out}: sparsity {r['sparsity']:.6f} (target {job.sparsity:.6f}), {r['kept']}/{r['total']} kept")
    if r["empty_layers"]:
        print(f"WARNING: layers pruned to nothing: {r['empty_layers']}")


def analyse(spec: dict | AnalysisJob, out: str, threads: int = 1, arrays: str | None = None) -> dict:
    """Run one registered analysis (ticketlab.analysis) on a trained run and write its JSON result to `out`,
    with the settings and the seconds it took. Kinds flagged needs_init / needs_reference also get the
    weights the run started from / the reference run's final weights; a kind's arrays go to `arrays` (the
    .npz output of rule analysis_arrays)."""
    import torch

    from . import weights_io
    from .analysis import ANALYSES, COMMON
    from .training import Data, Fast, initial_weights, live_param_counts, load_trained, pick_device

    job = AnalysisJob.from_dict(spec)
    run, a = job.run, job.analysis
    kind = ANALYSES.get(a["kind"])
    if kind.arrays and not arrays:
        raise ValueError(f"analysis kind {a['kind']!r} writes arrays: it needs the path of its .npz")
    extra = {"init": initial_weights(run, threads)} if kind.needs_init else {}
    if kind.needs_reference:
        extra["reference"] = weights_io.load(job.reference)
    torch.set_num_threads(max(1, threads))
    device = pick_device(run.device)
    data = Data(run.data, device)
    model, mask = load_trained(run, job.weights, data, job.epochs, device)
    params = live_param_counts(model, mask)  # before the kind runs: what was analysed
    t0 = time.time()
    result = kind(model, mask, data, {k: v for k, v in a.items() if k not in COMMON}, **extra)
    if kind.arrays:
        _write_arrays(result.pop("arrays"), arrays)
    # analyses run in fp32, contiguous, uncompiled on the run's device (cuDNN's TF32 convolutions as torch's
    # default leaves them); the weights were trained in the run's numerics
    numerics = {"trained": summary_beside(job.weights).get("numerics"),
                "analysed": Fast({"precision": "fp32", "channels_last": False}, device).resolved(False)}
    result = {**result, "analysis": a, "run": run.name, "weights": job.weights, "params": params,
              "numerics": numerics, "seconds": time.time() - t0}
    if kind.needs_reference:
        result["reference"] = job.reference
    _write_json(result, out)
    print(f"{out}: {a['kind']} in {result['seconds']:.1f}s")
    return result


def summary_beside(path: str) -> dict:
    """The summary.json the training job that wrote `path` (its final.pt, metrics.csv, a trajectory's re-run)
    wrote beside it; {} if none."""
    try:
        with open(os.path.join(os.path.dirname(path), SUMMARY)) as f:
            return json.load(f)
    except OSError:
        return {}


def trajectory(spec: dict | RunSpec, out: str, threads: int = 1, started: float | None = None,
               outdir: str | None = None) -> dict:
    """Run an analysis kind that trains (flag `trains`, e.g. analysis.trajectory: the run re-trained with its
    monitors on) and write its result (the curves) to `out`; the re-run's weights, metrics and summary go to
    `outdir` (default its spec's name)."""
    from .analysis import ANALYSES
    spec = RunSpec.from_dict(spec)
    result = ANALYSES.get(spec.monitor.get("kind", "trajectory"))(spec, outdir or spec.name, threads, started)
    _write_json(result, out)
    return result


def _write_arrays(arrays: dict, out: str) -> None:
    tmp = f"{out}.tmp.npz"
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, out)


def _write_json(obj, out: str) -> None:
    tmp = f"{out}.tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
    os.replace(tmp, out)


def make_artefact(spec: dict, variants: dict, rows: list[dict], paper: list[str], outputs: list[str], aid: str):
    from .artefacts import build
    build(spec, variants, rows, paper, outputs, aid)


def _run_spec(job: dict) -> RunSpec:
    return RunSpec.from_dict(job["params"]["spec"]).with_inputs(job["input"], f"rule {job['rule']}")


def _train_job(job: dict) -> None:
    train(_run_spec(job), os.path.dirname(job["output"][0]), job["threads"], job.get("started"))


def _trajectory_job(job: dict) -> None:
    out = job["named_output"]
    trajectory(_run_spec(job), out["json"], job["threads"], job.get("started"), os.path.dirname(out["final"]))


def _mask_job(job: dict) -> None:
    make_mask(MaskJob.from_dict(job["params"]["spec"]).with_inputs(job["input"], f"rule {job['rule']}"),
              job["named_output"]["mask"])


def _analysis_job(job: dict) -> None:
    out = job["named_output"]
    a = AnalysisJob.from_dict(job["params"]["spec"]).with_inputs(job["input"], f"rule {job['rule']}")
    analyse(a, out["json"], job["threads"], arrays=out.get("arrays"))


def _artefact_job(job: dict) -> None:
    """The rows' files are the rule's inputs, in the rows' order (`runs`; `arrays` for the rows that have one)."""
    a = ArtefactJob.from_dict(job["params"]["job"])
    runs, arrays = job["input"].get("runs", []), job["input"].get("arrays", [])
    if len(runs) != len(a.rows) or len(arrays) != sum("arrays" in r for r in a.rows):
        raise ValueError(f"rule {job['rule']}: {len(runs)} runs and {len(arrays)} arrays given as input for "
                         f"{len(a.rows)} rows")
    runs, arrays = iter(runs), iter(arrays)
    rows = [{**r, "path": next(runs), **({"arrays": next(arrays)} if "arrays" in r else {})} for r in a.rows]
    make_artefact(a.spec, a.variants, rows, job["input"].get("paper", []), job["output"], job["id"])


def _curves_job(job: dict) -> None:
    from .training_curves import plot
    p = job["params"]["job"]
    plot(p["experiment"], p["runs"], job["input"]["metrics"], job["output"][0])


# What each kind of job runs, given its description; the rules' entry scripts name the kind
# (scripts/train.py: main(snakemake, job="train")), so a rule's name never decides what runs.
JOBS = {
    "prepare_data": lambda job: prepare_data(job["params"]["spec"], job["output"][0]),
    "train": _train_job,  # dense_<recipe>, retrain
    "mask": _mask_job,
    "analysis": _analysis_job,  # analysis, analysis_arrays
    "trajectory": _trajectory_job,
    "artefact": _artefact_job,  # table, figure, claims
    "curves": _curves_job,
}


def run_job(job: dict) -> None:
    """Run a job (entry.describe) by its kind (JOBS), its prints and errors in its log."""
    with logged(job["log"]):
        try:
            if job.get("job") not in JOBS:
                raise ValueError(f"no job of kind {job.get('job')!r}; kinds: {sorted(JOBS)}")
            JOBS[job["job"]](job)
        except Exception:
            import traceback
            traceback.print_exc()
            raise
        sys.stdout.flush()
