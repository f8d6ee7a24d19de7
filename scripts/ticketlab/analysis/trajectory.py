"""The `trajectory` analysis: the run re-trained with monitors on (top Hessian eigenvalue after every epoch,
the gradient flow every `gradflow_every` steps), so that runs no figure monitors train at full speed. The
monitors are training callbacks (ticketlab.training.Callback) on fixed training examples drawn apart from the
training generator, so a monitored run trains exactly as the unmonitored one.

A kind flagged `trains`: it is called as fn(spec, outdir, threads, job_started) with the monitored re-run's
spec (the run's, plus `monitor`, `stop_after`, `export`), not with a trained model."""
from __future__ import annotations

import time

import numpy as np

from ..defaults import MONITOR_DEFAULTS
from ..specs import RunSpec
from ..training import Callback, Run, fixed_examples
from . import analysis
from .gradflow import gradient_flow
from .hessian import top_eigenvalues


class HessianMonitor(Callback):
    """After every epoch: the top Hessian eigenvalue, the mean over `hessian_batches` fixed training batches
    (metrics columns top_eigenvalue and hessian_seconds)."""
    name = "hessian"

    def __init__(self, m: dict):
        self.m = m

    def setup(self, run, state):
        n, bs = self.m["hessian_batches"], self.m["hessian_batch_size"]
        x, y = fixed_examples(run.data, n * bs, self.m["seed"])
        self.batches = [(x[i * bs:(i + 1) * bs], y[i * bs:(i + 1) * bs]) for i in range(n) if i * bs < len(y)]

    def on_epoch(self, run, row):
        if not self.batches:
            return
        t0 = time.time()
        values = [top_eigenvalues(run.model, run.mask, x, y, max_iter=self.m["hessian_max_iter"],
                                  tol=self.m["hessian_tol"])[0][0] for x, y in self.batches]
        row["top_eigenvalue"] = float(np.mean(values))
        row["hessian_seconds"] = time.time() - t0


class GradientFlowMonitor(Callback):
    """Every `gradflow_every` steps (before the step): the gradient flow on `gradflow_examples` fixed training
    examples; also offered to the tweaks as ctx.gradient_flow (DST logs it at its mask updates)."""
    name = "gradient_flow"

    def __init__(self, m: dict):
        self.m, self.series = m, []

    def setup(self, run, state):
        self.examples = fixed_examples(run.data, self.m["gradflow_examples"], self.m["seed"] + 1)
        self.series = list(state or [])
        run.ctx.gradient_flow = lambda model, mask: gradient_flow(model, mask, *self.examples)

    def on_step(self, run, step, progress):
        if step % self.m["gradflow_every"] == 0:
            self.series.append({"step": step, "epoch": progress,
                                "gradient_flow": gradient_flow(run.model, run.mask, *self.examples)})

    def state(self):
        return self.series


def monitors(settings: dict) -> list[Callback]:
    m = {**MONITOR_DEFAULTS, **settings}
    return [HessianMonitor(m)] + ([GradientFlowMonitor(m)] if m["gradflow_every"] else [])


@analysis("trajectory", trains=True, **MONITOR_DEFAULTS)
def trajectory(spec: dict | RunSpec, outdir: str, threads: int = 1, job_started: float | None = None) -> dict:
    """Re-train a run with its monitors on; returns the curves (accuracy and top Hessian eigenvalue per epoch,
    gradient flow per step, and those the tweaks logged in ctx.log["curves"]); the re-run's weights, metrics
    and summary go to `outdir`."""
    spec = RunSpec.from_dict(spec)
    cbs = monitors(spec.monitor)
    r = Run(spec, outdir, threads, callbacks=cbs, job_started=job_started)
    summary = r.run()
    curves = {k: {"x": [row["epoch"] for row in r.rows], "y": [row[k] for row in r.rows]}
              for k in ("train_acc", "val_acc", "test_acc", "test_loss", "top_eigenvalue") if k in r.rows[0]}
    flow = [f for cb in cbs if isinstance(cb, GradientFlowMonitor) for f in cb.series]
    if flow:
        curves["gradient_flow"] = {"x": [f["step"] for f in flow], "y": [f["gradient_flow"] for f in flow]}
    curves.update(summary["tweak_log"].get("curves", {}))  # logged by tweaks, e.g. DST's gradient flow at mask updates
    return {"curves": curves, "milestones": list(spec.recipe.milestones), "best_val_epoch": summary["best_val_epoch"],
            "steps_per_epoch": r.steps_per_epoch,
            "analysis": spec.monitor, "run": spec.name, "seconds": summary["train_seconds"],
            # the re-run's own: it measures as it trains
            "params": summary.get("params"), "numerics": summary.get("numerics")}
