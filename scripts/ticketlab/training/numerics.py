"""How a run uses its device: which device, the numerics on it (precision, memory format, compilation), and
the epoch's running totals kept on it (Tally)."""
from __future__ import annotations

import contextlib

import torch

from ..defaults import FAST_DEFAULTS, fast_setting_error


class TrainingError(RuntimeError):
    pass


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


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
        bad = fast_setting_error(s)
        if bad:
            raise TrainingError(f"{spec.get('name', '<run>')}: {bad}")
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


class Tally:
    """An epoch's running loss and accuracy, summed on the device (float64: the same arithmetic as Python floats)
    so that a cuda step needs no host-device synchronisation; there (sync_free) a non-finite loss is noted and
    raised at the epoch's end, elsewhere at once."""

    def __init__(self, totals: tuple, device: torch.device, sync_free: bool):
        total, correct, self.n = totals
        self.total = torch.tensor(total, dtype=torch.float64, device=device)
        self.correct = torch.tensor(correct, device=device)
        self.nonfinite = torch.tensor(-1, device=device)
        self.sync_free = sync_free

    def check(self, loss: torch.Tensor, message: str, step: int) -> None:
        if self.sync_free:
            self.nonfinite = torch.where((self.nonfinite < 0) & ~torch.isfinite(loss.detach()), step, self.nonfinite)
        elif not torch.isfinite(loss):
            raise TrainingError(message.format(loss.item()))

    def add(self, loss: torch.Tensor, out: torch.Tensor, y: torch.Tensor) -> None:
        self.total += loss.detach().double() * len(y)
        self.correct += (out.argmax(1) == y).sum()
        self.n += len(y)

    def first_nonfinite(self) -> int | None:
        return int(self.nonfinite.item()) if self.sync_free and self.nonfinite.item() >= 0 else None

    def totals(self) -> tuple:
        return self.total.item(), self.correct.item(), self.n

    def means(self) -> tuple[float, float]:
        return self.total.item() / self.n, 100.0 * self.correct.item() / self.n
