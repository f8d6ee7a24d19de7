"""The local job server (ticketlab.jobserver): a job forked from it writes what the same job run directly
writes, its failures and exit statuses reach the client, SIGTERM reaches a training job (which
checkpoints), a dead server's socket is replaced, an idle server exits, and a server whose package has
changed since it started hands over to a new one."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO, same_weights, tiny_spec
from ticketlab import jobserver
from ticketlab.jobs import run_job

pytestmark = pytest.mark.workflow  # subprocesses: snakemake, training processes, a job server or SLURM


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TICKETLAB_JOB_SERVER_IDLE", "20")
    yield tmp_path
    _stop_server(tmp_path)


def _server_pids(workdir) -> set[int]:
    """The job servers started in workdir (their forked jobs, which share the command line, left out)."""
    out = subprocess.run(["pgrep", "-f", "ticketlab.jobserver"], capture_output=True, text=True).stdout.split()
    parents = {}
    for pid in out:
        try:
            if os.readlink(f"/proc/{pid}/cwd") == str(workdir):
                parents[int(pid)] = int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])
        except OSError:
            pass
    return {pid for pid, ppid in parents.items() if ppid not in parents}


def _stop_server(workdir):
    for pid in _server_pids(workdir):
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass


def train_job(spec, outdir, log):
    return {"job": "train", "rule": "retrain", "log": str(log), "threads": 1, "params": {"spec": spec},
            "output": [f"{outdir}/final.pt", f"{outdir}/metrics.csv", f"{outdir}/summary.json"],
            "named_output": {}, "input": {"data": spec["data"]}, "id": None}


def test_a_job_through_the_server_writes_what_a_direct_run_writes(workdir, digits_npz):
    spec = tiny_spec(digits_npz)
    run_job(train_job(spec, "direct", workdir / "direct.log"))
    assert jobserver.submit(train_job(spec, "served", workdir / "served.log")) == 0
    assert same_weights(workdir / "direct" / "final.pt", workdir / "served" / "final.pt")
    a, b = (json.loads((workdir / d / "summary.json").read_text()) for d in ("direct", "served"))
    assert a["test_acc_best_val"] == b["test_acc_best_val"] and a["test_loss_last"] == b["test_loss_last"]
    assert "epoch 3/3" in (workdir / "served.log").read_text()  # the job's prints went to its log
    assert os.path.exists(jobserver.socket_path("."))  # the server stays for the next job


def test_a_failing_job_fails_the_client_with_its_traceback_in_the_log(workdir):
    bad = {"job": "nonsense", "log": str(workdir / "bad.log"), "threads": 1, "params": {}, "output": [],
           "named_output": {}, "id": None}
    assert jobserver.submit(bad) == 1
    assert "no job of kind 'nonsense'" in (workdir / "bad.log").read_text()


def test_sigterm_reaches_the_training_job_which_checkpoints(workdir, digits_npz):
    spec = tiny_spec(digits_npz)
    spec["recipe"] = {**spec["recipe"], "epochs": 200}
    job = json.dumps(train_job(spec, "long", workdir / "long.log"))
    env = {**os.environ, "PYTHONPATH": str(REPO / "scripts")}
    client = subprocess.Popen([sys.executable, "-c", f"import json, sys; from ticketlab import jobserver; "
                               f"sys.exit(jobserver.submit(json.loads({job!r})))"], cwd=workdir, env=env)
    deadline = time.time() + 120
    while not (workdir / "long" / "checkpoint.pt").exists():  # training is under way (epoch 1 done)
        assert time.time() < deadline and client.poll() is None
        time.sleep(0.1)
    client.send_signal(signal.SIGTERM)
    assert client.wait(timeout=60) == 143
    assert "SIGTERM: checkpoint written" in (workdir / "long.log").read_text()


def test_a_dead_servers_socket_is_replaced_and_an_idle_server_exits(workdir, monkeypatch):
    path = jobserver.socket_path(".")
    os.makedirs(os.path.dirname(path))
    import socket
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)  # a socket file nobody listens on, as a killed server leaves it
    s.close()
    monkeypatch.setenv("TICKETLAB_JOB_SERVER_IDLE", "3")
    ok = {"job": "nonsense", "log": None, "threads": 1, "params": {}, "output": [], "named_output": {},
          "id": None}
    assert jobserver.submit(ok) == 1  # answered by a new server
    deadline = time.time() + 30
    while os.path.exists(path):  # idle for 3 s: it exits and removes its socket
        assert time.time() < deadline
        time.sleep(0.2)


def test_a_server_never_runs_code_older_than_the_packages(workdir):
    nothing = {"job": "nonsense", "log": None, "threads": 1, "params": {}, "output": [], "named_output": {},
               "id": None}
    assert jobserver.submit(nothing) == 1
    first = _server_pids(workdir)
    assert len(first) == 1
    assert jobserver.submit(nothing) == 1
    assert _server_pids(workdir) == first  # same code: the same server answers
    edited = os.path.join(jobserver.PACKAGE, "registry.py")
    st = os.stat(edited)
    try:
        os.utime(edited, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # as an editor saving the file leaves it
        assert jobserver.submit(nothing) == 1  # answered by a new server, started for the new code
    finally:
        os.utime(edited, ns=(st.st_atime_ns, st.st_mtime_ns))
    deadline = time.time() + 10
    while first & _server_pids(workdir):  # the old server has gone
        assert time.time() < deadline
        time.sleep(0.1)
    assert len(_server_pids(workdir)) == 1
