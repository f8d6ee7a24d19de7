"""Losing nothing: a run killed (SIGKILL) or preempted (SIGTERM) mid-epoch in its own process and started
again ends with weights bit for bit equal to an uninterrupted run; the same seed gives the same outputs."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import REPO, same_weights, tiny_spec
from helpers import slow_run  # noqa: F401  (registers the _slow tweak in this process too)
from ticketlab.training import run

pytestmark = pytest.mark.workflow  # subprocesses: snakemake, training processes, a job server or SLURM

HELPER = str(REPO / "tests" / "helpers" / "slow_run.py")


def slow_spec(data, marker):
    spec = tiny_spec(data, tweaks={"_slow": {"seconds": 0.03, "marker": marker}})
    spec["recipe"] = {**spec["recipe"], "epochs": 3}
    return spec


def start(spec, outdir):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "tests"), str(REPO / "scripts")])}
    return subprocess.Popen([sys.executable, HELPER, json.dumps(spec), str(outdir)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def wait_for(path, proc, timeout=120):
    t0 = time.time()
    while not os.path.exists(path):
        if proc.poll() is not None:
            raise AssertionError(f"run ended before {path}: {proc.stdout.read().decode()[-2000:]}")
        if time.time() - t0 > timeout:
            proc.kill()
            raise AssertionError(f"timed out waiting for {path}")
        time.sleep(0.02)


@pytest.fixture(scope="module")
def straight(tmp_path_factory, digits_npz):
    out = tmp_path_factory.mktemp("straight")
    marker = str(out / "midway")  # the marker path is part of the spec: every run below uses the same
    run(slow_spec(digits_npz, marker), str(out / "run"))
    return out / "run", marker


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killed_or_preempted_mid_epoch_resumes_bit_for_bit(tmp_path, digits_npz, straight, sig):
    ref, marker = straight
    if os.path.exists(marker):
        os.remove(marker)
    out = tmp_path / "run"
    proc = start(slow_spec(digits_npz, marker), out)
    wait_for(marker, proc)  # halfway through epoch 2: epoch 1's checkpoint exists
    proc.send_signal(sig)
    rc = proc.wait(timeout=60)
    assert not (out / "final.pt").exists()
    ck = torch.load(out / "checkpoint.pt", weights_only=False)
    if sig == signal.SIGTERM:
        assert rc == 143 and ck["epoch"] == 1 and ck["within"]["step"] > 0  # written at the step it stopped
    else:
        assert rc == -signal.SIGKILL and ck["epoch"] == 1 and ck["within"] is None  # the last epoch's
    summary = run(slow_spec(digits_npz, marker), str(out))
    assert same_weights(ref / "final.pt", out / "final.pt")
    assert not (out / "checkpoint.pt").exists() and summary["epochs"] == 3
    drop = ["seconds"]
    rows = [{k: v for k, v in r.items() if k not in drop} for r in csv_rows(out / "metrics.csv")]
    assert rows == [{k: v for k, v in r.items() if k not in drop} for r in csv_rows(ref / "metrics.csv")]


def csv_rows(path):
    import csv
    with open(path) as f:
        return list(csv.DictReader(f))


def test_same_seed_same_outputs(tmp_path, digits_npz):
    spec = tiny_spec(digits_npz)
    a, b = run(spec, str(tmp_path / "a")), run(spec, str(tmp_path / "b"))
    assert same_weights(tmp_path / "a" / "final.pt", tmp_path / "b" / "final.pt")
    assert a["test_acc_best_val"] == b["test_acc_best_val"] and a["test_loss_last"] == b["test_loss_last"]
    other = run(tiny_spec(digits_npz, seed=1), str(tmp_path / "c"))
    assert not same_weights(tmp_path / "a" / "final.pt", tmp_path / "c" / "final.pt")
    assert other["test_loss_last"] != a["test_loss_last"]
