"""Weight files (a run's init.pt, rewind points and final.pt) stored by their non-zero entries: a pruned network's
weights are mostly exact zeros, so a tensor that is at least 10% zeros is written as its non-zero values, a bit
per entry saying where they go, and a bit per zero for its sign (a pruned negative weight is -0.0 after the mask's
multiply), and read back to the same tensor bit for bit. A file with no such tensor (a dense run's) is the plain
state dict torch.save writes, as before; files of either kind load with `load`, and with plain
`torch.load(path, weights_only=True)` (the packed form is a dict of tensors, ints and strings)."""
from __future__ import annotations

import numpy as np
import torch

FORMAT = "ticketlab-packed-1"
MIN_ZEROS = 0.1  # a tensor is packed when at least this fraction of its entries are exact zeros (it pays from 1/31)
MIN_NUMEL = 64   # smaller tensors (biases, BN) gain nothing from it


def _bits(b: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(np.packbits(b.flatten().numpy()))


def _unbits(packed: torch.Tensor, n: int) -> torch.Tensor:
    return torch.from_numpy(np.unpackbits(packed.numpy(), count=n).astype(bool))


def pack_bool(m: torch.Tensor) -> dict:
    """A bool tensor (a mask) as a bit per entry."""
    return {"shape": list(m.shape), "bits": _bits(m)}


def unpack_bool(p: dict) -> torch.Tensor:
    return _unbits(p["bits"], int(np.prod(p["shape"]))).reshape(p["shape"])


def pack(state: dict) -> dict:
    """The state dict as written: itself when no tensor is worth packing, else {"format", "order" (the keys), "dense",
    "packed"}."""
    dense, packed = {}, {}
    for k, t in state.items():
        if torch.is_floating_point(t) and t.numel() >= MIN_NUMEL and t.device.type == "cpu":
            zero = t == 0
            if zero.float().mean() >= MIN_ZEROS:
                flat, z = t.flatten(), zero.flatten()
                packed[k] = {"shape": list(t.shape), "values": flat[~z].clone(), "where": _bits(~z),
                             "negative_zero": _bits(torch.signbit(flat[z]))}
                continue
        dense[k] = t
    return {"format": FORMAT, "order": list(state), "dense": dense, "packed": packed} if packed else state


def unpack(obj: dict) -> dict:
    """A state dict from what `pack` wrote (a plain state dict passes through unchanged), in the keys' order."""
    if not (isinstance(obj, dict) and obj.get("format") == FORMAT):
        return obj
    out = dict(obj["dense"])
    for k, p in obj["packed"].items():
        values, n = p["values"], int(np.prod(p["shape"]))
        where = _unbits(p["where"], n)
        flat = torch.zeros(n, dtype=values.dtype)
        flat[where] = values
        zeros = torch.zeros(int((~where).sum()), dtype=values.dtype)
        flat[~where] = torch.where(_unbits(p["negative_zero"], len(zeros)), -zeros, zeros)
        out[k] = flat.reshape(p["shape"])
    return {k: out[k] for k in obj["order"]}


def load(path: str) -> dict:
    """The state dict in a weight file, packed or plain."""
    return unpack(torch.load(path, map_location="cpu", weights_only=True))
