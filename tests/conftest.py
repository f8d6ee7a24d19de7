import fcntl
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = str(REPO / "workflow" / "Snakefile")
SMOKE = str(REPO / "tests" / "smoke.yaml")
os.environ.setdefault("PATH", "")
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"  # the venv's snakemake
# pytest-xdist workers share the cores: torch's default of one thread per core in each worker oversubscribes
# them (its OpenMP threads spin), which doubled the unit tests' wall time on 2 cores (118 s vs 64 s). Jobs
# and runs set their own thread counts (torch.set_num_threads), so this changes only the tests' defaults.
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    os.environ.setdefault("OMP_NUM_THREADS",
                          str(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))))


def pytest_collection_modifyitems(config, items):
    """Tests that use the smoke DAG are `workflow` tests (`make test-fast` leaves them out)."""
    for item in items:
        if "smoke_run" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.workflow)


@pytest.fixture(scope="session")
def digits_npz(tmp_path_factory):
    """The demo dataset, prepared once for the whole session."""
    from ticketlab.data import prepare
    path = tmp_path_factory.mktemp("data") / "digits.npz"
    prepare({"source": "digits", "val_fraction": 0.1, "test_fraction": 0.2}, str(path))
    return str(path)


def same_weights(a, b) -> bool:
    """Two weight files hold the same tensors, bit for bit."""
    import torch
    from ticketlab.weights_io import load as load_state  # torch: imported once the workers' threads are set
    x, y = load_state(a), load_state(b)
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


@pytest.fixture
def kill_after(monkeypatch):
    """kill_after(n): from then on a run raises KeyboardInterrupt right after writing its n-th end-of-epoch
    checkpoint (counted over all runs), as a kill leaves it; kill_after(None) lets runs finish again."""
    from ticketlab.training import Run
    original = Run.save_checkpoint

    def arm(n):
        if n is None:
            monkeypatch.setattr(Run, "save_checkpoint", original)
            return
        calls = {"n": 0}

        def dies(self, within=None):
            original(self, within)
            if within is None:
                calls["n"] += 1
                if calls["n"] == n:
                    raise KeyboardInterrupt("killed")
        monkeypatch.setattr(Run, "save_checkpoint", dies)
    return arm


@pytest.fixture
def killed_run(kill_after):
    """killed_run(spec, outdir, after=1): training.run of spec in outdir, killed right after its `after`-th
    end-of-epoch checkpoint; later runs finish again (run it once more to resume)."""
    from ticketlab.training import run

    def kill(spec, outdir, after=1):
        kill_after(after)
        with pytest.raises(KeyboardInterrupt):
            run(spec, str(outdir))
        kill_after(None)
    return kill


def tiny_spec(data: str, **over) -> dict:
    """A run spec small enough for unit tests (ResNet-18 at 1/16 width, 8x8 digits)."""
    spec = {"name": "test", "data": data, "model": {"arch": "resnet18", "width": 0.0625},
            "recipe": {"epochs": 3, "batch_size": 128, "lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4,
                       "milestones": [2], "gamma": 0.1, "augment": {"crop_pad": 1, "flip": True},
                       "eval_batch_size": 1000},
            "seed": 0, "mask": None, "init": {"from": "fresh"}, "tweaks": {}, "teacher": None, "device": "cpu"}
    spec.update(over)
    return spec


def snakemake(workdir, *args, check=True):
    """Run the workflow's snakemake in `workdir` on 2 cores; returns its output (stdout + stderr)."""
    cmd = [sys.executable, "-m", "snakemake", "-s", SNAKEFILE, "--directory", str(workdir), "--cores", "2", *args]
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{failed_jobs(workdir, p.stdout + p.stderr)}"
                             f"\n{p.stdout[-4000:]}\n{p.stderr[-4000:]}")
    return p.stdout + p.stderr


def failed_jobs(workdir, output: str) -> str:
    """Snakemake's 'Error in rule' blocks and the end of each failed job's log: the last 4000 characters of
    a long run's output rarely hold the job that failed."""
    parts = []
    for block in re.findall(r"Error in rule [^\n]*\n(?:[ \t]+[^\n]*\n?)*", output):
        parts.append(block)
        for logs in re.findall(r"^\s*log: ([^(\n]+)", block, flags=re.M):
            for log in logs.replace(",", " ").split():
                path = Path(workdir) / log
                if path.is_file():
                    parts.append(f"--- end of {log}:\n{path.read_text(errors='replace')[-3000:]}")
    return "\n".join(parts) or "(no 'Error in rule' block in the output)"


def planned(output: str) -> dict[str, int]:
    """Job counts per rule from a dry run's 'Job stats' table."""
    if "Nothing to be done" in output:
        return {}
    table = output.split("Job stats:")[1].split("\n\n")[0]
    # rule names may hold dots (dense_<recipe>, e.g. dense_sanity_lr0.01)
    return {m[0]: int(m[1]) for m in re.findall(r"^(\w[\w.]*)\s+(\d+)$", table, re.M) if m[0] != "total"}


def assert_artefacts_built(root, tables=(), figures=()) -> None:
    """Every table (.csv, .md) and figure (.png, .pdf, .csv) of the ids exists under root/results, non-empty."""
    for ids, folder, exts in ((tables, "tables", ("csv", "md")), (figures, "figures", ("png", "pdf", "csv"))):
        for a in ids:
            for ext in exts:
                assert (root / "results" / folder / f"{a}.{ext}").stat().st_size > 0, (a, ext)


def config_with(*paths) -> dict:
    """config/config.yaml with the given files applied over it, as Snakemake's --configfile does, checked."""
    from snakemake.utils import update_config

    from ticketlab.config import validate
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    for p in paths:
        update_config(cfg, yaml.safe_load(open(p)))
    return validate(cfg)


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory, request):
    """The whole demo DAG (every artefact of the five papers) at smoke scale (tests/smoke.yaml), built
    once per test session, also when pytest-xdist runs the session on several workers: they share one
    directory, and a lock makes the first that needs it build it while the others wait; the papers'
    workflow tests check its outputs (read-only: dry runs and reports only)."""
    root = tmp_path_factory.getbasetemp()
    if hasattr(request.config, "workerinput"):  # an xdist worker: its basetemp is one per worker
        root = root.parent
    work = root / "smoke-shared"
    with open(f"{work}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (work / ".built").exists():
            work.mkdir(exist_ok=True)
            snakemake(work, "--configfile", SMOKE)
            (work / ".built").touch()
    return work
