"""The Runtime contract: what the worker relies on when it runs an attempt,
whatever runs it. Every test runs once per implementation (see
conftest.RUNTIMES) with real processes, and reads each job's output to its end.
"""

from __future__ import annotations

import asyncio
import errno
import os
import random
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conftest import RuntimeCase  # tests/contract/conftest.py
from jobdock.errors import SpawnError
from jobdock.models import Reason, Stream
from jobdock.models.outcome import outcome_of
from jobdock.runtimes import Execution, ExitStatus
from jobdock.runtimes.base import AttemptInfo
from jobdock.runtimes.process import HIGH_WATER
from jobdock.submit import new_job_id
from support import eventually

#: Every wait in these tests ends by then; a job still running is killed.
DEADLINE = 10.0
ENV = {"PATH": os.environ.get("PATH") or "/usr/local/bin:/usr/bin:/bin"}


async def start(
    runtime: RuntimeCase,
    *command: str,
    stdin: bytes | AsyncIterator[bytes] = b"",
    env: dict[str, str] | None = None,
    **fields: Any,
) -> Execution:
    spec = runtime.spec(list(command), **fields)
    # An image job's PATH is its image's.
    base = ENV if runtime.on_host else {}
    info = AttemptInfo(new_job_id(), 1)
    return await runtime.runtime.start(spec, stdin, {**base, **(env or {})}, info)


def host_only(runtime: RuntimeCase, why: str) -> None:
    """Skip a test that needs the host's files or processes, on an image job."""
    if not runtime.on_host:
        pytest.skip(f"{runtime.name}: {why}")


def host_processes_only(runtime: RuntimeCase, why: str) -> None:
    """Skip a test that watches the job's processes from the host, on an
    image job or under a kernel of its own (gVisor)."""
    host_only(runtime, why)
    if runtime.own_kernel is not None:
        pytest.skip(f"{runtime.name}: {runtime.own_kernel}")


def spawned_inside(runtime: RuntimeCase) -> bool:
    """Whether the job's command is started by something inside its sandbox
    (a container's init, gVisor's runsc), which then fails to run it."""
    return not runtime.on_host or runtime.own_kernel is not None


@dataclass
class Finished:
    status: ExitStatus
    stdout: bytes
    stderr: bytes


async def collect(batches: AsyncIterator[list[tuple[Stream, bytes]]]) -> dict[Stream, bytes]:
    received = {Stream.STDOUT: bytearray(), Stream.STDERR: bytearray()}
    async for batch in batches:
        for stream, data in batch:
            received[stream] += data
    return {stream: bytes(data) for stream, data in received.items()}


async def finish(
    execution: Execution, batches: AsyncIterator[list[tuple[Stream, bytes]]] | None = None
) -> Finished:
    """Read the job's output to its end and wait for its exit, within DEADLINE."""
    try:
        output, status = await asyncio.wait_for(
            asyncio.gather(collect(batches or execution.output()), execution.wait()), DEADLINE
        )
    except BaseException:
        execution.kill()
        raise
    finally:
        await execution.close()
    return Finished(status, output[Stream.STDOUT], output[Stream.STDERR])


async def read_until(batches: AsyncIterator[list[tuple[Stream, bytes]]], marker: bytes) -> bytes:
    """Read stdout until ``marker`` has arrived (the rest stays unread)."""
    seen = b""

    async def read() -> bytes:
        nonlocal seen
        async for batch in batches:
            seen += b"".join(data for stream, data in batch if stream is Stream.STDOUT)
            if marker in seen:
                return seen
        raise AssertionError(f"output ended before {marker!r}; got {seen!r}")

    return await asyncio.wait_for(read(), DEADLINE)


# -- how a job ends -------------------------------------------------------------


@pytest.mark.parametrize("code", [0, 3, 255])
async def test_the_exit_code_of_the_command_is_reported(runtime: RuntimeCase, code: int) -> None:
    execution = await start(runtime, "sh", "-c", f"exit {code}")

    assert (await finish(execution)).status == ExitStatus(exit_code=code)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGUSR1])
async def test_a_job_killed_by_a_signal_reports_the_signal(
    runtime: RuntimeCase, sig: signal.Signals
) -> None:
    kill = f"kill -s {sig.name.removeprefix('SIG')} $$"
    # In a container, the job's shell is not PID 1 (the init is), but the
    # engine reports the death of the init's child as an exit code 128+N.
    execution = await start(runtime, "sh", "-c", kill)

    assert (await finish(execution)).status.signal == sig


# -- output and input -----------------------------------------------------------

#: Writes N pseudo-random bytes (seed 1) to stdout and N (seed 2) to stderr,
#: alternating between them in pieces of varying size.
WRITE_BOTH = """
import random, sys
size = int(sys.argv[1])
out, err = random.Random(1).randbytes(size), random.Random(2).randbytes(size)
sizes = random.Random(3)
o = e = 0
while o < size or e < size:
    n = sizes.randrange(1, 200_000)
    sys.stdout.buffer.write(out[o : o + n]); sys.stdout.buffer.flush(); o += n
    n = sizes.randrange(1, 200_000)
    sys.stderr.buffer.write(err[e : e + n]); sys.stderr.buffer.flush(); e += n
"""


async def test_large_output_on_both_streams_arrives_separately_and_completely(
    runtime: RuntimeCase,
) -> None:
    data = os.urandom(3 * 1024 * 1024)

    finished = await finish(await start(runtime, "tee", "/dev/stderr", stdin=data))

    assert finished.status == ExitStatus(exit_code=0)
    assert finished.stdout == data
    assert finished.stderr == data


async def test_stdout_and_stderr_arrive_separately_and_completely(runtime: RuntimeCase) -> None:
    host_only(runtime, "writes with the host's python")
    size = 3 * 1024 * 1024
    execution = await start(runtime, sys.executable, "-c", WRITE_BOTH, str(size))

    finished = await finish(execution)

    assert finished.status == ExitStatus(exit_code=0)
    assert len(finished.stdout) == size and finished.stdout == random.Random(1).randbytes(size)
    assert len(finished.stderr) == size and finished.stderr == random.Random(2).randbytes(size)


async def test_stdin_reaches_the_job_byte_for_byte(runtime: RuntimeCase) -> None:
    data = bytes(range(256)) * 4096 + os.urandom(12345)

    finished = await finish(await start(runtime, "cat", stdin=data))

    assert finished.status == ExitStatus(exit_code=0)
    assert finished.stdout == data


async def test_a_job_given_no_input_reads_end_of_file_at_once(runtime: RuntimeCase) -> None:
    finished = await finish(await start(runtime, "cat"))

    assert (finished.status, finished.stdout) == (ExitStatus(exit_code=0), b"")


async def test_a_job_that_does_not_read_its_input_still_ends_normally(runtime: RuntimeCase) -> None:
    finished = await finish(await start(runtime, "true", stdin=b"unread" * 1_000_000))

    assert finished.status == ExitStatus(exit_code=0)


async def test_streamed_stdin_is_read_as_each_piece_comes(runtime: RuntimeCase) -> None:
    more = asyncio.Event()

    async def typed() -> AsyncIterator[bytes]:
        yield b"one\n"
        await more.wait()  # the second line comes only after the answer to the first
        yield b"two\n"

    script = 'read a; echo "got $a"; read b; echo "then $b"; cat'
    execution = await start(runtime, "sh", "-c", script, stdin=typed())
    batches = execution.output()

    assert (await read_until(batches, b"got one\n")).endswith(b"got one\n")
    more.set()
    finished = await finish(execution, batches)

    assert finished.status == ExitStatus(exit_code=0)
    assert finished.stdout == b"then two\n", "and end-of-file after the last piece"


async def test_a_job_that_exits_while_its_streamed_stdin_waits_still_ends(
    runtime: RuntimeCase,
) -> None:
    async def never_ending() -> AsyncIterator[bytes]:
        yield b"first\n"
        await asyncio.Event().wait()
        yield b"never"

    finished = await finish(await start(runtime, "head", "-n", "1", stdin=never_ending()))

    assert (finished.status, finished.stdout) == (ExitStatus(exit_code=0), b"first\n")


#: A pause of the reader longer than any runtime waits for a job's pipes to
#: close after it exited. The stall is the behaviour under test (a slow store
#: behind the reader), not a way to wait for something.
STALL_SECONDS = 1.5

#: Writes N bytes to stdout, waits until the runtime has read all of them (the
#: pipe is empty), then writes "tail" to stderr and exits. With N at the
#: runtime's high-water mark, the tail is written while the runtime has
#: stopped reading, waiting for its reader to catch up.
WRITE_THEN_TAIL = """
import fcntl, struct, sys, termios, time
sys.stdout.buffer.write(b"x" * int(sys.argv[1]))
sys.stdout.buffer.flush()
while struct.unpack("i", fcntl.ioctl(1, termios.FIONREAD, b"0000"))[0]:
    time.sleep(0.001)
sys.stderr.buffer.write(b"tail\\n")
"""


async def test_a_reader_that_falls_behind_still_gets_all_the_output(runtime: RuntimeCase) -> None:
    host_only(runtime, "writes with the host's python")
    execution = await start(runtime, sys.executable, "-c", WRITE_THEN_TAIL, str(HIGH_WATER))

    # The reader stalls, as behind a slow store: until the job has exited (or
    # could not, for want of a reader), and then a while longer.
    await asyncio.wait([asyncio.ensure_future(execution.wait())], timeout=DEADLINE / 2)
    await asyncio.sleep(STALL_SECONDS)
    finished = await finish(execution)

    assert finished.status == ExitStatus(exit_code=0)
    assert len(finished.stdout) == HIGH_WATER
    assert finished.stderr == b"tail\n", "output written while the reader was behind was lost"


async def test_the_job_runs_with_the_environment_and_directory_it_is_given(
    runtime: RuntimeCase, tmp_path: Path
) -> None:
    cwd = str(tmp_path) if runtime.on_host else "/tmp"
    execution = await start(
        runtime, "sh", "-c", 'echo "$GREETING"; pwd', env={"GREETING": "hello"}, cwd=cwd
    )

    finished = await finish(execution)

    assert finished.stdout.decode().splitlines() == ["hello", cwd]


# -- stopping a job -------------------------------------------------------------


async def test_terminate_stops_a_sleeping_job(runtime: RuntimeCase) -> None:
    execution = await start(runtime, "sleep", "100")

    execution.terminate()

    assert (await finish(execution)).status.signal == signal.SIGTERM


async def test_a_job_that_ignores_sigterm_survives_terminate_and_dies_on_kill(
    runtime: RuntimeCase, tmp_path: Path
) -> None:
    host_only(runtime, "the test touches a file in the job's directory")
    if runtime.own_kernel is not None:
        pytest.skip(f"{runtime.name}: gVisor caches the host's files; one made meanwhile is unseen")
    # The job says "ready" once it ignores SIGTERM, then waits for the file
    # "go" and says "survived": only a job still alive after terminate() can.
    script = (
        'trap "" TERM; echo ready; until [ -e go ]; do sleep 0.01; done; echo survived; sleep 100'
    )
    execution = await start(runtime, "sh", "-c", script, cwd=str(tmp_path))
    batches = execution.output()
    await read_until(batches, b"ready\n")

    execution.terminate()
    (tmp_path / "go").touch()
    await read_until(batches, b"survived\n")
    execution.kill()

    assert (await finish(execution, batches)).status == ExitStatus(signal=signal.SIGKILL)


async def test_when_the_main_process_exits_the_processes_it_left_behind_are_killed(
    runtime: RuntimeCase,
) -> None:
    host_processes_only(runtime, "looks for the left-behind process on the host")
    # The background sleep holds the job's stdout open: output() can only end
    # (before its fallback drain timeout) if the sleep is killed.
    execution = await start(runtime, "sh", "-c", "sleep 100 & echo $!")

    finished = await finish(execution)

    assert finished.status == ExitStatus(exit_code=0)
    left_behind = int(finished.stdout)
    eventually(
        lambda: _has_exited(left_behind), DEADLINE, f"process {left_behind} left behind to die"
    )


def _has_exited(pid: int) -> bool:
    """Whether ``pid`` has exited (gone, or a zombie not yet reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except FileNotFoundError:
        return True
    return stat[stat.rindex(b")") + 2 :].split()[0] in (b"Z", b"X")


# -- a job that cannot start ------------------------------------------------------


async def test_a_command_that_does_not_exist_raises_spawn_error_naming_it(
    runtime: RuntimeCase,
) -> None:
    if spawned_inside(runtime):
        pytest.skip(f"{runtime.name}: its init starts, then fails to run it (the next test)")
    with pytest.raises(SpawnError) as raised:
        await start(runtime, "no-such-command-jobdock-test", "arg")

    assert "no-such-command-jobdock-test" in raised.value.message
    assert raised.value.errno == errno.ENOENT


async def test_a_container_command_that_does_not_exist_fails_saying_so(
    runtime: RuntimeCase,
) -> None:
    if not spawned_inside(runtime):
        pytest.skip("process: the previous test")
    finished = await finish(await start(runtime, "no-such-command-jobdock-test", "arg"))

    # The init says it on stderr: docker-init (tini) names the command and
    # exits 127; podman's catatonit exits 1; gVisor's runsc exits 128.
    assert finished.status.exit_code in (1, 127, 128)
    assert b"exec" in finished.stderr


async def test_a_file_that_is_not_executable_raises_spawn_error_naming_it(
    runtime: RuntimeCase, tmp_path: Path
) -> None:
    host_only(runtime, "the script is a file on the host")
    if spawned_inside(runtime):
        pytest.skip(f"{runtime.name}: runsc starts, then fails to run it (exit 126-128)")
    script = tmp_path / "not-executable.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o644)

    with pytest.raises(SpawnError) as raised:
        await start(runtime, str(script))

    assert str(script) in raised.value.message
    assert raised.value.errno == errno.EACCES


async def test_a_working_directory_that_does_not_exist_raises_spawn_error_naming_it(
    runtime: RuntimeCase, tmp_path: Path
) -> None:
    host_only(runtime, "an engine makes a missing working directory")
    missing = tmp_path / "no" / "such" / "dir"

    with pytest.raises(SpawnError) as raised:
        await start(runtime, "true", cwd=str(missing))

    assert str(missing) in raised.value.message
    assert "'true'" not in raised.value.message, "the command is fine; the directory is not"


# -- confinement (runtimes that put each job in a cgroup) -------------------------


def _confines(runtime: RuntimeCase) -> bool:
    confinement = getattr(runtime.runtime, "confinement", None)
    return confinement is not None and confinement.hierarchy is not None


def _alive(pid: int) -> bool:
    """Whether the process runs (a zombie has ended)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except OSError:
        return False


@pytest.mark.parametrize(
    "script",
    [
        "(setsid sleep 300 & echo $! >&2); echo started",
        # Out of the session, and with none of the attempt's environment.
        "(setsid env -i sleep 300 & echo $! >&2); echo started",
        # Its parent is still alive when the job ends.
        "setsid sh -c 'sleep 300 & echo $! >&2; wait' & sleep 0.2; echo started",
    ],
    ids=["setsid", "setsid-no-env", "grandchild"],
)
async def test_the_end_of_the_main_process_kills_children_that_left_its_session(
    runtime: RuntimeCase, script: str
) -> None:
    host_processes_only(runtime, "a container's processes end with it")

    finished = await finish(await start(runtime, "sh", "-c", script))

    escaped = int(finished.stderr)
    eventually(lambda: not _alive(escaped), what="the escaped child")


async def test_a_job_stopped_after_reaching_its_process_limit_says_it_reached_it(
    runtime: RuntimeCase,
) -> None:
    if not _confines(runtime):
        pytest.skip("this runtime does not confine its jobs (not root, or no cgroups)")
    forks = (
        "import os, time\n"
        "try:\n"
        "    while True:\n"
        "        if os.fork() == 0: time.sleep(30)\n"
        "except OSError: print('forked', flush=True); time.sleep(30)"
    )
    if runtime.own_kernel is not None:
        pytest.skip(f"{runtime.name}: the cgroup's pids.max counts gVisor's own threads too")
    execution = await start(runtime, sys.executable, "-c", forks, resources={"pids": 8})
    await read_until(execution.output(), b"forked")

    execution.kill()  # as its timeout would
    finished = await finish(execution)

    assert finished.status.limit == "reached its limit of 8 processes (fork failed)"
    outcome = outcome_of(finished.status, Reason.TIMEOUT, 5)
    assert outcome.message.startswith("reached its limit of 8 processes"), outcome.message
    assert "timed out after 5s" in outcome.message


async def test_a_confined_job_reports_its_accounting(runtime: RuntimeCase) -> None:
    if not _confines(runtime):
        pytest.skip("this runtime does not confine its jobs (not root, or no cgroups)")

    finished = await finish(await start(runtime, "true", resources={"pids": 8}))

    accounting = finished.status.accounting
    assert accounting is not None and accounting.isolation.startswith("cgroup v")
    assert accounting.limits == {"pids": 8}
    assert accounting.cpu_seconds is not None and accounting.peak_memory is not None
