"""Training: one run, dense or the re-training of a masked ticket with its tweaks.

A run is described by a JSON-able `spec` (built by `ticketlab.plan` from the configuration):
    data      prepared .npz (ticketlab.data)
    model     {arch, width, ...}                     -> ticketlab.models.build_model
    recipe    {epochs, batch_size, lr, momentum, weight_decay, nesterov, milestones, gamma,
               augment: {crop_pad, flip}, eval_batch_size, schedule (step | cosine), warmup {epochs, lr, shape},
               steps (stop after this many optimisation steps, cutting the last epoch short),
               no_decay_bn_bias (no weight decay on 1-d parameters)}
               The learning rate is a pure function of the step (schedule.lr_at), so a resumed run needs no
               scheduler state.
    seed      int: model init (fresh runs), batch order and augmentation
    order_seed   int or absent: batch order and augmentation instead of `seed` (replicas of a run that share
                 its initialisation and mask but see the data in another order)
    start_epoch  int: the run starts after this epoch of the recipe (weight rewinding that trains T - t epochs
                 with the schedule from epoch t on); default 0
    match_params_of  a mask file, or absent: build the model with its widths reduced until its parameter count
                 matches that ticket's (the small-dense baseline; ticketlab.small_dense)
    mask      path of a mask file, or null (dense)
    init      {"from": "fresh" | "file", "path": weights file, "reinit": bool, "reinit_seed": int}
    tweaks    {name: params}                           -> ticketlab.tweaks
    teacher   path of the teacher's weights (kd), or null
    save_epochs  epochs after which to save the weights (rewind points), 0 = the initialisation
    stop_after   stop after this epoch (the LR schedule stays the full recipe's), or null
    export       write final.pt through the tweaks' export (default true; false keeps e.g. ghost modules)
    monitor      the settings of a `trajectory` analysis's measurements, or absent: read by the caller, which
                 passes them in as callbacks (ticketlab.analysis.trajectory); here they only name the run
    precision, channels_last, compile   the device's numerics (numerics.Fast: bf16 autocast and channels-last
                 on cuda by default, torch.compile when asked), each present only when not at its default
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
from .weights import build, live_param_counts, load_trained, load_weights, state_param_counts

__all__ = ["Data", "evaluate", "fixed_examples", "atomic_save", "spec_hash", "Fast", "TrainingError", "pick_device",
           "TIMING", "Callback", "Run", "initial_weights", "run", "lr_at", "build", "live_param_counts",
           "load_trained", "load_weights", "state_param_counts"]
