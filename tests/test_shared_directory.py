"""Two users (or two terminals) of one results directory: a second `snakemake` on a directory another one is
working in refuses (Snakemake's lock) and changes nothing, the first finishes as it would alone; clients that
start at once bring up a single job server."""
import subprocess
import sys
import time
import multiprocessing

import pytest

from conftest import REPO, SMOKE, snakemake
from test_jobserver import _server_pids, _stop_server
from ticketlab import jobserver

pytestmark = pytest.mark.workflow  # snakemake processes, a job server

NOTHING = {"job": "nonsense", "log": None, "threads": 1, "params": {}, "output": [], "named_output": {}, "id": None}


def _submit(_):
    return jobserver.submit(NOTHING)


def test_a_second_snakemake_on_the_same_directory_refuses_and_changes_nothing(tmp_path):
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "workflow" / "Snakefile"), "--directory",
           str(tmp_path), "--cores", "1", "results/tables/spend_tab_a2.md", "--configfile", SMOKE]
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        locks = tmp_path / ".snakemake" / "locks"
        deadline = time.time() + 120
        while not (locks.is_dir() and any(locks.iterdir())):
            assert first.poll() is None and time.time() < deadline, "the first run never took its lock"
            time.sleep(0.2)
        second = subprocess.run(cmd, capture_output=True, text=True)
        assert second.returncode != 0 and "cannot be locked" in second.stdout + second.stderr, second.stderr[-2000:]
        out, _ = first.communicate(timeout=600)
    finally:
        if first.poll() is None:
            first.kill()
        _stop_server(tmp_path)
    assert first.returncode == 0, out[-3000:]
    assert "Nothing to be done" in snakemake(tmp_path, "results/tables/spend_tab_a2.md", "-n", "--configfile", SMOKE)


def test_clients_that_start_at_once_bring_up_one_server(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TICKETLAB_JOB_SERVER_IDLE", "20")
    try:
        with multiprocessing.get_context("fork").Pool(6) as pool:  # processes: a client handles signals
            assert pool.map(_submit, range(6)) == [1] * 6
        assert len(_server_pids(tmp_path)) == 1
    finally:
        _stop_server(tmp_path)
