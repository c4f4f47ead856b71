"""``jobdock run --local``: a job run on this machine with no server to
ask. A ``jobdock serve`` of its own is started for it, on embedded defaults
(SQLite and its worker) in a temporary home and on a free loopback port;
the job then goes the way every job goes (the same spec checks, runtimes,
limits, output and exit codes), and the server and its home are gone when
the command ends.

The server's environment is this one's without the ``JOBDOCK_*``
variables: the caller's server URL, token and store are not its own.

Imports nothing of jobdock's but the CLI's exits.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from jobdock.cli.exits import EXIT_JOBDOCK, fail

#: How long the local server has to answer.
START_SECONDS = 60.0


@contextmanager
def local_server(settings: Mapping[str, str] | None = None) -> Iterator[str]:
    """A ``jobdock serve`` on a temporary home while the block runs; its URL.
    ``settings``: ``JOBDOCK_*`` variables of its own (``jobdock repro``'s
    engine, secret key and container runtime)."""
    home = Path(tempfile.mkdtemp(prefix="jobdock-local-"))
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {key: value for key, value in os.environ.items() if not key.startswith("JOBDOCK_")}
    env |= {"JOBDOCK_HOME": str(home / "home"), "JOBDOCK_LOG_LEVEL": "warning", **(settings or {})}
    log = (home / "server.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "jobdock", "serve", "--host", "127.0.0.1", "--port", str(port)],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        _wait_until_up(server, url, home / "server.log")
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()
        shutil.rmtree(home, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _wait_until_up(server: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if server.poll() is not None:
            last = log.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
            fail(f"--local: the local server did not start: {last[0]}", EXIT_JOBDOCK)
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=1):
                return
        except OSError:
            time.sleep(0.05)  # polling a server that is starting, not synchronising
    fail(f"--local: the local server did not answer within {START_SECONDS:.0f}s", EXIT_JOBDOCK)
