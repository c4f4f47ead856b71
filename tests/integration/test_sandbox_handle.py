"""Library mode, holding a running command (tjob's library): start it, ask
its status, stop it from another task, read its output with several readers
each from the start; and however a sandboxed run ends, no cgroup is left."""

from __future__ import annotations

import asyncio
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from jobdock import JobState, Reason, Sandbox, SandboxJob, Stream
from jobdock.errors import SpawnError
from jobdock.runtimes import cgroups
from support import cgroups_missing, eventually

#: Prints 1, 2, 3 a tenth of a second apart.
COUNT = ["sh", "-c", "for i in 1 2 3; do echo $i; sleep 0.1; done"]


async def _text(job: SandboxJob, stream: Stream | None = None) -> str:
    return b"".join([data async for _, data in job.output(stream)]).decode()


async def test_a_started_command_runs_while_its_status_is_asked_and_stops_on_request() -> None:
    async with Sandbox() as box:
        job = await box.start(["sleep", "30"], kill_grace=5)
        running = job.status()
        stopper = asyncio.ensure_future(job.stop())  # from another task
        started = time.monotonic()
        result = await job.wait()

    assert (running.state, running.result) == (JobState.RUNNING, None)
    assert running.pid == job.pid and job.pid is not None
    assert await stopper == result
    # sleep has no SIGTERM handler: it ends at once, not after the grace.
    assert time.monotonic() - started < 2
    assert (result.state, result.reason) == (JobState.CANCELLED, Reason.CANCELLED)
    assert job.status().state is JobState.CANCELLED and job.status().result == result


async def test_every_reader_reads_the_output_from_the_start() -> None:
    async with Sandbox() as box:
        job = await box.start(COUNT)
        early = asyncio.ensure_future(_text(job))
        async for _, data in job:  # a reader that stops after the first piece
            assert data.startswith(b"1")
            break
        during = asyncio.ensure_future(_text(job))
        result = await job.wait()
        late = await _text(job)  # after the end

    assert result.ok
    assert await early == await during == late == "1\n2\n3\n"
    assert result.stdout == b"1\n2\n3\n"


async def test_a_reader_may_read_one_stream() -> None:
    async with Sandbox() as box:
        job = await box.start(["sh", "-c", "echo out; echo err >&2"])
        assert await _text(job, Stream.STDERR) == "err\n"
        assert await _text(job, Stream.STDOUT) == "out\n"


async def test_the_timeout_applies_while_nobody_waits() -> None:
    async with Sandbox() as box:
        job = await box.start(["sleep", "30"], timeout=0.3, kill_grace=1)
        ended = await _until(lambda: job.status().result is not None)  # no wait()

    assert ended
    result = job.status().result
    assert result is not None and (result.state, result.reason) == (JobState.FAILED, Reason.TIMEOUT)


async def test_a_wait_that_times_out_leaves_the_command_running() -> None:
    async with Sandbox() as box:
        job = await box.start(["sleep", "30"])
        with pytest.raises(TimeoutError):
            await job.wait(timeout=0.1)
        assert job.status().state is JobState.RUNNING
        result = await job.stop(kill=True)

    assert result.state is JobState.CANCELLED


async def test_leaving_the_sandbox_kills_what_still_runs() -> None:
    async with Sandbox() as box:
        job = await box.start(["sleep", "30"])

    assert job.status().state is JobState.CANCELLED
    assert not _alive(job.pid)


async def _until(check: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


def _alive(pid: int | None) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


# -- no cgroup is left, however a run ends ----------------------------------------------


needs_cgroups = pytest.mark.skipif(cgroups_missing() is not None, reason=cgroups_missing() or "")


def _groups(parent: str) -> list[Path]:
    """The groups under ``parent``, in every controller (the parent too)."""
    return [
        path
        for top in Path("/sys/fs/cgroup").glob(f"*/**/{parent}")
        for path in [top, *(child for child in top.iterdir() if child.is_dir())]
    ]


def _children(parent: str) -> list[Path]:
    return [path for path in _groups(parent) if path.name != parent]


async def _normal(box: Sandbox) -> None:
    assert (await box.run(["true"])).ok


async def _error(box: Sandbox) -> None:
    assert (await box.run(["sh", "-c", "exit 3"])).exit_code == 3


async def _spawn_error(box: Sandbox) -> None:
    with pytest.raises(SpawnError):
        await box.run(["/no/such/command"])


async def _cancel(box: Sandbox) -> None:
    marker = Path(tempfile.gettempdir()) / f"jobdock-test-{secrets.token_hex(8)}"
    run = asyncio.ensure_future(box.run(["sh", "-c", f"touch {marker}; exec sleep 30"]))
    assert await _until(marker.exists)
    marker.unlink()
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run


async def _cancel_while_starting(box: Sandbox) -> None:
    run = asyncio.ensure_future(box.run(["sleep", "30"]))
    await asyncio.sleep(0)  # it is waiting for the spawning thread
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run


async def _stop(box: Sandbox) -> None:
    job = await box.start(["sleep", "30"])
    assert (await job.stop()).state is JobState.CANCELLED


async def _timeout(box: Sandbox) -> None:
    result = await box.run(["sleep", "30"], timeout=0.2, kill_grace=1)
    assert result.reason is Reason.TIMEOUT


async def _output_limit(box: Sandbox) -> None:
    result = await box.run(["yes"], output_limit=1000)
    assert (result.reason, len(result.stdout)) == (Reason.OUTPUT_LIMIT, 1000)


async def _escaped_child(box: Sandbox) -> None:
    result = await box.run(["sh", "-c", "(setsid sleep 30 &); echo forked"])
    assert result.stdout == b"forked\n"


ENDINGS: dict[str, Callable[[Sandbox], Awaitable[None]]] = {
    "normal": _normal,
    "error": _error,
    "spawn_error": _spawn_error,
    "cancel": _cancel,
    "cancel_while_starting": _cancel_while_starting,
    "stop": _stop,
    "timeout": _timeout,
    "output_limit": _output_limit,
    "escaped_child": _escaped_child,
}


@pytest.fixture
async def parent() -> AsyncIterator[str]:
    """A cgroup parent of this test's own (others' sandboxes share the default)."""
    name = f"jobdock-test-{secrets.token_hex(4)}"
    yield name
    for path in sorted(_groups(name), key=lambda p: len(p.parts), reverse=True):
        path.rmdir()  # so that a failure leaves nothing behind either


@needs_cgroups
@pytest.mark.parametrize("ending", ENDINGS, ids=str)
async def test_no_run_leaves_its_cgroup_however_it_ends(ending: str, parent: str) -> None:
    async with Sandbox(cgroup_parent=parent) as box:
        assert box.confinement.hierarchy is not None, box.confinement.problem
        for _ in range(3):
            await ENDINGS[ending](box)
        left = _children(parent)

    assert left == []
    assert _groups(parent) == []


def _cgroup_dirs(pid: int) -> list[Path]:
    """The directories of the groups ``pid`` is in, one per v1 controller."""
    found = []
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(","):
            if controller in cgroups.V1_CONTROLLERS:
                found.append(Path(f"/sys/fs/cgroup/{controller}{path}"))
    return found


@needs_cgroups
def test_a_run_interrupted_by_ctrl_c_leaves_no_cgroup(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    script = (
        "from jobdock import sandbox\n"
        f"sandbox.run(['sh', '-c', 'echo $$ > {pid_file}; exec sleep 30'])\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True)
    pid = int(eventually(lambda: pid_file.exists() and pid_file.read_text().strip(), timeout=30))
    dirs = _cgroup_dirs(pid)
    assert any("/jobdock-sandbox/job.0." in str(path) for path in dirs), dirs

    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=30)

    assert "KeyboardInterrupt" in stderr
    assert not _alive(pid)
    assert [path for path in dirs if "/jobdock-sandbox/" in str(path) and path.exists()] == []
