"""One training run: dense training or the re-training of a masked ticket with its tweaks.

A run is described by a JSON-able `spec` (built by `ticketlab.plan` from the configuration):
    data      prepared .npz (ticketlab.data)
    model     {arch, width, ...}                     -> ticketlab.models.build_model
    recipe    {epochs, batch_size, lr, momentum, weight_decay, nesterov, milestones, gamma,
               augment: {crop_pad, flip}, eval_batch_size, schedule (step | cosine), warmup {epochs, lr, shape},
               steps (stop after this many optimisation steps, cutting the last epoch short)}
               The learning rate is a pure function of the step (lr_at), so a resumed run needs no scheduler state.
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
    monitor      measurements during training (the `trajectory` analyses), or null: top Hessian eigenvalue
                 after every epoch (mean over `hessian_batches` fixed training batches) and the gradient
                 flow every `gradflow_every` steps on `gradflow_examples` fixed training examples
    precision, channels_last, compile   the device's numerics (Fast: bf16 autocast and channels-last on cuda
                 by default, torch.compile when asked), each present only when not at its default (FAST_DEFAULTS)
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
"""
from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import math
import os
import signal
import sys
import time
from types import SimpleNamespace

import numpy as np
import torch
import torch.nn.functional as F

from . import tweaks as tweak_registry
from .defaults import FAST_CHOICES, FAST_DEFAULTS, MONITOR_DEFAULTS  # noqa: F401  (torch-free, shared with planning)
from .masks import Mask
from .models import build_model
from .progress import progress_bar


class TrainingError(RuntimeError):
    pass


# the parts of a run's time (summary.json "timing", make bench BENCH=--profile-job): job_start = from the job's
# process start (interpreter, Snakemake's script preamble, job-server hand-over) to this run's creation
TIMING = ("job_start", "data", "build", "init_tweaks", "train_steps", "eval", "monitors", "checkpoint_writes",
          "weights_writes", "summary_writes")
JOB_STARTED: float | None = None  # set by ticketlab.jobs: when the job's process started (time.time())


def epoch_bar(total: int, name: str):
    """A tqdm bar over the epochs when stderr is a terminal; None in logs (one plain line per epoch there)."""
    return progress_bar(total, os.path.basename(name.rstrip("/")) or "run", unit="epoch")


class Fast:
    """The device-specific numerics of a run, resolved from its spec (FAST_DEFAULTS for absent keys):
    precision auto = bf16 autocast on cuda, fp32 elsewhere (bf16 = autocast on any device; weights,
    gradients and optimiser state stay fp32 either way, so no loss scaling); channels_last auto = on
    cuda only; compile = torch.compile of the model, on cuda only and only for runs without
    `on_train_step` tweaks (they change plain float attributes every step, which would recompile) and
    without monitors (Hessian-vector products differentiate twice, which compiled graphs do not).
    On a CPU run at the defaults every method is the identity: the CPU path computes what it did
    before these settings existed, bit for bit."""

    def __init__(self, spec: dict, device: torch.device):
        s = {**FAST_DEFAULTS, **{k: spec[k] for k in FAST_DEFAULTS if k in spec}}
        for k, choices in FAST_CHOICES.items():
            if not any(type(s[k]) is type(c) and s[k] == c for c in choices):  # 1 is not True here
                raise TrainingError(f"{spec.get('name', '<run>')}: {k} must be one of {list(choices)}, not {s[k]!r}")
        cuda = device.type == "cuda"
        self.device = device
        self.bf16 = s["precision"] == "bf16" or (s["precision"] == "auto" and cuda)
        self.channels_last = s["channels_last"] is True or (s["channels_last"] == "auto" and cuda)
        self.compile = s["compile"] and cuda
        self.sync_free = cuda  # no host-device synchronisation per step (loss and accuracy summed on the device)

    def autocast(self):
        """The context of forward and loss: bf16 autocast, or nothing."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16) if self.bf16 else contextlib.nullcontext()

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        """A batch in the model's memory format."""
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.ndim == 4 else x

    def place(self, model):
        """The model in channels-last memory format where asked (in place: the parameters stay the same
        objects, so an optimiser built before or after sees them)."""
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        return model

    def resolved(self, compiled: bool) -> dict:
        """What the run used (for summary.json: `auto` settings depend on the machine). tf32: whether cuDNN
        may run the fp32 convolutions in TF32 (torch's default on cuda, left as it is), so "fp32" on a GPU
        says what it was."""
        cuda = self.device.type == "cuda"
        return {"device": self.device.type, "precision": "bf16" if self.bf16 else "fp32",
                "channels_last": self.channels_last, "compile": compiled,
                "tf32": bool(cuda and torch.backends.cudnn.allow_tf32)}


def spec_hash(spec: dict) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def lr_at(recipe: dict, epoch: int, step: int, steps_per_epoch: int, total_steps: int) -> float:
    """The learning rate for global step `step` (in epoch `epoch`, 0-based): an optional warm-up
    (constant at warmup.lr, or linear from warmup.lr to lr, over warmup.epochs), then the schedule:
    `step` multiplies lr by gamma at every milestone epoch reached (as torch's MultiStepLR, same
    arithmetic), `cosine` decays lr to 0 over all steps (half a cosine, per step)."""
    base, warm = recipe["lr"], recipe.get("warmup") or {}
    if warm.get("epochs") and epoch < warm["epochs"]:
        if warm.get("shape", "constant") == "linear":
            return warm["lr"] + (base - warm["lr"]) * step / (warm["epochs"] * steps_per_epoch)
        return warm["lr"]
    if recipe.get("schedule", "step") == "cosine":
        return base * 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps))
    lr = base
    for m in recipe["milestones"]:
        if epoch >= m:
            lr *= recipe.get("gamma", 0.1)
    return lr


def atomic_save(obj, path: str) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    torch.save(obj, tmp)
    os.replace(tmp, path)


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


class Data:
    """The prepared dataset as uint8 tensors on the device; batches are augmented and normalised there."""

    def __init__(self, path: str, device: torch.device):
        z = np.load(path)
        self.device = device
        self.split = {s: (torch.from_numpy(z[f"x_{s}"]).to(device), torch.from_numpy(z[f"y_{s}"]).long().to(device))
                      for s in ("train", "val", "test")}
        self.mean = torch.tensor(z["mean"], dtype=torch.float32, device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(z["std"], dtype=torch.float32, device=device).view(1, -1, 1, 1)
        self.num_classes = int(z["num_classes"])
        self.in_channels, self.input_size = self.split["train"][0].shape[1], self.split["train"][0].shape[2]

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float() / 255.0 - self.mean) / self.std

    def augment(self, x: torch.Tensor, crop_pad: int, flip: bool, g: torch.Generator) -> torch.Tensor:
        """Random crop with zero padding and horizontal flip, per sample, from generator g."""
        b, c, h, w = x.shape
        if crop_pad:
            xp = F.pad(x, (crop_pad,) * 4)
            oy, ox = torch.randint(0, 2 * crop_pad + 1, (2, b), generator=g).to(x.device)
            rows = (oy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
            cols = (ox[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
            x = xp[torch.arange(b, device=x.device)[:, None, None, None],
                   torch.arange(c, device=x.device)[None, :, None, None], rows, cols]
        if flip:
            f = (torch.rand(b, generator=g) < 0.5).to(x.device)[:, None, None, None]
            x = torch.where(f, x.flip(3), x)
        return x

    def train_batches(self, batch_size: int, augment: dict, g: torch.Generator):
        x, y = self.split["train"]
        order = torch.randperm(len(y), generator=g).to(x.device)
        for i in range(0, len(y), batch_size):
            idx = order[i:i + batch_size]
            yield (self.normalize(self.augment(x[idx], augment.get("crop_pad", 0), augment.get("flip", False), g)),
                   y[idx])

    def sampler(self, batch_size: int, augment: dict, g: torch.Generator):
        """An endless source of training batches (used by tweaks that need data at init)."""
        it = iter(())

        def next_batch():
            nonlocal it
            try:
                return next(it)
            except StopIteration:
                it = self.train_batches(batch_size, augment, g)
                return next(it)
        return next_batch


@torch.inference_mode()  # lighter than no_grad: no version counters; nothing computed here is trained on
def evaluate(model, data: Data, split: str, batch_size: int = 1000, fast: Fast | None = None) -> tuple[float, float]:
    """(mean cross-entropy, accuracy in %) on a split, BN in eval mode, no augmentation; with `fast`, the
    forward pass in the run's precision and memory format (the loss in fp32)."""
    model.eval()
    x, y = data.split[split]
    loss, correct = 0.0, 0
    for i in range(0, len(y), batch_size):
        inputs = data.normalize(x[i:i + batch_size])
        with fast.autocast() if fast else contextlib.nullcontext():
            out = model(fast.inputs(inputs) if fast else inputs)
        out = out.float() if fast and fast.bf16 else out
        loss += F.cross_entropy(out, y[i:i + batch_size], reduction="sum").item()
        correct += (out.argmax(1) == y[i:i + batch_size]).sum().item()
    return loss / len(y), 100.0 * correct / len(y)


def load_weights(model, path: str, allow_missing_extra: bool = True) -> None:
    """Load a state dict; keys the file lacks are allowed only for tweak-added (extra) modules."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        missing, unexpected = model.load_state_dict(state, strict=False)
    except (RuntimeError, OSError, KeyError) as e:
        raise TrainingError(f"{path}: weights do not fit the model ({str(e).strip()[:500]})") from e
    extra = {f"{m}." for m, mod in model.named_modules() if getattr(mod, "ticketlab_extra", False)}
    bad = [k for k in missing if not (allow_missing_extra and any(k.startswith(e) for e in extra))]
    if bad or unexpected:
        raise TrainingError(f"{path}: weights do not fit the model (missing {bad[:5]}, unexpected {unexpected[:5]})")


def fixed_examples(data: Data, n: int, seed: int, split: str = "train"):
    """n examples of a split chosen by seed (all when n is 0 or too large), normalised, not augmented."""
    x, y = data.split[split]
    idx = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))[:n or len(y)].to(x.device)
    return data.normalize(x[idx]), y[idx]


def build(spec: dict, data: Data, with_tweaks: bool = True):
    tweaks = tweak_registry.build(spec.get("tweaks", {})) if with_tweaks else []
    kwargs = dict(spec["model"])
    for t in tweaks:
        kwargs.update(t.model_kwargs())
    if spec.get("match_params_of"):
        from .small_dense import matched_kwargs
        kwargs = matched_kwargs(kwargs, data, spec["match_params_of"])
    arch = kwargs.pop("arch")
    model = build_model(arch, data.num_classes, in_channels=data.in_channels, input_size=data.input_size, **kwargs)
    return model, tweaks


class Run:
    def __init__(self, spec: dict, outdir: str, threads: int = 1, device: str = "auto", log=print):
        self.spec, self.outdir, self.log = spec, outdir, log
        self.name = spec.get("name", outdir)
        torch.set_num_threads(max(1, threads))
        self.device = pick_device(spec.get("device", device))
        self.fast = Fast(spec, self.device)
        if self.device.type == "cpu":
            torch.use_deterministic_algorithms(True, warn_only=True)
        elif self.device.type == "cuda":
            # autotuned conv algorithms (cuda runs are not bitwise reproducible anyway)
            torch.backends.cudnn.benchmark = True
        os.makedirs(outdir, exist_ok=True)
        self.ckpt_path = os.path.join(outdir, "checkpoint.pt")
        self.hash = spec_hash(spec)
        self.timing = dict.fromkeys(TIMING, 0.0)  # seconds per part of the run (summary.json, make bench)
        self._inner: list[float] = []
        if JOB_STARTED is not None:
            self.timing["job_start"] = max(0.0, time.time() - JOB_STARTED)

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
        teacher, _ = build({**self.spec, "tweaks": {}}, self.data, with_tweaks=False)
        load_weights(teacher, self.spec["teacher"])
        return teacher.to(self.device).eval()

    def setup(self):
        with self.timed("data"):
            self.data = Data(self.spec["data"], self.device)
        with self.timed("build"):
            self._setup()

    def _setup(self):
        spec, r = self.spec, self.spec["recipe"]
        torch.manual_seed(spec["seed"])
        self.model, self.tweaks = build(spec, self.data)
        init = spec.get("init", {"from": "fresh"})
        if init.get("reinit"):  # random re-initialisation: a fresh draw that differs from the ticket's
            torch.manual_seed(init.get("reinit_seed", spec["seed"] + 1_000_003))
            self.model, self.tweaks = build(spec, self.data)
        elif init["from"] == "file":
            load_weights(self.model, init["path"])
        self.fast.place(self.model.to(self.device))
        self.target_mask = Mask.load(spec["mask"], self.model).to(self.device) if spec.get("mask") else Mask()
        self.mask = Mask({k: m.clone() for k, m in self.target_mask.items()})  # the live mask
        if not any(getattr(t, "needs_unpruned_init", False) for t in self.tweaks):
            self.mask.apply_(self.model)
        empty = self.mask.report()["empty_layers"] if self.mask else []
        if empty:
            self.log(f"[{self.name}] WARNING: the mask prunes these layers to nothing (no signal passes them "
                     f"except through shortcuts): {empty}")
        self.steps_per_epoch = -(-len(self.data.split["train"][1]) // r["batch_size"])
        self.epochs = r["epochs"]
        if r.get("steps"):
            if r["steps"] > self.epochs * self.steps_per_epoch:
                raise TrainingError(f"{self.name}: recipe.steps {r['steps']} needs more than recipe.epochs "
                                    f"{self.epochs} ({self.steps_per_epoch} steps per epoch)")
            self.epochs = -(-r["steps"] // self.steps_per_epoch)
        self.total_steps = r.get("steps") or self.epochs * self.steps_per_epoch
        self.g = torch.Generator().manual_seed(spec.get("order_seed", spec["seed"]))
        decay, no_decay = [], []
        for k, p in self.model.named_parameters():
            (no_decay if p.ndim <= 1 and r.get("no_decay_bn_bias", False) else decay).append(p)
        self.opt = torch.optim.SGD([{"params": decay, "weight_decay": r["weight_decay"]},
                                    {"params": no_decay, "weight_decay": 0.0}],
                                   lr=r["lr"], momentum=r["momentum"], nesterov=r.get("nesterov", False),
                                   **({"fused": True} if self.device.type == "cuda" else {}))
        self.ctx = SimpleNamespace(spec=spec, device=self.device, num_classes=self.data.num_classes, log={},
                                   batches=self.data.sampler(r["batch_size"], r.get("augment", {}), self.g),
                                   teacher=self._teacher, mask=self.mask, target_mask=self.target_mask,
                                   opt=self.opt, steps_per_epoch=self.steps_per_epoch, total_steps=self.total_steps,
                                   step=0, gradient_flow=None)
        self.rows, self.epoch, self.flow = [], int(spec.get("start_epoch", 0)), []
        self.start_epoch = self.epoch
        self.within = None  # position inside an epoch to resume from (a SIGTERM checkpoint)
        self.stop = {"term": False}
        self.resumed = os.path.exists(self.ckpt_path) and self._resume()
        if not self.resumed:
            with self.timed("init_tweaks"):
                for t in self.tweaks:
                    t.on_init(self.model, self.mask, self.ctx)
            self.mask.apply_(self.model)
        self._remasked()
        self.step_hooks = [t for t in self.tweaks if tweak_registry.overrides(t, "on_train_step")]
        self.backward_hooks = [t for t in self.tweaks if tweak_registry.overrides(t, "after_backward")]
        self.after_step_hooks = [t for t in self.tweaks if tweak_registry.overrides(t, "after_step")]
        self._setup_monitor()
        losses = [t.loss(self.ctx) for t in self.tweaks]
        losses = [f for f in losses if f is not None]
        self.loss_fn = losses[0] if losses else (lambda logits, y, x: F.cross_entropy(logits, y))
        self.compiled = self.fast.compile and not self.step_hooks and not self.monitor
        if self.compiled:
            self.model.compile()  # in place: the state dict keeps its keys
        elif self.fast.compile:
            self.log(f"[{self.name}] compile: staying eager (on_train_step tweaks change the model every step; "
                     f"the monitors differentiate twice, which compiled graphs do not)")

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

    def _resume(self) -> bool:
        ck = torch.load(self.ckpt_path, map_location="cpu", weights_only=False)
        if ck["hash"] != self.hash:
            self.log(f"[{self.name}] checkpoint.pt was written for other settings; starting afresh")
            os.remove(self.ckpt_path)
            return False
        self.model.load_state_dict(ck["model"])
        self.opt.load_state_dict(ck["opt"])
        self.g.set_state(ck["rng"])
        for k, m in ck.get("mask", {}).items():
            self.mask[k] = m.to(self.device)
        self.rows, self.epoch, self.ctx.log, self.flow = ck["rows"], ck["epoch"], ck["log"], ck.get("flow", [])
        if ck.get("within"):  # written mid-epoch (SIGTERM): restart the epoch's data order, skip the steps done
            self.g.set_state(ck["within"]["rng"])
            self.within = ck["within"]
        self.log(f"[{self.name}] resumed from checkpoint after epoch {self.epoch}"
                 + (f", step {self.within['step']}" if self.within else ""))
        return True

    def _setup_monitor(self):
        """Fixed batches for the monitors (drawn apart from the training generator, so a monitored run
        trains exactly as the unmonitored one)."""
        m = self.monitor = ({**MONITOR_DEFAULTS, **(self.spec.get("monitor") or {})}
                            if self.spec.get("monitor") else None)
        if not m:
            return
        n, bs = m["hessian_batches"], m["hessian_batch_size"]
        x, y = fixed_examples(self.data, n * bs, m["seed"])
        self.hessian_batches = [(x[i * bs:(i + 1) * bs], y[i * bs:(i + 1) * bs]) for i in range(n) if i * bs < len(y)]
        self.flow_examples = (fixed_examples(self.data, m["gradflow_examples"], m["seed"] + 1)
                              if m["gradflow_every"] else None)
        if self.flow_examples is not None:
            from .analysis.gradflow import gradient_flow
            self.ctx.gradient_flow = lambda model, mask: gradient_flow(model, mask, *self.flow_examples)

    def _top_eigenvalue(self) -> float:
        from .analysis.hessian import top_eigenvalues
        m = self.monitor
        values = [top_eigenvalues(self.model, self.mask, x, y, max_iter=m["hessian_max_iter"],
                                  tol=m["hessian_tol"])[0][0]
                  for x, y in self.hessian_batches]
        return float(np.mean(values))

    def _checkpoint(self, within: dict | None = None):
        """Everything a resumed run needs, written atomically; `within`: the position inside the current
        epoch (its data-order state, steps done, running totals) for a mid-epoch checkpoint."""
        with self.timed("checkpoint_writes"):
            atomic_save({"hash": self.hash, "model": self.model.state_dict(), "opt": self.opt.state_dict(),
                         "rng": self.g.get_state(), "rows": self.rows, "epoch": self.epoch, "log": self.ctx.log,
                         "flow": self.flow, "mask": {k: m.cpu() for k, m in self.mask.items()}, "within": within},
                        self.ckpt_path)

    def _save_weights(self, name: str, export: bool = False) -> dict:
        """Write the state dict (through the tweaks' export when asked) to `name`; returns what was written."""
        with self.timed("weights_writes"):
            state = {k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}  # not channels-last
            if export:
                for t in self.tweaks:
                    state = t.export(state)
            atomic_save(state, self.path(name))
        return state

    def _param_counts(self, state: dict) -> dict:
        """summary.json "params": of the trainable parameters in the written state dict `state` (buffers
        such as BN running statistics left out), how many are non-zero and how many there are; and how many
        weights the live mask keeps (None without a mask)."""
        trainable = {k for k, p in self.model.named_parameters() if p.requires_grad}
        kept = [state[k] for k in state if k in trainable]
        return {"nonzero": sum(int(torch.count_nonzero(v)) for v in kept), "total": sum(v.numel() for v in kept),
                "masked_kept": self.mask.kept if self.mask else None}

    def train_epoch(self) -> tuple[float, float]:
        r, model = self.spec["recipe"], self.model
        model.train()
        epoch_rng = self.g.get_state()
        within, self.within = self.within or {"step": 0, "totals": (0.0, 0, 0)}, None
        total, correct, n = within["totals"]
        # summed on the device (float64: the same arithmetic as Python floats), so that a cuda step needs no
        # host-device synchronisation; cuda checks the loss for the epoch's first non-finite step at its end
        total = torch.tensor(total, dtype=torch.float64, device=self.device)
        correct = torch.tensor(correct, device=self.device)
        nonfinite = torch.tensor(-1, device=self.device)
        steps = self.steps_per_epoch
        every = self.monitor["gradflow_every"] if self.monitor else 0
        for step, (x, y) in enumerate(self.data.train_batches(r["batch_size"], r.get("augment", {}), self.g)):
            if step < within["step"]:  # resumed mid-epoch: these batches were drawn (same draws) and trained on
                continue
            gstep = self.epoch * steps + step
            if gstep >= self.total_steps:
                break
            self.ctx.step = gstep
            lr = lr_at(r, self.epoch, gstep, steps, self.total_steps)
            for group in self.opt.param_groups:
                group["lr"] = lr
            if self.step_hooks:
                progress = self.epoch + step / steps
                for t in self.step_hooks:
                    t.on_train_step(model, progress, self.ctx)
            if every and gstep % every == 0:
                from .analysis.gradflow import gradient_flow
                self.flow.append({"step": gstep, "epoch": self.epoch + step / steps,
                                  "gradient_flow": gradient_flow(model, self.mask, *self.flow_examples)})
            x = self.fast.inputs(x)
            with self.fast.autocast():
                out = model(x)
                loss = self.loss_fn(out, y, x)
            if self.fast.sync_free:
                nonfinite = torch.where((nonfinite < 0) & ~torch.isfinite(loss.detach()), step, nonfinite)
            elif not torch.isfinite(loss):
                raise TrainingError(f"{self.name}: loss is {loss.item()} at epoch {self.epoch + 1}, step {step}")
            self.opt.zero_grad(set_to_none=False)
            loss.backward()
            if self.backward_hooks:
                before = {k: m.clone() for k, m in self.mask.items()}
                if any([t.after_backward(model, gstep, self.ctx) for t in self.backward_hooks]):
                    self._remasked(before)
            if self.masked:
                torch._foreach_mul_([p.grad for p, _ in self.masked], [m for _, m in self.masked])
            self.opt.step()
            if self.masked:
                with torch.no_grad():
                    torch._foreach_mul_([p for p, _ in self.masked], [m for _, m in self.masked])
            if self.after_step_hooks:  # e.g. SET / RigL: the step above was taken under the old mask
                before = {k: m.clone() for k, m in self.mask.items()}
                if any([t.after_step(model, gstep, self.ctx) for t in self.after_step_hooks]):
                    self._remasked(before)
            total += loss.detach().double() * len(y)
            correct += (out.argmax(1) == y).sum()
            n += len(y)
            if self.stop["term"]:
                self._check_finite(nonfinite)
                self._checkpoint({"rng": epoch_rng, "step": step + 1, "totals": (total.item(), correct.item(), n)})
                self.log(f"[{self.name}] SIGTERM: checkpoint written at epoch {self.epoch + 1}, "
                         f"step {step + 1}; exiting")
                sys.exit(143)
        self._check_finite(nonfinite)
        return total.item() / n, 100.0 * correct.item() / n

    def _check_finite(self, nonfinite: torch.Tensor) -> None:
        """The sync-free path's deferred loss check: the epoch's first step with a non-finite loss, or -1."""
        if self.fast.sync_free and nonfinite.item() >= 0:
            raise TrainingError(f"{self.name}: loss is not finite at epoch {self.epoch + 1}, step {nonfinite.item()}")

    def run(self) -> dict:
        self.setup()
        r, save_epochs = self.spec["recipe"], set(self.spec.get("save_epochs", []))
        last = min(self.epochs, self.spec.get("stop_after") or self.epochs)
        if not self.resumed and self.spec.get("save_init"):
            self._save_weights("init.pt")
        t0 = time.time()
        first = self.epoch
        bar = epoch_bar(last - first, self.name)
        old = signal.signal(signal.SIGTERM, lambda *a: self.stop.update(term=True))
        try:
            while self.epoch < last:
                te = time.time()
                lr = lr_at(r, self.epoch, self.epoch * self.steps_per_epoch, self.steps_per_epoch, self.total_steps)
                with self.timed("train_steps"):
                    train_loss, train_acc = self.train_epoch()
                self.epoch += 1
                with self.timed("eval"):
                    ev = {s: evaluate(self.model, self.data, s, r.get("eval_batch_size", 1000), self.fast)
                          for s in ("val", "test")}
                self.rows.append({"epoch": self.epoch, "lr": lr, "train_loss": train_loss, "train_acc": train_acc,
                                  "val_loss": ev["val"][0], "val_acc": ev["val"][1], "test_loss": ev["test"][0],
                                  "test_acc": ev["test"][1], "seconds": time.time() - te})
                if self.monitor and self.hessian_batches:
                    th = time.time()
                    with self.timed("monitors"):
                        self.rows[-1]["top_eigenvalue"] = self._top_eigenvalue()
                    self.rows[-1]["hessian_seconds"] = time.time() - th
                if self.epoch in save_epochs:
                    self._save_weights(f"rewind_e{self.epoch}.pt")
                self._checkpoint()
                eta = (time.time() - t0) / (self.epoch - first) * (last - self.epoch)
                line = (f"epoch {self.epoch}/{last} lr {lr:.4g} loss {train_loss:.3f} train {train_acc:.2f}% "
                        f"val {ev['val'][1]:.2f}% test {ev['test'][1]:.2f}% ({time.time() - te:.1f}s, ETA {eta:.0f}s)")
                if bar is not None:
                    bar.set_postfix_str(line.split(" ", 2)[2], refresh=False)
                    bar.update()
                else:
                    self.log(f"[{self.name}] {line}")
                if self.stop["term"]:  # arrived during evaluation: the epoch's checkpoint is written
                    self.log(f"[{self.name}] SIGTERM: checkpoint written after epoch {self.epoch}; exiting")
                    sys.exit(143)
        finally:
            signal.signal(signal.SIGTERM, old)
            if bar is not None:
                bar.close()
        return self.finish(time.time() - t0)

    def finish(self, seconds: float) -> dict:
        exported = self._save_weights("final.pt", export=self.spec.get("export", True))
        t_write = time.perf_counter()
        with open(self.path("metrics.csv"), "w", newline="") as f:
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
                   "params": self._param_counts(exported),
                   "tweak_log": self.ctx.log, "numerics": self.fast.resolved(self.compiled), "spec": self.spec}
        self.timing["summary_writes"] += time.perf_counter() - t_write  # up to here: the JSON write itself is tiny
        summary["timing"] = {k: round(v, 4) for k, v in self.timing.items()}
        summary["clock"] = {"process_started": JOB_STARTED, "finished": time.time()}  # absolute (time.time())
        with open(self.path("summary.json"), "w") as f:
            json.dump(summary, f, indent=1)
        if os.path.exists(self.ckpt_path):
            os.remove(self.ckpt_path)
        return summary


def load_trained(spec: dict, weights: str, data: Data, progress: float, device) -> tuple:
    """The model of a run as it was after `progress` epochs, for analysis: built with the run's tweaks,
    the progress-dependent tweak state (ghost gates, PSwish beta) set for that point, the weights loaded
    and masked. Returns (model in eval mode on `device`, mask)."""
    torch.manual_seed(spec["seed"])
    model, tweaks = build(spec, data)
    ctx = SimpleNamespace(spec=spec)
    for t in tweaks:
        if tweak_registry.overrides(t, "on_train_step"):
            t.on_train_step(model, progress, ctx)
    load_weights(model, weights)
    model.to(device)
    mask = Mask.load(spec["mask"], model).to(device) if spec.get("mask") else Mask()
    mask.apply_(model)
    return model.eval(), mask


def initial_weights(spec: dict, threads: int = 1) -> dict:
    """The state dict (on the CPU) a run starts training from: its init drawn or loaded, the tweaks'
    on_init, the mask applied. Rebuilt from the spec without training, by the run's own setup in a
    scratch directory (no checkpoint there to resume), so it is exactly what the run started from."""
    import tempfile
    with tempfile.TemporaryDirectory() as scratch:
        r = Run(spec, scratch, threads, log=lambda *a: None)
        r.setup()
        return {k: v.detach().cpu().contiguous().clone() for k, v in r.model.state_dict().items()}


def run(spec: dict, outdir: str, threads: int = 1) -> dict:
    return Run(spec, outdir, threads).run()
