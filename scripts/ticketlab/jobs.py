"""What each Snakemake job does, callable from the thin entry points in scripts/ and from tests."""
from __future__ import annotations

import contextlib
import json
import os
import sys
import time

import numpy as np


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


def train(spec: dict, outdir: str, threads: int = 1) -> dict:
    from .train import run
    return run(spec, outdir, threads)


def make_mask(spec: dict, out: str) -> None:
    """Make one mask: load the weights the method prunes from (`spec['weights']`), then call the
    registered method with the previous level's mask (IMP), the source mask (ratios_from) and a
    source of training batches (data-driven methods)."""
    import torch

    from .masks import MASK_METHODS, Mask, MaskError, PruneContext, covered
    from .train import Data, build, load_weights

    torch.manual_seed(spec.get("seed", 0))
    data = Data(spec["data"], torch.device("cpu"))
    model, _ = build({"model": spec["model"]}, data, with_tweaks=False)
    load_weights(model, spec["weights"], allow_missing_extra=False)
    weights = covered(model, spec["layers"], spec.get("keep_dense", []))
    previous = Mask.load(spec["previous"], model) if spec.get("previous") else None
    source = Mask.load(spec["source"], model) if spec.get("source") else None
    for name, m in (("previous", previous), ("source", source)):
        if m is not None and set(m) != set(weights):
            raise MaskError(f"{spec[name]}: covers {len(m)} tensors, "
                            f"but layers={spec['layers']!r} selects {len(weights)}")
    g = torch.Generator().manual_seed(spec.get("seed", 0))
    ctx = PruneContext(model=model, weights=weights, sparsity=spec["sparsity"], spec=spec, previous=previous,
                       source=source, generator=g,
                       batches=data.sampler(spec.get("batch_size", 256), {}, g),
                       workdir=os.path.splitext(out)[0] + ".cycles")
    mask = MASK_METHODS.get(spec["method"])(ctx)
    meta = {k: spec.get(k)
            for k in ("method", "sparsity", "layers", "keep_dense", "scope", "weights", "previous", "source")}
    mask.save(out, **meta)
    r = mask.report()
    print(f"{out}: sparsity {r['sparsity']:.6f} (target {spec['sparsity']:.6f}), {r['kept']}/{r['total']} kept")
    if r["empty_layers"]:
        print(f"WARNING: layers pruned to nothing: {r['empty_layers']}")


def analyse(spec: dict, out: str, threads: int = 1) -> dict:
    """Run one registered analysis (ticketlab.analysis) on a trained run and write its JSON result,
    with the settings and the seconds it took. Kinds flagged needs_init / needs_reference also get the
    weights the run started from / the reference run's final weights; a kind's arrays go to the .npz
    beside the JSON (plan.arrays_path)."""
    import time

    import torch

    from .analysis import ANALYSES, COMMON
    from .plan import arrays_path
    from .train import Data, Fast, initial_weights, load_trained, pick_device

    run, a = spec["run"], spec["analysis"]
    kind = ANALYSES.get(a["kind"])
    extra = {"init": initial_weights(run, threads)} if kind.needs_init else {}
    if kind.needs_reference:
        extra["reference"] = torch.load(spec["reference"], map_location="cpu", weights_only=True)
    torch.set_num_threads(max(1, threads))
    device = pick_device(run.get("device", "auto"))
    data = Data(run["data"], device)
    model, mask = load_trained(run, spec["weights"], data, spec["epochs"], device)
    params = param_counts(model, mask)  # before the kind runs: what was analysed
    t0 = time.time()
    result = kind(model, mask, data, {k: v for k, v in a.items() if k not in COMMON}, **extra)
    if kind.arrays:
        _write_arrays(result.pop("arrays"), arrays_path(out))
    # analyses run in fp32, contiguous, uncompiled on the run's device (cuDNN's TF32 convolutions as torch's
    # default leaves them); the weights were trained in the run's numerics
    numerics = {"trained": summary_beside(spec["weights"]).get("numerics"),
                "analysed": Fast({"precision": "fp32", "channels_last": False}, device).resolved(False)}
    result = {**result, "analysis": a, "run": run["name"], "weights": spec["weights"], "params": params,
              "numerics": numerics, "seconds": time.time() - t0}
    if kind.needs_reference:
        result["reference"] = spec["reference"]
    _write_json(result, out)
    print(f"{out}: {a['kind']} in {result['seconds']:.1f}s")
    return result


def param_counts(model, mask) -> dict:
    """The analysed model's trainable parameters as summary.json counts them: non-zero ones (after the mask,
    extras such as Skip's 1x1 conv + BN included), all, and the mask's kept entries (None without a mask).
    An extra skip path whose gate is 0 (a ghost skip after its removal) is not computed, so it is left out."""
    off = {id(p) for m in model.modules() if getattr(m, "has_extra_skip", False) and m.skip_gate == 0.0
           for name in m.EXTRA_MODULES for p in getattr(m, name).parameters()}
    live = [p for p in model.parameters() if p.requires_grad and id(p) not in off]
    return {"nonzero": sum(int((p != 0).sum()) for p in live), "total": sum(p.numel() for p in live),
            "masked_kept": mask.kept if len(mask) else None}


def summary_beside(path: str) -> dict:
    """The summary.json the training job that wrote `path` (its final.pt, metrics.csv, a trajectory's re-run)
    wrote beside it; {} if none."""
    try:
        with open(os.path.join(os.path.dirname(path), "summary.json")) as f:
            return json.load(f)
    except OSError:
        return {}


def trajectory(spec: dict, out: str, threads: int = 1) -> dict:
    """Re-train a run with its monitors on; the curves (accuracy and top Hessian eigenvalue per epoch,
    gradient flow per step, and those the tweaks logged in ctx.log["curves"]) go to `out`, the re-run's
    weights, metrics and summary beside it."""
    from .train import Run
    r = Run(spec, spec["name"], threads)
    summary = r.run()
    curves = {k: {"x": [row["epoch"] for row in r.rows], "y": [row[k] for row in r.rows]}
              for k in ("train_acc", "val_acc", "test_acc", "test_loss", "top_eigenvalue") if k in r.rows[0]}
    if r.flow:
        curves["gradient_flow"] = {"x": [f["step"] for f in r.flow], "y": [f["gradient_flow"] for f in r.flow]}
    curves.update(summary["tweak_log"].get("curves", {}))  # logged by tweaks, e.g. DST's gradient flow at mask updates
    result = {"curves": curves, "milestones": spec["recipe"]["milestones"], "best_val_epoch": summary["best_val_epoch"],
              "steps_per_epoch": -(-len(r.data.split["train"][1]) // spec["recipe"]["batch_size"]),
              "analysis": spec["monitor"], "run": spec["name"], "seconds": summary["train_seconds"],
              # the re-run's own: it measures as it trains
              "params": summary.get("params"), "numerics": summary.get("numerics")}
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


def describe(smk) -> dict:
    """The plain description of a Snakemake `script:` job that run_job needs (picklable, for the job server)."""
    return {"rule": smk.rule, "started": _process_started(), "log": smk.log[0] if smk.log else None,
            "threads": smk.threads,
            "params": dict(smk.params.items()), "output": list(smk.output), "named_output": dict(smk.output.items()),
            "paper": list(smk.input.paper) if hasattr(smk.input, "paper") else [],
            "id": dict(smk.wildcards.items()).get("id")}


def _process_started() -> float | None:
    """When this process started (time.time()), from /proc: what a job pays before its first line runs."""
    try:
        with open("/proc/self/stat") as f:
            ticks = float(f.read().rpartition(")")[2].split()[19])  # field 22: start time since boot
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return time.time() - uptime + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def run_job(job: dict) -> None:
    """Run a job (describe) by its rule name, its prints and errors in its log."""
    rule, p, out = job["rule"], job["params"], job["output"]
    if job.get("started") and (rule.startswith("dense_") or rule in ("retrain", "trajectory")):
        from . import train as train_module
        train_module.JOB_STARTED = job["started"]
    with logged(job["log"]):
        try:
            if rule == "prepare_data":
                prepare_data(p["spec"], out[0])
            elif rule.startswith("dense_") or rule == "retrain":
                train(p["spec"], os.path.dirname(out[0]), job["threads"])
            elif rule == "mask":
                make_mask(p["spec"], job["named_output"]["mask"])
            elif rule in ("analysis", "analysis_arrays"):
                analyse(p["spec"], out[0], job["threads"])
            elif rule == "trajectory":
                trajectory(p["spec"], job["named_output"]["json"], job["threads"])
            elif rule in ("table", "figure"):
                a = p["job"]
                make_artefact(a["spec"], a["variants"], a["rows"], job["paper"], out, job["id"])
            else:
                raise ValueError(f"no job for rule {rule!r}")
        except Exception:
            import traceback
            traceback.print_exc()
            raise
        sys.stdout.flush()


def main(smk) -> None:
    """Entry point of the rules' `script:` jobs: run the job in a child of the local job server (which
    keeps torch imported; ticketlab.jobserver), or here when the server is off or out of reach."""
    from . import jobserver
    job = describe(smk)
    if jobserver.enabled():
        try:
            status = jobserver.submit(job)
        except (OSError, TimeoutError) as e:
            print(f"ticketlab job server unavailable ({e}); running the job directly", file=sys.stderr)
        else:
            if status:
                sys.exit(status)
            return
    run_job(job)
