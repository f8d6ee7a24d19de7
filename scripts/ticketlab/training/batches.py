"""The prepared dataset on the device, its training batches (augmented there) and the one evaluation loop."""
from __future__ import annotations

import contextlib

import numpy as np
import torch
import torch.nn.functional as F

from .numerics import Fast


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


def fixed_examples(data: Data, n: int, seed: int, split: str = "train"):
    """n examples of a split chosen by seed (all when n is 0 or too large), normalised, not augmented."""
    x, y = data.split[split]
    idx = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))[:n or len(y)].to(x.device)
    return data.normalize(x[idx]), y[idx]
