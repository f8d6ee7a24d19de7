"""Atomic writes, the spec hash a checkpoint is valid for, and SIGTERM (preemption) as a flag the epoch loop
polls: the run then writes a checkpoint at the next step boundary and exits with 143."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import time

import torch

TERMINATED = 143  # exit status after a SIGTERM checkpoint (128 + 15, as the shell reports a SIGTERM death)


def atomic_save(obj, path: str) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    torch.save(obj, tmp)
    os.replace(tmp, path)


def spec_hash(spec: dict) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


@contextlib.contextmanager
def sigterm_flag(stop: dict):
    """While inside: SIGTERM sets stop["term"] instead of killing the process (the handler before is restored)."""
    old = signal.signal(signal.SIGTERM, lambda *a: stop.update(term=True))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def write(run, within: dict | None = None) -> None:
    """Everything a resumed run needs, written atomically to run.ckpt_path; `within`: the position inside the
    current epoch (its data-order state, steps done, running totals) for a mid-epoch checkpoint."""
    atomic_save({"hash": run.hash, "model": run.model.state_dict(), "opt": run.opt.state_dict(),
                 "rng": run.g.get_state(), "rows": run.rows, "epoch": run.epoch, "log": run.ctx.log,
                 "callbacks": {cb.name: cb.state() for cb in run.callbacks},
                 "mask": {k: m.cpu() for k, m in run.mask.items()}, "within": within}, run.ckpt_path)


def resume(run, callback_state: dict) -> bool:
    """Load run.ckpt_path into the freshly built run when it was written for the same spec (else remove it);
    the callbacks' states go to `callback_state`. Returns whether the run resumed."""
    try:
        ck = torch.load(run.ckpt_path, map_location="cpu", weights_only=False)
        missing = {"hash", "model", "opt", "rng", "rows", "epoch", "log"} - set(ck)
        if missing:
            raise ValueError(f"no {sorted(missing)}")
    except Exception as e:  # noqa: BLE001 - truncated, garbage or foreign: any unreadable checkpoint is set aside
        aside = f"{run.ckpt_path}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}"
        os.replace(run.ckpt_path, aside)
        run.log(f"[{run.name}] warning: {run.ckpt_path} is unreadable ({str(e).strip()[:200]}); set aside as "
                f"{os.path.basename(aside)}, starting afresh")
        return False
    if ck["hash"] != run.hash:
        run.log(f"[{run.name}] checkpoint.pt was written for other settings; starting afresh")
        os.remove(run.ckpt_path)
        return False
    run.model.load_state_dict(ck["model"])
    run.opt.load_state_dict(ck["opt"])
    run.g.set_state(ck["rng"])
    for k, m in ck.get("mask", {}).items():
        run.mask[k] = m.to(run.device)
    run.rows, run.epoch, run.ctx.log = ck["rows"], ck["epoch"], ck["log"]
    callback_state.update(ck.get("callbacks", {}))
    if ck.get("within"):  # written mid-epoch (SIGTERM): restart the epoch's data order, skip the steps done
        run.g.set_state(ck["within"]["rng"])
        run.within = ck["within"]
    run.log(f"[{run.name}] resumed from checkpoint after epoch {run.epoch}"
            + (f", step {run.within['step']}" if run.within else ""))
    return True
