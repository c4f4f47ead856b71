"""``jobdock run -i`` as ``docker run -i`` users expect: the input is sent
to the job as it is read, never held whole in the CLI, and a job can answer
a line before the next one is typed."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from support import ServerProcess

JOBDOCK = [sys.executable, "-m", "jobdock"]
#: More than the server's max_request_body (10 MiB), and than any buffer.
BIG = 200 * 1024 * 1024 + 12345


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server of this module's own, given time to start on a busy machine."""
    started = ServerProcess(tmp_path_factory.mktemp("stdin")).launch().wait_healthy(120)
    yield started
    started.stop()


def _env(server: ServerProcess) -> dict[str, str]:
    return {**os.environ, "JOBDOCK_URL": server.url}


def _read_line(pipe: int, timeout: float) -> bytes:
    """One line from ``pipe``, waiting at most ``timeout`` seconds for it."""
    line = b""
    deadline = time.monotonic() + timeout
    while not line.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([pipe], [], [], left)[0]:
            raise AssertionError(f"no line within {timeout}s (got {line!r})")
        piece = os.read(pipe, 1)
        if not piece:
            raise AssertionError(f"the output ended at {line!r}")
        line += piece
    return line


#: Runs the command in its arguments and writes its peak RSS (KiB) to the
#: file named first. A small parent of its own: a process started straight
#: from pytest counts pytest's own resident memory (shared until its exec)
#: in its peak, which after a few hundred tests is more than the bound.
_PEAK_OF = (
    "import resource, subprocess, sys; "
    "code = subprocess.call(sys.argv[2:]); "
    "open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)); "
    "sys.exit(code)"
)


def _vm_hwm_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


@pytest.mark.timeout(480)  # 200 MB through the store, on a busy CI machine
def test_run_i_counts_a_200_mb_pipe_without_holding_it(tmp_path: Path) -> None:
    # A server of its own: its peak memory is this input's alone.
    server = ServerProcess(tmp_path / "home").launch().wait_healthy(120)
    try:
        source = subprocess.Popen(["head", "-c", str(BIG), "/dev/zero"], stdout=subprocess.PIPE)
        assert source.stdout is not None
        peak_file = tmp_path / "peak"
        command = [*JOBDOCK, "run", "-i", "--", "wc", "-c"]
        with open(tmp_path / "stderr", "wb") as stderr:
            cli = subprocess.Popen(
                [sys.executable, "-c", _PEAK_OF, str(peak_file), *command],
                stdin=source.stdout,
                stdout=subprocess.PIPE,
                stderr=stderr,
                env=_env(server),
            )
        source.stdout.close()
        assert cli.stdout is not None
        out = cli.stdout.read()
        code = cli.wait(60)
        peak = int(peak_file.read_text())
        source.wait(10)
        err = (tmp_path / "stderr").read_bytes()

        assert code == 0, err
        assert out.strip() == str(BIG).encode()
        assert peak < 100 * 1024, f"the CLI's peak RSS was {peak} KiB for {BIG} bytes of input"
        server_peak = _vm_hwm_kib(server.proc.pid)  # type: ignore[union-attr]
        assert server_peak < 190 * 1024, f"the server's peak RSS was {server_peak} KiB"
    finally:
        server.stop()


def test_run_i_job_answers_each_line_as_it_is_typed(server: ServerProcess) -> None:
    script = 'read a; echo "got $a"; read b; echo "then $b"'
    cli = subprocess.Popen(
        [*JOBDOCK, "run", "-i", "--", "sh", "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(server),
    )
    assert cli.stdin is not None and cli.stdout is not None
    try:
        cli.stdin.write(b"one\n")
        cli.stdin.flush()
        # The answer comes while this command's stdin is still open.
        assert _read_line(cli.stdout.fileno(), 60) == b"got one\n"
        cli.stdin.write(b"two\n")
        cli.stdin.close()
        assert _read_line(cli.stdout.fileno(), 60) == b"then two\n"
        assert cli.wait(60) == 0
    finally:
        cli.kill()
        cli.wait()


def test_run_i_ends_when_the_job_stops_reading(server: ServerProcess) -> None:
    # `yes` never ends: the job reads one line, exits, and run exits too.
    source = subprocess.Popen(["yes"], stdout=subprocess.PIPE)
    assert source.stdout is not None
    try:
        done = subprocess.run(
            [*JOBDOCK, "run", "-i", "--", "head", "-n", "1"],
            stdin=source.stdout,
            capture_output=True,
            env=_env(server),
            timeout=60,
        )
    finally:
        source.kill()
        source.wait()

    assert done.returncode == 0, done.stderr
    assert done.stdout == b"y\n"
    assert done.stderr == b""


def test_run_i_detached_sends_all_the_input_then_returns(server: ServerProcess) -> None:
    # More than a request body may be (max_request_body, 10 MiB).
    data = b"line\n" * (3 * 1024 * 1024)
    env = _env(server)
    started = subprocess.run(
        [*JOBDOCK, "run", "-d", "-i", "--", "wc", "-l"],
        input=data,
        capture_output=True,
        env=env,
        timeout=120,
    )
    assert started.returncode == 0, started.stderr
    job_id = started.stdout.decode().strip()

    waited = subprocess.run([*JOBDOCK, "wait", job_id], capture_output=True, env=env, timeout=60)
    logs = subprocess.run([*JOBDOCK, "logs", job_id], capture_output=True, env=env, timeout=60)

    assert waited.returncode == 0, waited.stderr
    assert logs.stdout.strip() == str(3 * 1024 * 1024).encode()
