"""A local job server that keeps torch imported: each Snakemake job is forked from it instead of paying
a fresh interpreter's imports (about 3 s per job on this project's CPU machines, more than a demo job
trains), so the demo and the tests run in far less time. Results are the same: the job runs the same code
in a fresh child process (jobs.run_job), with the client's environment and working directory.

The rules' entry points (scripts/*.py -> entry.main) submit their job to the server of the working
directory (a Unix socket in .snakemake/), starting it when none answers; the server forks one child per
job and exits after IDLE seconds without jobs (TICKETLAB_JOB_SERVER_IDLE, default 120). The client relays
the job's exit status, forwards SIGTERM
and SIGINT to the job (a training run then checkpoints and exits, as when Snakemake or the cluster stops
it), and a job whose client disappears is sent SIGTERM. Jobs run directly, without the server, when
TICKETLAB_JOB_SERVER=0, under a cluster scheduler (SLURM_JOB_ID set: one job per allocation gains
nothing), or when the server cannot be reached.

Only the user who started it can use it: the socket lives in a directory only its owner can enter (0700) and is
itself 0600 whatever the umask; both ends check the other's uid (SO_PEERCRED) and drop a connection from anyone
else; and messages are JSON, which carries data only (never pickle, whose loading runs code).

A server runs the package's code as it was when the server started; when any of the package's files has
changed since (a tweak edited between two runs), it answers the next job with "restart", removes its
socket and exits, and the client starts a new server, so a job never runs stale code.

The server imports torch but never initialises CUDA or torch's thread pools before forking, so the
children start as clean as a new process (CUDA may only be initialised in them).
"""
from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import socketserver
import struct
import subprocess
import sys
import threading
import time

from .catalog import code_fingerprint

IDLE = float(os.environ.get("TICKETLAB_JOB_SERVER_IDLE", 120))  # seconds without jobs after which the server exits
START_TIMEOUT = 60  # seconds a client waits for a server it started
PACKAGE = os.path.dirname(os.path.abspath(__file__))
RESTART = "restart"  # the server's answer when the package changed since it started


def enabled() -> bool:
    return os.environ.get("TICKETLAB_JOB_SERVER", "1") != "0" and "SLURM_JOB_ID" not in os.environ


MAX_MESSAGE = 1 << 30  # bytes: a job description is kilobytes; a length beyond this is not one of ours


def socket_path(workdir: str = ".") -> str:
    return os.path.join(workdir, ".snakemake", "ticketlab-jobs", "jobs.sock")


class Refused(ConnectionError):
    """The other end of the socket is not this user's, or sent something that is not a message of ours."""


def _private_dir(path: str) -> str:
    """The socket's directory, made (or kept) this user's alone: 0700, owned by us, a directory, not a link."""
    d = os.path.dirname(path)
    os.makedirs(d, mode=0o700, exist_ok=True)
    st = os.lstat(d)
    if not os.path.isdir(d) or os.path.islink(d) or st.st_uid != os.getuid():
        raise Refused(f"{d}: not a directory of this user's (uid {os.getuid()}); the job server will not use it")
    if st.st_mode & 0o077:
        os.chmod(d, 0o700)
    return d


def peer_uid(conn: socket.socket) -> int:
    """The uid of the process at the other end of a Unix socket (SO_PEERCRED: pid, uid, gid)."""
    return struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))[1]


def _check_peer(conn: socket.socket) -> None:
    uid = peer_uid(conn)
    if uid != os.getuid():
        raise Refused(f"the other end of the job server's socket runs as uid {uid}, not {os.getuid()}")


def _send(conn: socket.socket, obj) -> None:
    data = json.dumps(obj).encode()
    conn.sendall(struct.pack("!Q", len(data)) + data)


def _recv(conn: socket.socket):
    n = struct.unpack("!Q", _recv_exact(conn, 8))[0]
    if n > MAX_MESSAGE:
        raise Refused(f"a message of {n} bytes is not one of the job server's")
    try:
        return json.loads(_recv_exact(conn, n))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise Refused(f"not a job server message ({e})") from e


def _recv_exact(conn: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("the other side closed the connection")
        buf += chunk
    return buf


# ------------------------------------------------------------------------------------------------ client

def submit(job: dict, workdir: str = ".") -> int:
    """Run `job` (entry.describe; see jobs.run_job) in a child of the working directory's server; returns its
    exit status."""
    for _ in range(3):
        conn = _connect(socket_path(workdir))
        _check_peer(conn)  # a socket someone else planted gets neither our environment nor our job
        try:
            _send(conn, {"job": job, "env": dict(os.environ), "cwd": os.getcwd()})
            pid = _recv(conn)
        except OSError:  # a server going away (its code changed, or it idled out) as we connected
            pid = RESTART
        if pid != RESTART:
            break
        conn.close()  # that server ran older code and has gone: the next connection starts a new one
    else:
        raise ConnectionError("the ticketlab job server kept restarting (is the package being edited?)")

    def forward(signum, _frame):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass
    for s in (signal.SIGTERM, signal.SIGINT):
        signal.signal(s, forward)
    return int(_recv(conn))


def _connect(path: str) -> socket.socket:
    deadline = None
    while True:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            conn.connect(path)
            return conn
        except (FileNotFoundError, ConnectionRefusedError):
            conn.close()
        if deadline is None:
            _start(path)
            deadline = time.time() + START_TIMEOUT
        elif time.time() > deadline:
            raise TimeoutError(f"the ticketlab job server did not answer at {path}")
        time.sleep(0.05)


def _start(path: str) -> None:
    """Start a server unless another client is starting one (a lock beside the socket decides)."""
    _private_dir(path)
    with open(path + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)  # started meanwhile
            return
        except (FileNotFoundError, ConnectionRefusedError):
            pass
        finally:
            probe.close()
        if os.path.exists(path):
            os.remove(path)  # a dead server's socket
        log = open(os.path.join(os.path.dirname(path), "server.log"), "a")
        # the server imports this copy of the package, installed or not (a job's Python may have no ticketlab)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (os.path.dirname(PACKAGE),
                                                                       os.environ.get("PYTHONPATH")) if p))
        subprocess.Popen([sys.executable, "-m", "ticketlab.jobserver", path], stdin=subprocess.DEVNULL,
                         stdout=log, stderr=log, start_new_session=True, close_fds=True, env=env)
        # the lock is held until the socket exists, so a second client waits instead of starting another
        deadline = time.time() + START_TIMEOUT
        while not os.path.exists(path) and time.time() < deadline:
            time.sleep(0.05)


# ------------------------------------------------------------------------------------------------ server

class _Handler(socketserver.BaseRequestHandler):
    def handle(self):  # in the forked child
        try:
            msg = _recv(self.request)
            job, env, cwd = msg["job"], dict(msg["env"]), str(msg["cwd"])
        except (Refused, OSError, KeyError, TypeError, ValueError) as e:
            print(f"refused a message: {e}", file=sys.stderr, flush=True)
            return
        os.environ.clear()
        os.environ.update(env)
        os.chdir(cwd)
        _send(self.request, os.getpid())
        done = threading.Event()
        _watch_client(self.request, done)
        from .jobs import run_job
        try:
            run_job(job)
            status = 0
        except SystemExit as e:  # e.g. 143 after a SIGTERM checkpoint
            status = e.code if isinstance(e.code, int) else 1
        except BaseException:  # noqa: BLE001 - reported in the job's log by run_job; the status says it failed
            status = 1
        done.set()
        try:
            _send(self.request, status)
        except OSError:
            pass


def _watch_client(conn: socket.socket, done: threading.Event) -> None:
    """If the client goes away (killed) before the job is done, stop the job as a scheduler would: SIGTERM
    (a training run checkpoints and exits)."""
    def watch():
        try:
            if conn.recv(1) == b"" and not done.is_set():
                os.kill(os.getpid(), signal.SIGTERM)
        except OSError:
            pass
    threading.Thread(target=watch, daemon=True).start()


class _Server(socketserver.ForkingMixIn, socketserver.UnixStreamServer):
    timeout = 5
    block_on_close = False

    def __init__(self, path, code):
        _private_dir(path)
        umask = os.umask(0o177)  # the socket is created 0600, whatever the user's umask (restored for the jobs)
        try:
            super().__init__(path, _Handler)
        finally:
            os.umask(umask)
        os.chmod(path, 0o600)
        self.path, self.code, self.stale = path, code, False
        self.last = time.time()

    def verify_request(self, request, client_address) -> bool:
        """Only this user's processes are served; anyone else's connection is closed unread."""
        try:
            _check_peer(request)
            return True
        except (Refused, OSError) as e:
            print(f"refused a connection: {e}", file=sys.stderr, flush=True)
            return False

    def process_request(self, request, client_address):
        self.last = time.time()
        if code_fingerprint(PACKAGE) != self.code:  # the package changed: give the path up before answering
            self.stale = True
            self.socket.close()
            os.remove(self.path)
            try:
                request.settimeout(5)
                _recv(request)  # the client's message, read so that its send does not break
                _send(request, RESTART)
            except OSError:
                pass
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def service_actions(self):
        super().service_actions()
        if self.active_children:
            self.last = time.time()


def serve(path: str) -> None:
    code = code_fingerprint(PACKAGE)  # before the imports, so that an edit made while they run is noticed
    import numpy  # noqa: F401  (the imports every job pays for, done once)
    import torch  # noqa: F401
    import torch._inductor.config  # noqa: F401  (torch.use_deterministic_algorithms imports it: 2 s per job otherwise)

    from . import jobs, pruners, training  # noqa: F401
    from .analysis import ANALYSES  # noqa: F401
    from .artefacts import ARTEFACTS  # noqa: F401
    try:
        server = _Server(path, code)
    except OSError:  # another server took the path
        return
    try:
        while not server.stale and time.time() - server.last < IDLE:
            server.handle_request()
            server.service_actions()
    finally:
        server.server_close()
        if not server.stale and os.path.exists(path):  # a stale server's path may be a new server's by now
            os.remove(path)


if __name__ == "__main__":
    serve(sys.argv[1])
