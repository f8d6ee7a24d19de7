"""What keeps the workflow fast without changing what it computes: planning without torch (the registries'
declarations cached by code fingerprint), a run's time split into parts, progress lines with an ETA."""
import json
import subprocess
import sys

import pytest

from conftest import REPO, tiny_spec


def test_cached_catalog_equals_the_registries(tmp_path, monkeypatch):
    from ticketlab import catalog
    monkeypatch.setenv("TICKETLAB_CACHE", str(tmp_path))
    catalog._cached.cache_clear()
    live = json.loads(json.dumps(catalog.read_registries()))
    built = catalog._cached("fp0")          # a miss: read from the registries, written to the cache
    assert built == live
    (cached,) = tmp_path.glob("catalog-fp0.json")
    assert json.loads(cached.read_text()) == live
    catalog._cached.cache_clear()
    cached.write_text(json.dumps({**live, "tweaks": {}}))  # a hit is read from the file, not rebuilt
    assert catalog._cached("fp0")["tweaks"] == {}
    catalog._cached.cache_clear()
    assert set(live["tweaks"]) >= {"ls", "kd", "scaling", "skip", "rst", "set", "gmp"}
    assert live["masks"]["snip"]["weights"] == "init" and live["masks"]["imp"]["weights"] == "trained"
    assert live["analyses"]["predictions"]["arrays"] and live["analyses"]["interpolation"]["needs_reference"]


def test_the_fingerprint_changes_when_a_file_changes(tmp_path):
    from ticketlab.catalog import code_fingerprint
    (tmp_path / "a.py").write_text("x = 1\n")
    before = code_fingerprint(str(tmp_path))
    assert code_fingerprint(str(tmp_path)) == before
    (tmp_path / "a.py").write_text("x = 22\n")
    assert code_fingerprint(str(tmp_path)) != before


@pytest.mark.workflow
def test_planning_imports_no_torch(tmp_path):
    """Config check and the whole demo plan in a fresh interpreter (cache warm from a first one): torch and
    PyHessian are never imported, so a snakemake call (a no-op included) does not pay for them."""
    code = ("import sys, yaml; from ticketlab import config, plan; "
            f"cfg = config.validate(yaml.safe_load(open({str(REPO / 'config' / 'config.yaml')!r}))); "
            "t = plan.targets(cfg); [plan.artefact_runs(cfg, a) for a in cfg['artefacts']]; "
            "print(len(t), sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'pyhessian')))")
    env = {"TICKETLAB_CACHE": str(tmp_path), "PATH": "/usr/bin:/bin"}
    first = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    second = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert "'torch'" in first.stdout  # the first call filled the cache from the registries
    n, modules = second.stdout.split(" ", 1)
    assert int(n) > 40 and modules.strip() == "[]", second.stdout


def test_a_run_reports_its_time_by_part_and_logs_epochs_with_an_eta(digits_npz, tmp_path):
    from ticketlab.training import TIMING, Run
    lines = []
    r = Run(tiny_spec(digits_npz, tweaks={"scaling": {"iterations": 2}}, save_init=True), str(tmp_path / "r"),
            log=lines.append)
    summary = r.run()
    t = summary["timing"]
    assert list(t) == list(TIMING) and all(v >= 0 for v in t.values())
    assert t["init_tweaks"] > 0 and t["train_steps"] > 0 and t["eval"] > 0 and t["checkpoint_writes"] > 0
    assert t["weights_writes"] > 0 and t["job_start"] == 0  # init.pt and final.pt; not started as a job
    # the parts of the training loop are within its wall time (nested blocks are counted once)
    loop = t["train_steps"] + t["eval"] + t["checkpoint_writes"]
    assert loop <= summary["train_seconds"] + 1e-3
    assert [ln.split("] ")[1].split(" lr")[0] for ln in lines] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    assert all("ETA" in ln and "loss" in ln for ln in lines)
    assert lines[-1].endswith("ETA 0s)")


def test_progress_lines_count_to_the_total(capsys):
    from ticketlab.progress import Progress
    out = []
    p = Progress(3, "grid", every=0.0, log=lambda s, flush=False: out.append(s))
    for _ in range(3):
        p.update(note="x")
    assert [s.split(" (")[0] for s in out] == ["grid: 1/3", "grid: 2/3", "grid: 3/3"]
    assert "ETA 0s" in out[-1]
