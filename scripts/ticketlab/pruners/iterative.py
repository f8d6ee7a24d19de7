"""Mask methods that train: LTH-Iter (dlth's "LTH Iter-5"), iterative magnitude pruning in a given
number of cycles of short pre-training, each rewound to the dense initialisation θ0.

Cycle c = 1..C trains the network from θ0 under the previous cycle's mask (none at c = 1) with the
recipe `cycle_recipe` (dlth: 50 epochs, LR 0.1/0.01/0.001 at 0/25/37), then prunes its trained
weights layer-wise by magnitude, among the weights still kept, to sparsity s_c = 1 - (1 - s)^(c/C)
(the same fraction of the remaining weights every cycle; s_C = s exactly): the masks nest and the last
is exactly the target in every covered layer (each removes round(s x n_layer), as `l1` and `omp` with
scope layer). Unlike `imp`, whose levels are a fixed rate and whose chain runs the experiment's recipe
as re-training jobs, the cycles here depend on the target sparsity, so they run inside the mask job.

The trainings are ordinary runs (ticketlab.training.Run) in a work directory beside the mask file
(`<mask>.cycles/cycle<c>/`, with the cycle's mask `mask<c>.pt`): a killed mask job resumes the cycle it
was in from that run's checkpoint, and finished cycles (summary.json of the same spec) are not re-run.
"""
from __future__ import annotations

import json
import os


from .. import weights_io
from ..defaults import FAST_DEFAULTS
from ..layout import FINAL, SUMMARY
from ..masks import Mask, MaskError, PruneContext, magnitude_prune
from ..specs import RunSpec
from ..training import Run, spec_hash
from . import mask_method


def cycle_sparsity(sparsity: float, cycle: int, cycles: int) -> float:
    """Sparsity after `cycle` of `cycles` cycles that each remove the same fraction of the remaining weights."""
    return sparsity if cycle == cycles else 1.0 - (1.0 - sparsity) ** (cycle / cycles)


def cycle_spec(spec: dict, workdir: str, cycle: int) -> dict:
    """The training run of one cycle: θ0 (spec['weights'], the dense run's init.pt), the previous cycle's
    mask, the cycle recipe, the mask's seed (the dense run's data order), the device settings."""
    return RunSpec.from_dict({
        "name": f"{workdir}/cycle{cycle}", "data": spec["data"], "model": spec["model"],
        "recipe": spec["cycle_recipe"], "seed": int(spec["seed"]),
        "mask": f"{workdir}/mask{cycle - 1}.pt" if cycle > 1 else None,
        "init": {"from": "file", "path": spec["weights"]}, "tweaks": {}, "teacher": None,
        "device": spec.get("device", "auto"), **{k: spec[k] for k in FAST_DEFAULTS if k in spec}}).params()


def _trained(spec: dict, outdir: str) -> str:
    """final.pt of the cycle's run: trained now, resumed from its checkpoint, or already done."""
    summary = os.path.join(outdir, SUMMARY)
    if os.path.exists(summary):
        with open(summary) as f:
            done = json.load(f).get("spec")
        if done is not None and spec_hash(done) == spec_hash(spec):
            return os.path.join(outdir, FINAL)
    Run(spec, outdir).run()
    return os.path.join(outdir, FINAL)


@mask_method("lth_iter", weights="init", settings=("cycles", "cycle_recipe"))
def lth_iter_mask(ctx: PruneContext) -> Mask:
    """LTH-Iter: `cycles` (default 5) cycles of training from θ0 under the current mask with `cycle_recipe`,
    each followed by layer-wise magnitude pruning of the trained weights (see the module doc)."""
    spec, workdir = ctx.spec, ctx.workdir
    if workdir is None or not spec.get("cycle_recipe"):
        raise MaskError("lth_iter needs a work directory for its trainings and `cycle_recipe` (the recipe's settings)")
    cycles = int(spec.get("cycles", 5))
    os.makedirs(workdir, exist_ok=True)
    mask = None
    for c in range(1, cycles + 1):
        run = cycle_spec(spec, workdir, c)
        state = weights_io.load(_trained(run, run["name"]))
        missing = [k for k in ctx.weights if k not in state]
        if missing:
            raise MaskError(f"lth_iter: cycle {c}'s final.pt lacks the weights {missing[:5]}")
        mask = magnitude_prune({k: state[k] for k in ctx.weights}, cycle_sparsity(ctx.sparsity, c, cycles),
                               mask, "layer")
        mask.save(f"{workdir}/mask{c}.pt", cycle=c, cycles=cycles, sparsity=cycle_sparsity(ctx.sparsity, c, cycles))
        print(f"lth_iter: cycle {c}/{cycles}: sparsity {mask.sparsity:.6f}")
    return mask
