"""Progress a person can read: a tqdm bar where stderr is a terminal (a run by hand, the bench), plain lines
in logs (a Snakemake job's log is a file): k/N, elapsed and an ETA, at most every few seconds and at the end."""
from __future__ import annotations

import sys
import time


def on_terminal() -> bool:
    return sys.stderr.isatty()


def progress_bar(total: int, desc: str, unit: str = "it"):
    """A tqdm bar over `total` steps when stderr is a terminal, else None."""
    if not on_terminal():
        return None
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit=unit, leave=False)


class Progress:
    """Progress of a loop of `total` steps named `what`: update() after each step."""

    def __init__(self, total: int, what: str, every: float = 5.0, log=print):
        self.total, self.what, self.every, self.log = total, what, every, log
        self.done, self.t0 = 0, time.time()
        self.last = self.t0
        self.bar = progress_bar(total, what)

    def update(self, n: int = 1, note: str = "") -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
            if note:
                self.bar.set_postfix_str(note, refresh=False)
            if self.done >= self.total:
                self.bar.close()
            return
        now = time.time()
        if now - self.last >= self.every or self.done >= self.total:
            self.last = now
            eta = (now - self.t0) / self.done * (self.total - self.done)
            self.log(f"{self.what}: {self.done}/{self.total} ({now - self.t0:.0f}s, ETA {eta:.0f}s)"
                     + (f" {note}" if note else ""), flush=True)
