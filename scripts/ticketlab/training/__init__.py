"""Training: one run, dense or the re-training of a masked ticket with its tweaks.

A run is described by a ticketlab.specs.RunSpec (its keys, their defaults and the params form that is the
job's identity are defined there, once), built from the JSON-able dict that `ticketlab.plan` writes into the
job's params; Run also takes that dict and rejects a key it does not know.
Writes into `outdir`: final.pt, metrics.csv (one row per epoch), summary.json, init.pt and
rewind_e<k>.pt when asked, and checkpoint.pt after every epoch (atomically; removed on success).
final.pt is the state dict after every tweak's `export` (e.g. ghost skip parameters stripped); tweaks that
override `on_train_step` are called before every optimisation step with the progress in epochs.
A run started again resumes from checkpoint.pt when the checkpoint was written for the same spec. SIGTERM
(preemption) makes the run write a checkpoint after the current step and exit with 143; such a checkpoint
holds the position inside the epoch (the epoch's data-order state and the step), and the resumed run
replays the epoch's batch draws up to it, so it continues exactly where it stopped.

The mask is live: tweaks that override `after_backward` (gradual pruning, RST: before the optimiser step)
or `after_step` (dynamic sparse training: after the step, which was taken under the old mask) may change it
during training; the checkpoint carries it, and the summary reports the final sparsity.
summary.json also records what was trained: "params" = {"nonzero": trainable parameters that are non-zero in
final.pt, tweak-added extras included; "total": trainable parameters in final.pt (after the tweaks' export,
e.g. without ghost skips; buffers such as BN running statistics not counted); "masked_kept": weights the
final live mask keeps, or null without a mask}, and "numerics" = the resolved device numerics (Fast.resolved).

Modules, one concern each: numerics (device, precision, memory format), batches (on-device data, the
evaluation loop), schedule (learning rate, step counts), checkpoint (atomic writes, resume, SIGTERM),
weights (building the model, loading weights, parameter counts), trainer (the run and its step loop).
"""
from .batches import Data, evaluate, fixed_examples
from .checkpoint import atomic_save, spec_hash
from .numerics import Fast, TrainingError, pick_device
from .trainer import TIMING, Callback, Run, initial_weights, run
from .schedule import lr_at
from .weights import architecture, build, live_param_counts, load_trained, load_weights, state_param_counts

__all__ = ["Data", "evaluate", "fixed_examples", "atomic_save", "spec_hash", "Fast", "TrainingError", "pick_device",
           "TIMING", "Callback", "Run", "initial_weights", "run", "lr_at", "architecture", "build",
           "live_param_counts",
           "load_trained", "load_weights", "state_param_counts"]
