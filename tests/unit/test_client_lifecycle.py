"""A script that uses ``jobdock.Client`` ends like any other Python script:
an uncaught exception ends it with its traceback and a non-zero status,
and a client never closed does not keep it alive. Each script runs in a
real interpreter; no server is needed (the URL's port has no listener)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest

from support import free_port

#: Far more than a script needs (~0.5 s), far less than "forever".
DEADLINE = 20.0


def run_script(source: str) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run ``source`` (``URL`` is a server that does not run) and how long it took;
    a script still running at the deadline fails the test."""
    url = f"http://127.0.0.1:{free_port()}"
    script = f"import jobdock\nURL = {url!r}\n" + textwrap.dedent(source)
    started = time.monotonic()
    try:
        done = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=DEADLINE
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"the script was still running after {DEADLINE:.0f} s:\n{script}")
    return done, time.monotonic() - started


def test_an_uncaught_error_ends_the_script() -> None:
    done, _ = run_script("jobdock.Client(URL).get('x')\n")
    assert done.returncode == 1
    assert "jobdock.errors.ServerUnreachable: cannot reach the jobdock server" in done.stderr


def test_an_uncaught_error_inside_with_ends_the_script() -> None:
    done, _ = run_script(
        """
        with jobdock.Client(URL) as client:
            client.get('x')
        """
    )
    assert done.returncode == 1
    assert "ServerUnreachable" in done.stderr


def test_a_client_never_closed_does_not_keep_the_script_alive() -> None:
    done, took = run_script(
        """
        client = jobdock.Client(URL)
        print("done")
        """
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "done\n", "")
    assert took < 10


def test_clients_closed_twice_or_dropped_let_an_exiting_script_end() -> None:
    """Three clients: one closed twice, one dropped, one left open; the exit ends it."""
    done, _ = run_script(
        """
        clients = [jobdock.Client(URL) for _ in range(3)]
        clients[0].close()
        clients[0].close()
        del clients[1]
        raise SystemExit(3)
        """
    )
    assert (done.returncode, done.stderr) == (3, "")
