"""How much GPU time a configuration's plan needs: `python scripts/gpu_budget.py --configfile X` (run by `make
paper-dry-run`). Every job of the plan (Snakemake's --summary: each output file and the rule that makes it) is
costed from its spec (ticketlab.plan): images trained (steps x batch, the epochs after a rewind point for
continue_schedule), evaluations (val and test after every epoch), GradInit's iterations, a teacher's forward,
a monitored re-run's Hessian power iterations per epoch, lth_iter's training cycles, and each analysis's passes;
plus a fixed start-up per job.

Time per image comes from each model's forward FLOPs at its dataset's image size (counted on the CPU by torch's
FlopCounterMode over one forward pass) under a GPU model: training costs
3x the forward FLOPs, at EFFECTIVE_FLOPS, but no step is faster than STEP_FLOOR (small networks are launch-
bound). The two constants are assumptions for one H100-class GPU under bf16 autocast and channels-last, not
measurements: no GPU has been available to this project; `make bench` on one is how to replace them."""
from __future__ import annotations

import functools
import math
from collections import defaultdict

import torch
from torch.utils.flop_counter import FlopCounterMode

from . import plan
from .defaults import SOURCE_SIZES
from .layout import RUNS, parse_run
from .models import build_model

EFFECTIVE_FLOPS = 40e12  # sustained FLOP/s of CIFAR-size convnets under bf16 (about 4% of an H100's peak)
STEP_FLOOR = 3e-3        # seconds: the least a training step takes (kernel launches of forward, backward, SGD)
EVAL_FLOOR = 1e-3        # seconds per evaluation batch
JOB_START = 15.0         # seconds per job: process, data to the device, cuDNN autotuning, writes
HVP = 2.0                # a Hessian-vector product costs about two training images per image


@functools.lru_cache(maxsize=64)
def forward_flops(arch_items: tuple, size: int, channels: int, classes: int) -> float:
    """FLOPs (2 per multiply-add) of one image's forward pass, as torch's FlopCounterMode counts them."""
    kwargs = dict(arch_items)
    model = build_model(kwargs.pop("arch"), classes, in_channels=channels, input_size=size, **kwargs).eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, channels, size, size))
    return float(counter.get_total_flops())


class Costs:
    """Seconds per training image and per evaluated image of a model on a dataset."""

    def __init__(self, cfg: dict):
        self.cfg = cfg

    def data(self, dataset: str) -> dict:
        d = self.cfg["datasets"][dataset]
        # folders of images (imagefolder, npz) are not sized before they are read: a guess, as footprint.py's
        train, test, size, channels, classes = SOURCE_SIZES.get(
            d["source"], (100_000, 10_000, d.get("image_size", 32), 3, 1000))
        val = round(train * d.get("val_fraction", 0.1))
        return {"train": train - val, "eval": val + test, "size": size, "channels": channels, "classes": classes}

    def per_image(self, model: dict, dataset: str, batch: int) -> tuple[float, float]:
        d = self.data(dataset)
        flops = forward_flops(tuple(sorted(model.items())), d["size"], d["channels"], d["classes"])
        return max(3 * flops / EFFECTIVE_FLOPS, STEP_FLOOR / batch), max(flops / EFFECTIVE_FLOPS, EVAL_FLOOR / 1000)

    def training(self, spec: dict, dataset: str) -> float:
        """A training run's seconds: its steps, evaluations, GradInit, teacher and monitors."""
        r, d = spec["recipe"], self.data(dataset)
        batch = r.get("batch_size", 128)
        train, evaluate = self.per_image(spec["model"], dataset, batch)
        epochs = (spec.get("stop_after") or r["epochs"]) - spec.get("start_epoch", 0)
        steps = r.get("steps") or epochs * math.ceil(d["train"] / batch)
        images = steps * batch
        seconds = images * train + epochs * d["eval"] * evaluate
        tweaks = spec.get("tweaks", {})
        for t in ("scaling", "lrsi"):  # GradInit: per iteration two forward-backward passes of a batch
            if t in tweaks:
                seconds += tweaks[t].get("iterations", 0) * 2 * batch * train
        if spec.get("teacher"):
            seconds += images * evaluate
        m = spec.get("monitor")
        if m:
            seconds += epochs * m["hessian_batches"] * m["hessian_max_iter"] * m["hessian_batch_size"] * HVP * train
            if m.get("gradflow_every"):
                seconds += steps / m["gradflow_every"] * m["gradflow_examples"] * train
        return seconds


def job_seconds(cfg: dict, costs: Costs, rule: str, path: str) -> float | None:
    """The GPU seconds of the job that writes `path` (one of its outputs), None for jobs not costed here
    (tables, figures, data preparation: seconds of CPU)."""
    if rule.startswith("dense_") and path.endswith("/final.pt"):
        w = parse_run(path.removeprefix(RUNS + "/").removesuffix("/final.pt"))
        return costs.training(plan.dense_spec(cfg, w), w.dataset)
    if rule == "retrain" and path.endswith("/final.pt"):
        w = parse_run(path.removeprefix(RUNS + "/").removesuffix("/final.pt"))
        return costs.training(plan.retrain_spec(cfg, w), w.dataset)
    if rule in ("trajectory", "analysis", "analysis_arrays") and path.endswith(".json") \
            and not path.endswith("/summary.json"):  # (a trajectory's re-run also writes a summary.json)
        run, name = path.removeprefix("results/analysis/").removesuffix(".json").rsplit("/", 1)
        spec = plan.analysis_spec(cfg, run, name)
        w = parse_run(run)
        if rule == "trajectory":
            return costs.training(spec, w.dataset)
        return analysis_seconds(costs, spec, w.dataset)
    if rule == "mask" and path.endswith(".pt"):
        parts = path.removeprefix("results/masks/").removesuffix(".pt").split("/")
        w = plan.W(dataset=parts[0], model=parts[1], recipe=parts[2], seed=parts[3][4:], mask=parts[4],
                   sparsity=parts[5][1:])
        spec = plan.mask_spec(cfg, w)
        if spec.get("cycle_recipe"):  # lth_iter: its cycles train
            cycle = {"model": spec["model"], "recipe": spec["cycle_recipe"]}
            return spec.get("cycles", 5) * costs.training(cycle, w.dataset)
        train, _ = costs.per_image(spec["model"], w.dataset, 128)
        return spec.get("batches", 1) * spec.get("rounds", 1) * spec.get("batch_size", 256) * train
    return None


def analysis_seconds(costs: Costs, spec: dict, dataset: str) -> float:
    """An analysis's passes: Hessian power iterations and trace samples, perturbation and landscape grids,
    one pass of the split for the others."""
    a, d = spec["analysis"], costs.data(dataset)
    train, evaluate = costs.per_image(spec["run"]["model"], dataset, 128)
    split = d["train"] if a.get("split") == "train" else d["eval"] / 2
    examples = a.get("examples") or split
    kind = a["kind"]
    if kind == "hessian":
        per_batch = a["max_iter"] * a["top_n"] + a["trace_samples"] + a["density_iters"] * a["density_runs"]
        return a["batches"] * a["batch_size"] * per_batch * HVP * train
    if kind == "perturbation":
        return a["max_iter"] * a["batch_size"] * HVP * train + a["steps"] * examples * evaluate
    if kind == "landscape":
        return a["steps"] ** a["dims"] * examples * evaluate
    if kind == "interpolation":
        return a["steps"] * examples * evaluate
    return split * evaluate


def estimate(cfg: dict, summary: list[tuple[str, str]]) -> dict:
    """GPU seconds of the plan, in all and per rule, from Snakemake's --summary rows (path, rule): each job is
    counted once (by the output that names it) plus JOB_START."""
    costs, per_rule, jobs = Costs(cfg), defaultdict(float), defaultdict(int)
    for path, rule in summary:
        s = job_seconds(cfg, costs, rule, path)
        if s is not None:
            per_rule[rule] += s + JOB_START
            jobs[rule] += 1
    return {"seconds": sum(per_rule.values()), "per_rule": dict(per_rule), "jobs": dict(jobs)}
