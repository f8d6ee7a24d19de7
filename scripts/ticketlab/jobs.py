"""What each Snakemake job does, callable from the thin entry points in scripts/ and from tests."""
from __future__ import annotations

import contextlib
import json
import os
import sys

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
            raise MaskError(f"{spec[name]}: covers {len(m)} tensors, but layers={spec['layers']!r} selects {len(weights)}")
    g = torch.Generator().manual_seed(spec.get("seed", 0))
    ctx = PruneContext(model=model, weights=weights, sparsity=spec["sparsity"], spec=spec, previous=previous,
                       source=source, generator=g,
                       batches=data.sampler(spec.get("batch_size", 256), {}, g))
    mask = MASK_METHODS.get(spec["method"])(ctx)
    meta = {k: spec.get(k) for k in ("method", "sparsity", "layers", "keep_dense", "scope", "weights", "previous", "source")}
    mask.save(out, **meta)
    r = mask.report()
    print(f"{out}: sparsity {r['sparsity']:.6f} (target {spec['sparsity']:.6f}), {r['kept']}/{r['total']} kept")
    if r["empty_layers"]:
        print(f"WARNING: layers pruned to nothing: {r['empty_layers']}")


def analyse(spec: dict, out: str, threads: int = 1) -> dict:
    """Run one registered analysis (ticketlab.analysis) on a trained run and write its JSON result,
    with the settings and the seconds it took."""
    import time

    import torch

    from .analysis import ANALYSES
    from .train import Data, load_trained, pick_device

    torch.set_num_threads(max(1, threads))
    run, a = spec["run"], spec["analysis"]
    device = pick_device(run.get("device", "auto"))
    data = Data(run["data"], device)
    model, mask = load_trained(run, spec["weights"], data, spec["epochs"], device)
    t0 = time.time()
    result = ANALYSES.get(a["kind"])(model, mask, data, {k: v for k, v in a.items() if k not in ("kind", "weights")})
    result = {**result, "analysis": a, "run": run["name"], "weights": spec["weights"], "seconds": time.time() - t0}
    _write_json(result, out)
    print(f"{out}: {a['kind']} in {result['seconds']:.1f}s")
    return result


def trajectory(spec: dict, out: str, threads: int = 1) -> dict:
    """Re-train a run with its monitors on; the curves (accuracy and top Hessian eigenvalue per epoch,
    gradient flow per step) go to `out`, the re-run's weights, metrics and summary beside it."""
    from .train import Run
    r = Run(spec, spec["name"], threads)
    summary = r.run()
    curves = {k: {"x": [row["epoch"] for row in r.rows], "y": [row[k] for row in r.rows]}
              for k in ("train_acc", "val_acc", "test_acc", "test_loss", "top_eigenvalue") if k in r.rows[0]}
    if r.flow:
        curves["gradient_flow"] = {"x": [f["step"] for f in r.flow], "y": [f["gradient_flow"] for f in r.flow]}
    result = {"curves": curves, "milestones": spec["recipe"]["milestones"], "best_val_epoch": summary["best_val_epoch"],
              "steps_per_epoch": -(-len(r.data.split["train"][1]) // spec["recipe"]["batch_size"]),
              "analysis": spec["monitor"], "run": spec["name"], "seconds": summary["train_seconds"]}
    _write_json(result, out)
    return result


def _write_json(obj, out: str) -> None:
    tmp = f"{out}.tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
    os.replace(tmp, out)


def make_artefact(spec: dict, variants: dict, rows: list[dict], paper: list[str], outputs: list[str], aid: str):
    from .artefacts import build
    build(spec, variants, rows, paper, outputs, aid)


def main(smk) -> None:
    """Dispatch a Snakemake `script:` job by its rule name."""
    rule, log = smk.rule, (smk.log[0] if smk.log else None)
    with logged(log):
        try:
            if rule == "prepare_data":
                prepare_data(smk.params.spec, smk.output[0])
            elif rule.startswith("dense_") or rule == "retrain":
                train(smk.params.spec, os.path.dirname(smk.output[0]), smk.threads)
            elif rule == "mask":
                make_mask(smk.params.spec, smk.output.mask)
            elif rule == "analysis":
                analyse(smk.params.spec, smk.output[0], smk.threads)
            elif rule == "trajectory":
                trajectory(smk.params.spec, smk.output.json, smk.threads)
            elif rule in ("table", "figure"):
                job = smk.params.job
                make_artefact(job["spec"], job["variants"], job["rows"], list(smk.input.paper),
                              list(smk.output), smk.wildcards.id)
            else:
                raise ValueError(f"no job for rule {rule!r}")
        except Exception:
            import traceback
            traceback.print_exc()
            raise
    sys.stdout.flush()
