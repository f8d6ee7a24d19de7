"""The rules' `script:` entry point: scripts/<job>.py calls main(snakemake, job=<kind>), which describes the
job (a plain dict of JSON values: its inputs and outputs as the rule names them) and runs it (jobs.run_job) in a
child of the local job server, which keeps torch imported (ticketlab.jobserver), or here when the server is off
or out of reach."""
from __future__ import annotations

import os
import sys
import time

from . import jobserver
from .jobs import JOBS, run_job


def describe(smk, job: str) -> dict:
    """What run_job needs of a Snakemake `script:` job, `job` being its kind (one of jobs.JOBS); the rule's name
    travels only for messages. Outputs come as the rule lists them and by the names it gives them."""
    if job not in JOBS:
        raise ValueError(f"rule {smk.rule}: no job of kind {job!r}; kinds: {sorted(JOBS)}")
    return {"job": job, "rule": smk.rule, "started": _process_started(), "log": smk.log[0] if smk.log else None,
            "threads": smk.threads,
            "params": dict(smk.params.items()), "output": list(smk.output), "named_output": dict(smk.output.items()),
            "input": {k: v if isinstance(v, str) else list(v) for k, v in smk.input.items()},
            "id": dict(smk.wildcards.items()).get("id")}


def _process_started() -> float | None:
    """When this process started (time.time()), from /proc: what a job pays before its first line runs."""
    try:
        with open("/proc/self/stat") as f:
            ticks = float(f.read().rpartition(")")[2].split()[19])  # field 22: start time since boot
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return time.time() - uptime + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def main(smk, job: str) -> None:
    """Run the Snakemake job `smk` as a job of kind `job`: in a child of the local job server, or here when the
    server is off or out of reach."""
    desc = describe(smk, job)
    if jobserver.enabled():
        try:
            status = jobserver.submit(desc)
        except (OSError, TimeoutError) as e:
            print(f"ticketlab job server unavailable ({e}); running the job directly", file=sys.stderr)
        else:
            if status:
                sys.exit(status)
            return
    run_job(desc)
