"""The local job server against other users of the machine: its socket is the owner's alone (a 0700 directory, a
0600 socket, also under the group-writable umask of shared lab directories), a connection from another uid is
refused even where the files are opened up, and a message that is not JSON (a pickle whose loading would run
code) is dropped without effect. The other user is a forked process that drops root for `nobody` (CI runs as
root; elsewhere those tests are skipped)."""
import os
import pickle
import shutil
import socket
import stat
import struct
import tempfile
from pathlib import Path

import pytest

from ticketlab import jobserver
from test_jobserver import _stop_server

pytestmark = pytest.mark.workflow  # a job server process

NOTHING = {"job": "nonsense", "log": None, "threads": 1, "params": {}, "output": [], "named_output": {}, "id": None}
NOBODY = 65534


@pytest.fixture
def workdir(monkeypatch):
    """A working directory every user can reach (pytest's tmp_path is under a 0700 directory of root's, which
    would stop another user before the job server's own directory is tried)."""
    d = Path(tempfile.mkdtemp(prefix="ticketlab-security-", dir="/tmp"))
    d.chmod(0o755)
    monkeypatch.chdir(d)
    monkeypatch.setenv("TICKETLAB_JOB_SERVER_IDLE", "20")
    yield d
    _stop_server(d)
    shutil.rmtree(d, ignore_errors=True)


def _marker_job(marker):
    """A job that writes a file (the digits prepared into `marker`): proof that it ran."""
    return {"job": "prepare_data", "log": None, "threads": 1, "params": {"spec": {"source": "digits"}},
            "output": [str(marker)], "named_output": {}, "id": None}


def test_the_socket_is_private_under_a_group_writable_umask(workdir):
    old = os.umask(0o002)
    try:
        assert jobserver.submit(NOTHING) == 1  # starts a server (it inherits the umask)
    finally:
        os.umask(old)
    path = jobserver.socket_path(".")
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_ISSOCK(os.stat(path).st_mode)


def _as_nobody(fn) -> int:
    """Run fn() in a child process as uid/gid nobody; its return value (a small int) is the exit status."""
    pid = os.fork()
    if pid == 0:
        code = 99
        try:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            code = fn()
        finally:
            os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def _send_raw(path, payload: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(path)
        try:
            s.sendall(struct.pack("!Q", len(payload)) + payload)
            return s.recv(64)
        except OSError:  # closed on us
            return b""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become another user (CI runs as root)")
def test_another_user_can_neither_reach_the_socket_nor_run_a_job(workdir):
    assert jobserver.submit(NOTHING) == 1
    path, marker = os.path.abspath(jobserver.socket_path(".")), workdir / "ran.npz"
    os.chmod(workdir / ".snakemake", 0o755)

    def connect():
        assert os.path.isdir(workdir / ".snakemake")  # it gets as far as the server's directory
        try:
            socket.socket(socket.AF_UNIX, socket.SOCK_STREAM).connect(path)
            return 1
        except PermissionError:
            return 0  # the 0700 directory stops it before the socket
    assert _as_nobody(connect) == 0

    # opened up (as a careless chmod -R would), the server still refuses by the peer's uid, unread
    os.chmod(os.path.dirname(path), 0o777)
    os.chmod(path, 0o777)
    msg = jobserver.json.dumps({"job": _marker_job(marker), "env": {}, "cwd": str(workdir)}).encode()

    def run_a_job():
        return 0 if _send_raw(path, msg) == b"" else 1  # closed without an answer
    assert _as_nobody(run_a_job) == 0
    assert not marker.exists()
    assert jobserver.submit(_marker_job(marker)) == 0 and marker.exists()  # its owner is still served


def test_a_pickle_payload_is_dropped_without_effect(workdir):
    assert jobserver.submit(NOTHING) == 1
    marker = workdir / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))
    assert _send_raw(os.path.abspath(jobserver.socket_path(".")), pickle.dumps(Exploit())) == b""
    assert not marker.exists()
    assert jobserver.submit(NOTHING) == 1  # the server is still there and serving
