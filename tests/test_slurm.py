"""The SLURM cluster profile end to end: a single-node SLURM brought up on this machine (Debian's
slurm-wlm and munge, `make test` installs them; loopback only; configs, state and logs in a temp
dir), a tiny DAG run through `--profile workflow/profiles/slurm`, the same DAG run locally, and the
artefacts compared. Needs root (munged runs as user munge, slurmd as root). A machine that cannot
start SLURM fails here, with the daemons' logs; TICKETLAB_SKIP_SLURM=1 skips these tests explicitly."""
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import REPO

pytestmark = pytest.mark.workflow  # subprocesses: snakemake, training processes, a job server or SLURM

SNAKEFILE = str(REPO / "workflow" / "Snakefile")
SMOKE = str(REPO / "tests" / "smoke.yaml")
SKIP = os.environ.get("TICKETLAB_SKIP_SLURM") == "1"
SBIN = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])

# One experiment at smoke scale, one table: prepare_data, dense, one IMP mask, one re-training, the table. The
# data and the table run on the submitting node (localrules); the IMP mask shares the submission of the dense run
# it prunes (group), so SLURM sees two jobs. Each class gets its own memory and time so the test can see them in
# SLURM; training asks for a GPU (a fake one: the node's gres is /dev/null, the runs stay on the CPU).
CPUS = min(2, os.cpu_count() or 1)
OVERRIDE = {
    "device": "cpu",
    "targets": ["slurm_tab"],
    "experiments": {"spend": {"seeds": [42], "sparsities": {"imp": [0, 0.36]}}},
    "artefacts": {"slurm_tab": {"kind": "sparsity_table", "title": "SLURM test", "experiment": "spend",
                                "variants": ["lth"]}},
    "resources": {"data": {"mem_mb": 500, "runtime": 5},
                  "train": {"cpus": 1, "mem_mb": 1000, "runtime": 10, "gpus": 1},
                  "mask": {"mem_mb": 600, "runtime": 6},
                  "analysis": {"cpus": 1, "mem_mb": 700, "runtime": 7, "gpus": 0},
                  "artefact": {"cpus": CPUS, "mem_mb": 800, "runtime": 8}},
}
# rules of a submission -> (cpus, memory, time limit, GPUs) that SLURM must show for it: the dense run and its
# mask in series (their times add up; memory and GPUs are the larger job's), the re-training on its own.
EXPECTED = {("dense_demo", "mask"): (1, "1000M", "16:00", "gres:gpu:1"),
            ("retrain",): (1, "1000M", "10:00", "gres:gpu:1")}
RULES = ("prepare_data", "dense_demo", "mask", "retrain", "table")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: Path, n: int = 25) -> str:
    try:
        return f"--- {path.name}:\n" + "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return f"--- {path.name}: (none)"


class Cluster:
    """slurmctld + slurmd + munged, all state under `root`; stopped by their pid files."""

    def __init__(self, root: Path):
        self.root = root
        self.conf = root / "etc" / "slurm.conf"
        self.pidfiles = [root / "run" / "slurmd.pid", root / "run" / "slurmctld.pid", root / "munge" / "munged.pid"]
        self.env = dict(os.environ, SLURM_CONF=str(self.conf), PATH=f"{root / 'bin'}{os.pathsep}{os.environ['PATH']}")

    def fail(self, what: str):
        logs = "\n".join(_tail(p) for p in (self.root / "log" / "slurmctld.log", self.root / "log" / "slurmd.log",
                                            self.root / "munge" / "munged.log"))
        pytest.fail(f"cannot start the test SLURM cluster: {what}\n{logs}\n"
                    "(needs root and Debian's slurm-wlm + munge, which `make test` installs; "
                    "TICKETLAB_SKIP_SLURM=1 skips the SLURM tests)", pytrace=False)

    def start(self):
        root = self.root
        for d in ("etc", "state", "spool", "run", "log", "munge", "bin"):
            (root / d).mkdir(parents=True, exist_ok=True)
        root.chmod(0o755)
        # munged as user munge, with its own key and socket (the system's munge is left alone)
        munge = pwd.getpwnam("munge")
        mdir, key = root / "munge", root / "munge" / "munge.key"
        key.write_bytes(os.urandom(128))
        key.chmod(0o400)
        for p in (mdir, key):
            os.chown(p, munge.pw_uid, munge.pw_gid)
        sock = mdir / "munge.socket"
        self._run(["runuser", "-u", "munge", "--", shutil.which("munged", path=SBIN), f"--socket={sock}",
                   f"--key-file={key}", f"--pid-file={mdir / 'munged.pid'}", f"--log-file={mdir / 'munged.log'}",
                   f"--seed-file={mdir / 'munged.seed'}"], "munged")
        host = socket.gethostname().split(".")[0]
        self.conf.write_text(f"""\
ClusterName=ticketlab-test
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={sock}
CredType=cred/munge
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/run/slurmctld.pid
SlurmdPidFile={root}/run/slurmd.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MinJobAge=600
MpiDefault=none
GresTypes=gpu
NodeName={host} NodeAddr=127.0.0.1 CPUs={os.cpu_count()} RealMemory=4000 Gres=gpu:1 State=UNKNOWN
PartitionName=ticketlab Nodes=ALL Default=YES MaxTime=INFINITE State=UP
""")
        (root / "etc" / "gres.conf").write_text(f"NodeName={host} Name=gpu File=/dev/null\n")
        # The jobstep plugin drops every SLURM_* variable before it calls srun inside a job, so srun
        # would look for the default /etc/slurm/slurm.conf; this cluster's config lives here instead.
        srun = root / "bin" / "srun"
        srun.write_text(f'#!/bin/sh\nSLURM_CONF={self.conf} exec {shutil.which("srun")} "$@"\n')
        srun.chmod(0o755)
        self._run([shutil.which("slurmctld", path=SBIN), "-f", str(self.conf)], "slurmctld")
        self._run([shutil.which("slurmd", path=SBIN), "-f", str(self.conf), "-N", host], "slurmd")
        deadline = time.time() + 60
        while time.time() < deadline:
            state = subprocess.run(["sinfo", "-h", "-o", "%t"], env=self.env, capture_output=True, text=True).stdout
            if state.strip() == "idle":
                return
            time.sleep(1)
        self.fail(f"the node is not idle after 60 s (sinfo: {state.strip()!r})")

    def _run(self, cmd, name):
        p = subprocess.run(cmd, env=self.env, capture_output=True, text=True)
        if p.returncode != 0:
            self.fail(f"{name} exited with {p.returncode}: {p.stdout}{p.stderr}")

    def stop(self):
        subprocess.run(["scancel", "--user", "root"], env=self.env, capture_output=True)
        pids = []
        for f in self.pidfiles:
            try:
                pid = int(f.read_text().strip())
                os.kill(pid, signal.SIGTERM)
                pids.append(pid)
            except (OSError, ValueError):
                pass
        deadline = time.time() + 15
        while pids and time.time() < deadline:
            pids = [p for p in pids if _alive(p)]
            time.sleep(0.2)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        shutil.rmtree(self.root, ignore_errors=True)

    def jobs(self) -> dict[tuple, tuple]:
        """rules -> (state, cpus, memory, time limit, GPUs) of every job this cluster ran. Its comment names them:
        rule_<rule>_wildcards_... for a job, rule_<group id>_<rules>, the group's rules sorted, for a group."""
        fmt = "Comment:200,State:20,NumCPUs:8,MinMemory:10,TimeLimit:12,tres-per-job:30"
        out = subprocess.run(["squeue", "-t", "all", "-h", "-O", fmt], env=self.env, capture_output=True,
                             text=True, check=True).stdout
        rows = {}
        for line in out.splitlines():
            comment, state, cpus, mem, limit, tres = line.split()
            name = comment.removeprefix("rule_").split("_wildcards_")[0]
            rules = tuple(r for r in RULES if name == r or name.endswith(f"_{r}") or f"_{r}_" in name)
            rows[rules] = (state, int(cpus), mem, limit, None if tres == "N/A" else tres)
        return rows


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture(scope="module")
def cluster():
    if SKIP:
        pytest.skip("TICKETLAB_SKIP_SLURM=1")
    missing = [b for b in ("slurmctld", "slurmd", "munged", "sbatch", "squeue", "sinfo", "srun")
               if shutil.which(b, path=SBIN) is None]
    if missing:
        pytest.fail(f"SLURM binaries missing: {missing}; `make test` installs Debian's slurm-wlm and munge "
                    "(TICKETLAB_SKIP_SLURM=1 skips the SLURM tests)", pytrace=False)
    if os.geteuid() != 0:
        pytest.fail("the test SLURM cluster needs root (munged as user munge, slurmd as root); "
                    "TICKETLAB_SKIP_SLURM=1 skips the SLURM tests", pytrace=False)
    c = Cluster(Path(tempfile.mkdtemp(prefix="ticketlab-slurm-", dir="/tmp" if os.path.isdir("/tmp") else None)))
    try:
        c.start()
        yield c
    finally:
        c.stop()


def _snakemake(workdir: Path, *args) -> list[str]:
    return [sys.executable, "-m", "snakemake", "-s", SNAKEFILE, "--directory", str(workdir),
            "--configfile", SMOKE, str(workdir / "override.yaml"), *args]


def _results(work: Path) -> dict[str, Path]:
    return {str(p.relative_to(work)): p for p in sorted((work / "results").rglob("*")) if p.is_file()}


def _without_timings(obj):
    if isinstance(obj, dict):
        return {k: _without_timings(v) for k, v in obj.items()
                if not k.endswith("seconds") and k not in ("timing", "clock")}  # a run's time by part, its clock
    return obj


def test_tiny_dag_on_slurm_matches_a_local_run(cluster, tmp_path):
    t0 = time.time()
    local, remote = tmp_path / "local", tmp_path / "slurm"
    for w in (local, remote):
        w.mkdir()
        (w / "override.yaml").write_text(yaml.safe_dump(OVERRIDE))
    ref = subprocess.run(_snakemake(local, "--cores", "2"), capture_output=True, text=True, cwd=REPO)
    assert ref.returncode == 0, f"local reference run failed:\n{ref.stdout[-3000:]}\n{ref.stderr[-5000:]}"
    t1 = time.time()
    # the profile as a user runs it; partition on the command line, as the README says; no accounting
    # database here, so no account and squeue for the job states (MinJobAge is 600 s)
    cmd = _snakemake(remote, "--profile", str(REPO / "workflow" / "profiles" / "slurm"),
                     "--default-resources", "slurm_partition=ticketlab", "--slurm-no-account",
                     "--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "2")
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=cluster.env, timeout=480)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"the SLURM run did not finish in 480 s:\n{(e.stderr or b'')[-4000:]}\n{cluster.jobs()}")
    assert p.returncode == 0, f"{' '.join(cmd)} failed:\n{p.stdout[-3000:]}\n{p.stderr[-5000:]}"
    print(f"\nlocal run {t1 - t0:.0f} s, SLURM run {time.time() - t1:.0f} s")

    # the training jobs went through SLURM, with their classes' resources from the config, the mask along with
    # the run it prunes; data and table stayed on this node
    jobs = cluster.jobs()
    assert set(jobs) == set(EXPECTED), jobs
    for rules, (cpus, mem, limit, gpus) in EXPECTED.items():
        assert jobs[rules] == ("COMPLETED", cpus, mem, limit, gpus), (rules, jobs[rules])

    # the same files, the same numbers (CPU training is deterministic for a seed; timings aside)
    a, b = _results(local), _results(remote)
    assert set(a) == set(b), set(a) ^ set(b)
    for name, path in a.items():
        if name.startswith("results/logs/") or name.endswith(".pt"):
            continue
        if name.endswith(".csv"):
            pd.testing.assert_frame_equal(pd.read_csv(path).drop(columns=["seconds"], errors="ignore"),
                                          pd.read_csv(b[name]).drop(columns=["seconds"], errors="ignore"))
        elif name.endswith(".json"):
            assert (_without_timings(yaml.safe_load(path.read_text()))
                    == _without_timings(yaml.safe_load(b[name].read_text()))), name
        else:
            assert path.read_bytes() == b[name].read_bytes(), name
    table = pd.read_csv(b["results/tables/slurm_tab.csv"])
    assert list(table["sparsity"]) == [0.0, 0.36] and table["mean"].between(0, 100).all()


def test_rule_classes_take_their_resources_from_the_config(tmp_path):
    """No cluster needed: the dry run shows each job's threads and resources (GPU requests for training)."""
    over = {"resources": {"train": {"cpus": 2, "mem_mb": 1234, "runtime": 17}, "artefact": {"mem_mb": 321}}}
    (tmp_path / "override.yaml").write_text(yaml.safe_dump(over))
    p = subprocess.run(_snakemake(tmp_path, "-n", "--cores", "2", "results/tables/spend_tab_a2.md"),
                       capture_output=True, text=True, cwd=REPO)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    jobs = {}
    for block in re.split(r"\n\s*rule ", p.stdout + p.stderr)[1:]:  # jobs, and jobs of a group (indented)
        rule, body = block.split(":", 1)
        jobs.setdefault(rule, body)
    res = {r: next((line.strip() for line in body.splitlines() if line.strip().startswith("resources:")), "")
           for r, body in jobs.items()}
    for rule in ("dense_demo", "retrain"):
        assert "threads: 2" in jobs[rule] and "mem_mb=1234" in res[rule] and "runtime=17" in res[rule], res[rule]
        assert "gpu=1" in res[rule] and "gpu_slot=1" in res[rule], res[rule]
    assert "mem_mb=8000" in res["prepare_data"] and "runtime=60" in res["prepare_data"]
    assert "mem_mb=321" in res["table"] and "runtime=30" in res["table"]
    for rule in ("prepare_data", "mask", "table"):
        assert "gpu" not in res[rule] and "threads:" not in jobs[rule], (rule, res[rule])
