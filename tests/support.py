"""What the tests share: a real jobdock server in a subprocess, and waiting
for conditions with a deadline (never sleeping as synchronisation)."""

from __future__ import annotations

import atexit
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

import httpx

T = TypeVar("T")

#: Fast leases and polls, so that lost workers are found within seconds.
FAST_SETTINGS = {
    "JOBDOCK_LEASE_SECONDS": "2",
    "JOBDOCK_HEARTBEAT_SECONDS": "0.5",
    "JOBDOCK_POLL_SECONDS": "0.2",
    "JOBDOCK_DRAIN_SECONDS": "1",
}


def in_ci() -> bool:
    """Whether this is CI (``CI=true``), where a missing tool fails a test
    instead of skipping it."""
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


_job_homes: list[Path] = []


def job_homes() -> Path:
    """Where the servers of this test session make their jobs' HOMEs (with
    authentication on): one directory, made on first use, that every uid may
    pass through (pytest's temporary root is 0700)."""
    if not _job_homes:
        path = Path(tempfile.mkdtemp(prefix="jobdock-test-homes-"))
        path.chmod(0o711)
        atexit.register(shutil.rmtree, path, True)
        _job_homes.append(path)
    return _job_homes[0]


def alive(pid: int) -> bool:
    """Whether the process exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


def eventually(check: Callable[[], T | None], timeout: float = 10.0, what: str = "") -> T:
    """Call ``check`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or check}")
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def as_user(uid: int | None) -> list[str]:
    """The argv prefix that runs a command as ``uid`` (and the same gid, no
    other groups), not root: it may read any file (CAP_DAC_READ_SEARCH, so
    that it can load this checkout's Python wherever it lives) but holds no
    other privilege, e.g. cannot switch uids."""
    if uid is None:
        return []
    caps = ["--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search"]
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", *caps, "--"]


class ServerProcess:
    """``jobdock serve`` in a subprocess, on loopback, with its own home.

    ``args`` are added to the command line (e.g. ``("--no-worker",)``);
    ``settings`` become ``JOBDOCK_*`` variables (e.g. ``db=URL``);
    ``wrapper`` is a command line the server runs under (e.g. a sandbox)."""

    def __init__(
        self,
        home: Path,
        *,
        args: Sequence[str] = (),
        verify: ssl.SSLContext | None = None,
        wrapper: Sequence[str] = (),
        user: int | None = None,
        **settings: str,
    ) -> None:
        self.home = home
        self.args = list(args)
        self.wrapper = list(wrapper)
        #: Run the server as this uid (and gid) instead of the tests' root.
        self.user = user
        self.port = free_port()
        #: With ``verify`` (how to check its certificate), the server speaks HTTPS.
        self.verify: ssl.SSLContext | bool = verify or True
        self.url = f"{'https' if verify else 'http'}://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            **FAST_SETTINGS,
            "JOBDOCK_HOME": str(home),
            "JOBDOCK_PORT": str(self.port),
            "JOBDOCK_LOG_LEVEL": "warning",
            "JOBDOCK_JOB_HOMES": str(job_homes()),
            **{f"JOBDOCK_{key.upper()}": value for key, value in settings.items()},
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = home / "server.log"

    def start(self) -> ServerProcess:
        return self.launch().wait_healthy()

    def launch(self) -> ServerProcess:
        """Start the process without waiting for it (see ``wait_healthy``)."""
        self.home.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 (the child keeps it)
        self.proc = subprocess.Popen(
            [
                *as_user(self.user),
                *self.wrapper,
                sys.executable,
                "-m",
                "jobdock",
                "serve",
                *self.args,
            ],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        return self

    def wait_healthy(self, timeout: float = 30) -> ServerProcess:
        """Wait until the server answers ``/healthz``."""
        eventually(self._healthy, timeout=timeout, what=f"the server on {self.url}")
        return self

    def _healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.log()}")
        try:
            response = httpx.get(f"{self.url}/healthz", timeout=1, verify=self.verify)
            return response.status_code == 200
        except httpx.TransportError:
            return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        """Signal the server and wait for it to exit; returns its exit status."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        """Kill the server at once, as a crash would."""
        self.stop(signal.SIGKILL)


class WorkerProcess:
    """``jobdock worker`` in a subprocess on a shared store (``db``), with
    FAST_SETTINGS, its own home and its output in ``log_path``.

    It logs at level info, so that ``start()`` can learn the worker's id (the
    id its attempts are recorded under) from its start-up line."""

    _STARTED = re.compile(r"worker (\S+) started")

    def __init__(
        self,
        home: Path,
        db: str,
        *,
        labels: Mapping[str, str] | None = None,
        args: Sequence[str] = (),
        **settings: str,
    ) -> None:
        self.home = home
        self.db = db
        self.args = [*(f"--label={k}={v}" for k, v in (labels or {}).items()), *args]
        self.env = {
            **os.environ,
            **FAST_SETTINGS,
            "JOBDOCK_HOME": str(home),
            "JOBDOCK_LOG_LEVEL": "info",
            "JOBDOCK_JOB_HOMES": str(job_homes()),
            **{f"JOBDOCK_{key.upper()}": value for key, value in settings.items()},
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = home / "worker.log"
        self.id: str | None = None
        self._log_offset = 0

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def launch(self) -> WorkerProcess:
        """Start the process without waiting for it (see ``wait_started``)."""
        self.home.mkdir(parents=True, exist_ok=True)
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        self.id = None
        log = open(self.log_path, "ab")  # noqa: SIM115 (the child keeps it)
        self.proc = subprocess.Popen(
            self.command(),
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        return self

    def command(self) -> list[str]:
        """The command line of the process."""
        return [sys.executable, "-m", "jobdock", "worker", "--db", self.db, *self.args]

    def wait_started(self, timeout: float = 30) -> WorkerProcess:
        """Wait until the worker has registered and begun claiming jobs."""
        self.id = eventually(self._started_id, timeout=timeout, what="the worker to start")
        return self

    def start(self, timeout: float = 30) -> WorkerProcess:
        return self.launch().wait_started(timeout)

    def _started_id(self) -> str | None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"worker exited with {self.proc.returncode}:\n{self.log()}")
        found = self._STARTED.search(self.log()[self._log_offset :])
        return found.group(1) if found else None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def send(self, sig: int) -> None:
        """Send a signal (e.g. SIGSTOP, SIGCONT) if the worker still runs."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        """Signal the worker (SIGTERM: drain, then release) and wait for it to
        exit; returns its exit status. A paused worker is continued first."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            if sig != signal.SIGKILL:
                self.proc.send_signal(signal.SIGCONT)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        """Kill the worker at once (SIGKILL), as a crash would."""
        self.stop(signal.SIGKILL)


def stop_all(procs: Sequence[ServerProcess | WorkerProcess], timeout: float = 15) -> None:
    """SIGTERM every process still running (a paused one is continued), then
    SIGKILL those that have not exited within ``timeout`` seconds."""
    for proc in procs:
        if proc.proc is not None and proc.proc.poll() is None:
            proc.proc.send_signal(signal.SIGTERM)
            proc.proc.send_signal(signal.SIGCONT)
    for proc in procs:
        if proc.proc is None:
            continue
        try:
            proc.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.proc.kill()
            proc.proc.wait()


def jobdock(
    *args: str, env: dict[str, str] | None = None, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    """The CLI in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "jobdock", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=60,
    )


def make_pki(directory: Path, *users: str) -> Path:
    """``directory`` made a CA by ``jobdock certs``, with a server
    certificate for 127.0.0.1 and client certificates for ``users``."""
    steps = [("init", str(directory), "--host", "127.0.0.1")]
    steps += [("issue", user, "--dir", str(directory)) for user in users]
    for step in steps:
        done = jobdock("certs", *step)
        assert done.returncode == 0, done.stderr
    return directory


def start_mtls_server(home: Path, pki: Path, **settings: str) -> ServerProcess:
    """A started server on ``home`` requiring client certificates of
    ``pki``'s CA (see make_pki)."""
    return ServerProcess(
        home,
        verify=ssl.create_default_context(cafile=pki / "ca.pem"),
        tls_cert=str(pki / "server.pem"),
        tls_key=str(pki / "server-key.pem"),
        tls_ca=str(pki / "ca.pem"),
        **settings,
    ).start()


def make_token(home: Path, user: str, *extra: str) -> str:
    """A new API token of ``user`` on the server of ``home`` (``jobdock tokens create``)."""
    done = jobdock("tokens", "create", user, "--home", str(home), *extra)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def cgroups_missing() -> str | None:
    """Why this host cannot give jobs cgroups (None: it can)."""
    from jobdock.runtimes import cgroups

    if os.geteuid() != 0:
        return "cgroups need root"
    try:
        cgroups.detect("jobdock-probe").remove_parent()
    except OSError as exc:
        return f"no usable cgroups: {exc}"
    return None
