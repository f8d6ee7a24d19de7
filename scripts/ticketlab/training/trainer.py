"""One training run: dense training or the re-training of a masked ticket with its tweaks (the spec's keys:
ticketlab.training). Everything is built in Run.__init__; Run.run trains the remaining epochs, writing a
checkpoint after each, and writes the results; train_epoch is the step loop."""
from __future__ import annotations

import contextlib
import csv
import json
import os
import sys
import tempfile
import time
from types import SimpleNamespace

import torch
import torch.nn.functional as F

from .. import layout, weights_io
from ..specs import Recipe, RunSpec, SpecError
from .. import tweaks as tweak_registry
from ..masks import Mask
from ..progress import progress_bar
from .batches import Data, evaluate
from . import checkpoint
from .checkpoint import TERMINATED, atomic_save, sigterm_flag, spec_hash
from .numerics import Fast, Tally, TrainingError, pick_device
from .schedule import lr_at, step_counts
from .weights import build, load_weights, state_param_counts

# the parts of a run's time (summary.json "timing", make bench BENCH=--profile-job): job_start = from the job's
# process start (interpreter, Snakemake's script preamble, job-server hand-over) to this run's creation
TIMING = ("job_start", "data", "build", "init_tweaks", "train_steps", "eval", "monitors", "checkpoint_writes",
          "weights_writes", "summary_writes")


class Callback:
    """A measurement taken during training (e.g. the trajectory analyses' monitors,
    ticketlab.analysis.trajectory), passed in by the caller so that training imports no analysis code.
    Its `state()` goes into the checkpoint and comes back to `setup` on resume, so a resumed run continues
    its series; a run with callbacks stays uncompiled (they may differentiate twice)."""
    name = "callback"

    def setup(self, run: Run, state) -> None:
        """Called once the run is built (resumed or not); `state`: what state() returned at the checkpoint."""

    def on_step(self, run: Run, step: int, progress: float) -> None:
        """Before global step `step`'s forward pass, `progress` epochs into training."""

    def on_epoch(self, run: Run, row: dict) -> None:
        """After an epoch's evaluation; may add columns to its metrics row."""

    def state(self):
        return None


def epoch_bar(total: int, name: str):
    """A tqdm bar over the epochs when stderr is a terminal; None in logs (one plain line per epoch there)."""
    return progress_bar(total, os.path.basename(name.rstrip("/")) or "run", unit="epoch")


class Run:
    """A run built from its spec in `outdir`: data on the device, the model (its init drawn or loaded, the mask
    applied, the tweaks' on_init), the optimiser, the live mask, resumed from checkpoint.pt when that was
    written for the same spec. run() trains the remaining epochs and writes the results; callbacks measure
    during training; job_started: when the job's process started (time.time()), for timing["job_start"]."""

    def __init__(self, spec: dict | RunSpec, outdir: str, threads: int = 1, log=print,
                 callbacks: list[Callback] = (), job_started: float | None = None):
        try:
            self.spec = spec = RunSpec.from_dict(spec)
        except SpecError as e:
            raise TrainingError(str(e)) from e
        self.params = spec.params()  # the job's identity: checkpoint hash, summary, what tweaks read (ctx.spec)
        self.outdir, self.log, self.callbacks = outdir, log, list(callbacks)
        self.job_started = job_started
        self.name = spec.name or outdir
        torch.set_num_threads(max(1, threads))
        self.device = pick_device(spec.device)
        self.fast = Fast({"name": self.name, **spec.fast}, self.device)
        if self.device.type == "cpu":
            torch.use_deterministic_algorithms(True, warn_only=True)
        elif self.device.type == "cuda":
            # autotuned conv algorithms (cuda runs are not bitwise reproducible anyway)
            torch.backends.cudnn.benchmark = True
        os.makedirs(outdir, exist_ok=True)
        self.ckpt_path = os.path.join(outdir, layout.CHECKPOINT)
        self.hash = spec_hash(self.params)
        self.timing = dict.fromkeys(TIMING, 0.0)  # seconds per part of the run (summary.json, make bench)
        self._inner: list[float] = []
        if job_started is not None:
            self.timing["job_start"] = max(0.0, time.time() - job_started)
        with self.timed("data"):
            self.data = Data(spec.data, self.device)
        with self.timed("build"):
            self._build()

    def _build(self):
        spec, r = self.spec, self.spec.recipe
        torch.manual_seed(spec.seed)
        self.model, self.tweaks = build(spec, self.data)
        init = spec.init
        if init.reinit:  # random re-initialisation: a fresh draw that differs from the ticket's
            torch.manual_seed(spec.seed + 1_000_003 if init.reinit_seed is None else init.reinit_seed)
            self.model, self.tweaks = build(spec, self.data)
        elif init.source == "file":
            load_weights(self.model, init.path)
        self.fast.place(self.model.to(self.device))
        self.target_mask = Mask.load(spec.mask, self.model).to(self.device) if spec.mask else Mask()
        self.mask = Mask({k: m.clone() for k, m in self.target_mask.items()})  # the live mask
        if not any(getattr(t, "needs_unpruned_init", False) for t in self.tweaks):
            self.mask.apply_(self.model)
        empty = self.mask.report()["empty_layers"] if self.mask else []
        if empty:
            self.log(f"[{self.name}] WARNING: the mask prunes these layers to nothing (no signal passes them "
                     f"except through shortcuts): {empty}")
        self.steps_per_epoch, self.epochs, self.total_steps = step_counts(r, len(self.data.split["train"][1]),
                                                                          self.name)
        self.g = torch.Generator().manual_seed(spec.seed if spec.order_seed is None else spec.order_seed)
        self.opt = self._optimizer(r)
        spe, total = self.steps_per_epoch, self.total_steps
        self.ctx = SimpleNamespace(spec=self.params, device=self.device, num_classes=self.data.num_classes, log={},
                                   batches=self.data.sampler(r.batch_size, r.augment, self.g),
                                   teacher=self._teacher, mask=self.mask, target_mask=self.target_mask,
                                   opt=self.opt, steps_per_epoch=spe, total_steps=total, step=0, gradient_flow=None,
                                   lr_at=lambda step: lr_at(r, step // spe, step, spe, total))
        self.rows, self.epoch = [], spec.start_epoch
        self.start_epoch = self.epoch
        self.within = None  # position inside an epoch to resume from (a SIGTERM checkpoint)
        self.stop = {"term": False}
        callback_state = {}
        self.resumed = os.path.exists(self.ckpt_path) and checkpoint.resume(self, callback_state)
        if not self.resumed:
            with self.timed("init_tweaks"):
                for t in self.tweaks:
                    t.on_init(self.model, self.mask, self.ctx)
            self.mask.apply_(self.model)
        self._remasked()
        self.step_hooks = [t for t in self.tweaks if tweak_registry.overrides(t, "on_train_step")]
        self.backward_hooks = [t for t in self.tweaks if tweak_registry.overrides(t, "after_backward")]
        self.after_step_hooks = [t for t in self.tweaks if tweak_registry.overrides(t, "after_step")]
        for cb in self.callbacks:
            cb.setup(self, callback_state.get(cb.name))
        losses = [t.loss(self.ctx) for t in self.tweaks]
        losses = [f for f in losses if f is not None]
        self.loss_fn = losses[0] if losses else (lambda logits, y, x: F.cross_entropy(logits, y))
        self.compiled = self.fast.compile and not self.step_hooks and not self.callbacks
        if self.compiled:
            self.model.compile()  # in place: the state dict keeps its keys
        elif self.fast.compile:
            self.log(f"[{self.name}] compile: staying eager (on_train_step tweaks change the model every step; "
                     f"the monitors differentiate twice, which compiled graphs do not)")

    def _optimizer(self, r: Recipe) -> torch.optim.Optimizer:
        """SGD; recipe.no_decay_bn_bias: no weight decay on 1-d parameters (BN affine, biases)."""
        decay, no_decay = [], []
        for k, p in self.model.named_parameters():
            (no_decay if p.ndim <= 1 and r.no_decay_bn_bias else decay).append(p)
        return torch.optim.SGD([{"params": decay, "weight_decay": r.weight_decay},
                                {"params": no_decay, "weight_decay": 0.0}],
                               lr=r.lr, momentum=r.momentum, nesterov=r.nesterov,
                               **({"fused": True} if self.device.type == "cuda" else {}))

    @contextlib.contextmanager
    def timed(self, part: str):
        """Adds the block's seconds to timing[part], less those of timed blocks inside it (counted there)."""
        t0 = time.perf_counter()
        self._inner.append(0.0)
        try:
            yield
        finally:
            dt, inner = time.perf_counter() - t0, self._inner.pop()
            self.timing[part] += dt - inner
            if self._inner:
                self._inner[-1] += dt

    def path(self, name: str) -> str:
        return os.path.join(self.outdir, name)

    def _teacher(self):
        teacher, _ = build(self.spec, self.data, with_tweaks=False)
        load_weights(teacher, self.spec.teacher)
        return teacher.to(self.device).eval()

    def _remasked(self, before: Mask | None = None):
        """After the live mask changed (or was set up): the (parameter, mask) pairs that the training step
        multiplies, and, for connections whose state changed, zeroed weights and momentum (a regrown
        connection starts from zero, a dropped one keeps no velocity)."""
        params = dict(self.model.named_parameters())
        # each mask in its parameter's dtype and memory format (channels-last weights: the foreach kernels'
        # fast path needs equal strides)
        self.masked = [(params[k], torch.empty_like(params[k]).copy_(m)) for k, m in self.mask.items()]
        if before is None:
            return
        with torch.no_grad():
            for k, m in self.mask.items():
                changed = m != before[k] if k in before else torch.ones_like(m)
                if changed.any():
                    p = params[k]
                    p.mul_(m)
                    buf = self.opt.state.get(p, {}).get("momentum_buffer")
                    if buf is not None:
                        buf.masked_fill_(changed, 0.0)

    def save_checkpoint(self, within: dict | None = None):
        """Everything a resumed run needs (checkpoint.write); `within`: the position inside the current epoch."""
        with self.timed("checkpoint_writes"):
            checkpoint.write(self, within)

    def _save_weights(self, name: str, export: bool = False) -> dict:
        """Write the state dict (through the tweaks' export when asked) to `name`; returns what was written."""
        with self.timed("weights_writes"):
            state = {k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}  # not channels-last
            if export:
                for t in self.tweaks:
                    state = t.export(state)
            atomic_save(weights_io.pack(state), self.path(name))  # a pruned run's by its non-zero entries
        return state

    def train_epoch(self) -> tuple[float, float]:
        """One epoch, or what a mid-epoch resume left of it. Returns (mean training loss, accuracy in %)."""
        r, model = self.spec.recipe, self.model
        model.train()
        epoch_rng = self.g.get_state()
        within, self.within = self.within or {"step": 0, "totals": (0.0, 0, 0)}, None
        tally = Tally(within["totals"], self.device, self.fast.sync_free)
        for step, (x, y) in enumerate(self.data.train_batches(r.batch_size, r.augment, self.g)):
            if step < within["step"]:  # resumed mid-epoch: these batches were drawn (same draws) and trained on
                continue
            gstep = self.epoch * self.steps_per_epoch + step
            if gstep >= self.total_steps:
                break
            self._before_step(gstep, step)
            x = self.fast.inputs(x)
            with self.fast.autocast():
                out = model(x)
                loss = self.loss_fn(out, y, x)
            tally.check(loss, f"{self.name}: loss is {{}} at epoch {self.epoch + 1}, step {step}", step)
            self.opt.zero_grad(set_to_none=False)
            loss.backward()
            self._hooks(self.backward_hooks, "after_backward", gstep)  # gradual pruning, RST: before the step
            self._masked_step()
            self._hooks(self.after_step_hooks, "after_step", gstep)  # SET / RigL: the step was under the old mask
            tally.add(loss, out, y)
            if self.stop["term"]:
                self._raise_nonfinite(tally)
                self.save_checkpoint({"rng": epoch_rng, "step": step + 1, "totals": tally.totals()})
                self.log(f"[{self.name}] SIGTERM: checkpoint written at epoch {self.epoch + 1}, step {step + 1}; "
                         f"exiting")
                sys.exit(TERMINATED)
        self._raise_nonfinite(tally)
        return tally.means()

    def _before_step(self, gstep: int, step: int) -> None:
        """The step's learning rate, then the on_train_step tweaks and the callbacks (progress in epochs)."""
        self.ctx.step = gstep
        lr = lr_at(self.spec.recipe, self.epoch, gstep, self.steps_per_epoch, self.total_steps)
        for group in self.opt.param_groups:
            group["lr"] = lr
        progress = self.epoch + step / self.steps_per_epoch
        for t in self.step_hooks:
            t.on_train_step(self.model, progress, self.ctx)
        for cb in self.callbacks:
            cb.on_step(self, gstep, progress)

    def _hooks(self, tweaks: list, method: str, gstep: int) -> None:
        """Call a mask-changing hook of every tweak that has it; a changed mask is re-applied (_remasked)."""
        if tweaks:
            before = {k: m.clone() for k, m in self.mask.items()}
            if any([getattr(t, method)(self.model, gstep, self.ctx) for t in tweaks]):
                self._remasked(before)

    def _masked_step(self) -> None:
        """The optimiser step under the live mask: masked gradients in, masked weights out."""
        if self.masked:
            torch._foreach_mul_([p.grad for p, _ in self.masked], [m for _, m in self.masked])
        self.opt.step()
        if self.masked:
            with torch.no_grad():
                torch._foreach_mul_([p for p, _ in self.masked], [m for _, m in self.masked])

    def _raise_nonfinite(self, tally: Tally) -> None:
        """The sync-free path's deferred loss check: the epoch's first step with a non-finite loss."""
        step = tally.first_nonfinite()
        if step is not None:
            raise TrainingError(f"{self.name}: loss is not finite at epoch {self.epoch + 1}, step {step}")

    def run(self) -> dict:
        save_epochs = set(self.spec.save_epochs)
        last = min(self.epochs, self.spec.stop_after or self.epochs)
        if not self.resumed and self.spec.save_init:
            self._save_weights(layout.INIT)
        t0, first = time.time(), self.epoch
        bar = epoch_bar(last - first, self.name)
        try:
            with sigterm_flag(self.stop):
                while self.epoch < last:
                    line = self._epoch(save_epochs)
                    eta = (time.time() - t0) / (self.epoch - first) * (last - self.epoch)
                    line = f"epoch {self.epoch}/{last} {line}, ETA {eta:.0f}s)"
                    if bar is not None:
                        bar.set_postfix_str(line.split(" ", 2)[2], refresh=False)
                        bar.update()
                    else:
                        self.log(f"[{self.name}] {line}")
                    if self.stop["term"]:  # arrived during evaluation: the epoch's checkpoint is written
                        self.log(f"[{self.name}] SIGTERM: checkpoint written after epoch {self.epoch}; exiting")
                        sys.exit(TERMINATED)
        finally:
            if bar is not None:
                bar.close()
        return self.finish(time.time() - t0)

    def _epoch(self, save_epochs: set) -> str:
        """Train an epoch, evaluate, measure (callbacks), save a rewind point, checkpoint; the progress line."""
        r, te = self.spec.recipe, time.time()
        lr = lr_at(r, self.epoch, self.epoch * self.steps_per_epoch, self.steps_per_epoch, self.total_steps)
        with self.timed("train_steps"):
            train_loss, train_acc = self.train_epoch()
        self.epoch += 1
        with self.timed("eval"):
            ev = {s: evaluate(self.model, self.data, s, r.eval_batch_size, self.fast)
                  for s in ("val", "test")}
        self.rows.append({"epoch": self.epoch, "lr": lr, "train_loss": train_loss, "train_acc": train_acc,
                          "val_loss": ev["val"][0], "val_acc": ev["val"][1], "test_loss": ev["test"][0],
                          "test_acc": ev["test"][1], "seconds": time.time() - te})
        with self.timed("monitors"):
            for cb in self.callbacks:
                cb.on_epoch(self, self.rows[-1])
        if self.epoch in save_epochs:
            self._save_weights(layout.rewind_name(self.epoch))
        self.save_checkpoint()
        return (f"lr {lr:.4g} loss {train_loss:.3f} train {train_acc:.2f}% val {ev['val'][1]:.2f}% "
                f"test {ev['test'][1]:.2f}% ({time.time() - te:.1f}s")

    def finish(self, seconds: float) -> dict:
        exported = self._save_weights(layout.FINAL, export=self.spec.export)
        t_write = time.perf_counter()
        with open(self.path(layout.METRICS), "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(self.rows[0]))
            w.writeheader()
            w.writerows(self.rows)
        best = max(self.rows, key=lambda row: (row["val_acc"], -row["epoch"]))
        measured = (1.0 - sum(int((p != 0).sum()) for p, _ in self.masked) /
                    max(1, sum(p.numel() for p, _ in self.masked))) if self.masked else 0.0
        mask_sparsity = self.mask.sparsity if self.mask else 0.0
        summary = {"name": self.name, "best_val_epoch": best["epoch"], "val_acc_best": best["val_acc"],
                   "test_acc_best_val": best["test_acc"], "test_acc_last": self.rows[-1]["test_acc"],
                   "test_loss_last": self.rows[-1]["test_loss"], "epochs": self.epoch - self.start_epoch,
                   "measured_sparsity": measured, "mask_sparsity": mask_sparsity, "train_seconds": seconds,
                   "params": state_param_counts(self.model, exported, self.mask),
                   "tweak_log": self.ctx.log, "numerics": self.fast.resolved(self.compiled), "spec": self.params}
        self.timing["summary_writes"] += time.perf_counter() - t_write  # up to here: the JSON write itself is tiny
        summary["timing"] = {k: round(v, 4) for k, v in self.timing.items()}
        summary["clock"] = {"process_started": self.job_started, "finished": time.time()}  # absolute (time.time())
        with open(self.path(layout.SUMMARY), "w") as f:
            json.dump(summary, f, indent=1)
        if os.path.exists(self.ckpt_path):
            os.remove(self.ckpt_path)
        return summary


def initial_weights(spec: dict | RunSpec, threads: int = 1) -> dict:
    """The state dict (on the CPU) a run starts training from: its init drawn or loaded, the tweaks'
    on_init, the mask applied. Rebuilt from the spec without training, by the run's own construction in a
    scratch directory (no checkpoint there to resume), so it is exactly what the run started from."""
    with tempfile.TemporaryDirectory() as scratch:
        r = Run(spec, scratch, threads, log=lambda *a: None)
        return {k: v.detach().cpu().contiguous().clone() for k, v in r.model.state_dict().items()}


def run(spec: dict | RunSpec, outdir: str, threads: int = 1, callbacks: list[Callback] = (),
        job_started: float | None = None) -> dict:
    return Run(spec, outdir, threads, callbacks=callbacks, job_started=job_started).run()
