"""A run as one file to share (a "ticket"): its spec, the weights it started from, its mask and its final weights,
as dense state dicts in a plain dict that `torch.load(path, weights_only=True)` reads without ticketlab:

    t = torch.load("ticket.pt", weights_only=True)
    model.load_state_dict(t["final"])          # or t["init"]: the ticket before training
    t["mask"]["layer1.0.conv1.weight"]         # bool, True = kept

`python scripts/export_ticket.py results/runs/<run> ticket.pt`, run in the workflow's working directory (the spec
names its data, init and mask files relative to it)."""
from __future__ import annotations

import json
import os

import torch

from . import weights_io
from .layout import FINAL, SUMMARY
from .masks import Mask
from .specs import RunSpec
from .training import initial_weights

FORMAT = "ticketlab-ticket-1"


def export(run_dir: str, out: str, threads: int = 1) -> dict:
    """Write run_dir's ticket to `out` (atomically) and return it."""
    with open(os.path.join(run_dir, SUMMARY)) as f:
        spec = RunSpec.from_dict(json.load(f)["spec"])
    ticket = {"format": FORMAT, "spec": spec.params(), "init": initial_weights(spec, threads),
              "mask": {k: v.clone() for k, v in Mask.load(spec.mask).items()} if spec.mask else {},
              "final": weights_io.load(os.path.join(run_dir, FINAL))}
    tmp = f"{out}.tmp{os.getpid()}"
    torch.save(ticket, tmp)
    os.replace(tmp, out)
    return ticket
