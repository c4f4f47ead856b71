"""The Runtime contract where it applies to the Slurm runtime, against a real
one-node Slurm cluster the session starts (tests/slurm.py): exit codes,
separate streams, stdin, environment and directory, stop, timeout, large
output, many jobs followed at once; and what only Slurm has: an OOM kill
under ``--mem``, a job pending on resources while another runs, the
partition a job may choose.

Not here: streamed stdin (the runtime refuses it: the job reads a file on
the shared file system) and process ids (a Slurm job has none on the
submit host).
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from test_runtime import WRITE_BOTH, Finished, collect, read_until

import slurm
from jobdock.errors import SpawnError
from jobdock.models import JobSpec, Reason, Stream
from jobdock.runtimes import ExitStatus
from jobdock.runtimes.base import AttemptInfo
from jobdock.runtimes.slurm import SlurmExecution, SlurmOptions, SlurmRuntime
from jobdock.submit import new_job_id

ENV = {"PATH": os.environ.get("PATH") or "/usr/local/bin:/usr/bin:/bin"}
#: Every wait ends by then (a Slurm job takes a second or two to start).
DEADLINE = 30.0


@pytest.fixture
async def runtime(slurm_cluster: slurm.SlurmCluster, tmp_path: Path) -> AsyncIterator[SlurmRuntime]:
    runtime = SlurmRuntime(
        SlurmOptions(
            tmp_path / "slurm",
            partition="main",
            allowed={"partition": ["other"]},
            poll_seconds=0.1,
            conf=str(slurm_cluster.conf),
        )
    )
    yield runtime
    runtime.close()
    assert slurm.wait_no_jobs(slurm_cluster) == []


async def start(
    runtime: SlurmRuntime,
    *command: str,
    stdin: bytes = b"",
    env: dict[str, str] | None = None,
    **fields: object,
) -> SlurmExecution:
    spec = JobSpec(command=list(command), **fields)  # type: ignore[arg-type]
    return await runtime.start(spec, stdin, {**ENV, **(env or {})}, AttemptInfo(new_job_id(), 1))


async def finish(execution: SlurmExecution) -> Finished:
    try:
        output, status = await asyncio.wait_for(
            asyncio.gather(collect(execution.output()), execution.wait()), DEADLINE
        )
    except BaseException:
        execution.kill()
        raise
    finally:
        await execution.close()
    return Finished(status, output[Stream.STDOUT], output[Stream.STDERR])


async def noted(execution: SlurmExecution) -> list[str]:
    said: list[str] = []

    async def note(slurm_id: str, state: str) -> None:
        assert slurm_id == execution.slurm_id
        said.append(state)

    await asyncio.wait_for(execution.until_running(note), DEADLINE)
    return said


@pytest.mark.parametrize("code", [0, 3, 255])
async def test_the_exit_code_of_the_command_is_reported(runtime: SlurmRuntime, code: int) -> None:
    execution = await start(runtime, "sh", "-c", f"exit {code}")

    assert (await finish(execution)).status == ExitStatus(exit_code=code)


async def test_a_job_killed_by_a_signal_reports_the_signal(runtime: SlurmRuntime) -> None:
    execution = await start(runtime, "sh", "-c", "kill -s USR1 $$")

    assert (await finish(execution)).status.signal == signal.SIGUSR1


async def test_stdout_and_stderr_arrive_separately_and_completely(runtime: SlurmRuntime) -> None:
    size = 3 * 1024 * 1024
    execution = await start(runtime, sys.executable, "-c", WRITE_BOTH, str(size))

    finished = await finish(execution)

    assert finished.status == ExitStatus(exit_code=0)
    assert finished.stdout == random.Random(1).randbytes(size)
    assert finished.stderr == random.Random(2).randbytes(size)


async def test_stdin_reaches_the_job_byte_for_byte(runtime: SlurmRuntime) -> None:
    data = bytes(range(256)) * 4096 + os.urandom(12345)

    finished = await finish(await start(runtime, "cat", stdin=data))

    assert (finished.status, finished.stdout) == (ExitStatus(exit_code=0), data)


async def test_a_job_given_no_input_reads_end_of_file_at_once(runtime: SlurmRuntime) -> None:
    finished = await finish(await start(runtime, "cat"))

    assert (finished.status, finished.stdout) == (ExitStatus(exit_code=0), b"")


async def test_the_job_runs_with_its_environment_and_directory_not_the_workers(
    runtime: SlurmRuntime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WORKER_SECRET", "s3cret")  # the worker's, never a job's
    script = 'echo "$GREETING"; pwd; echo "${SLURM_JOB_ID:+slurm}"; echo "x${WORKER_SECRET}x"'
    execution = await start(
        runtime, "sh", "-c", script, env={"GREETING": "hi 'there'"}, cwd=str(tmp_path)
    )

    finished = await finish(execution)

    assert finished.stdout.decode().splitlines() == ["hi 'there'", str(tmp_path), "slurm", "xx"]


async def test_output_is_read_while_the_job_runs(runtime: SlurmRuntime, tmp_path: Path) -> None:
    script = "echo first; until [ -e go ]; do sleep 0.05; done; echo second"
    execution = await start(runtime, "sh", "-c", script, cwd=str(tmp_path))
    batches = execution.output()

    await read_until(batches, b"first\n")
    (tmp_path / "go").touch()
    assert (await read_until(batches, b"second\n")).endswith(b"second\n")
    assert await asyncio.wait_for(execution.wait(), DEADLINE) == ExitStatus(exit_code=0)
    await execution.close()


async def test_terminate_stops_a_sleeping_job(runtime: SlurmRuntime) -> None:
    execution = await start(runtime, "sleep", "100")
    await noted(execution)

    execution.terminate()

    assert (await finish(execution)).status.signal == signal.SIGTERM


async def test_a_job_that_ignores_sigterm_survives_terminate_and_dies_on_kill(
    runtime: SlurmRuntime, tmp_path: Path
) -> None:
    script = (
        'trap "" TERM; echo ready; until [ -e go ]; do sleep 0.05; done; echo survived; sleep 100'
    )
    execution = await start(runtime, "sh", "-c", script, cwd=str(tmp_path))
    batches = execution.output()
    await read_until(batches, b"ready\n")

    execution.terminate()
    (tmp_path / "go").touch()
    await read_until(batches, b"survived\n")
    execution.kill()

    assert (await finish(execution)).status == ExitStatus(signal=signal.SIGKILL)


async def test_a_job_over_its_memory_is_killed_and_reported_oom(runtime: SlurmRuntime) -> None:
    grow = "x = bytearray(300 << 20); print(len(x))"
    execution = await start(runtime, sys.executable, "-c", grow, resources={"memory": "64m"})

    finished = await finish(execution)

    assert finished.status.reason is Reason.OOM
    assert finished.status.signal == signal.SIGKILL
    assert finished.stdout == b""


async def test_a_job_waits_pending_on_resources_while_another_holds_the_node(
    runtime: SlurmRuntime, slurm_cluster: slurm.SlurmCluster, tmp_path: Path
) -> None:
    cpus = {"cpus": slurm_cluster.cpus}
    holder = await start(
        runtime,
        "sh",
        "-c",
        "until [ -e go ]; do sleep 0.05; done",
        cwd=str(tmp_path),
        resources=cpus,
    )
    await noted(holder)
    waiter = await start(runtime, "echo", "ran", resources=cpus)
    said: list[str] = []
    pending = asyncio.Event()

    async def note(slurm_id: str, state: str) -> None:
        said.append(state)
        if state == "PENDING (Resources)":
            pending.set()

    running = asyncio.ensure_future(waiter.until_running(note))
    await asyncio.wait_for(pending.wait(), DEADLINE)
    assert not running.done(), "it runs only once the node is free"
    (tmp_path / "go").touch()

    await asyncio.wait_for(running, DEADLINE)
    assert said[-1].startswith("RUNNING on ")
    assert (await finish(holder)).status == ExitStatus(exit_code=0)
    assert (await finish(waiter)).stdout == b"ran\n"


async def test_a_pending_job_that_is_stopped_is_cancelled_without_running(
    runtime: SlurmRuntime, slurm_cluster: slurm.SlurmCluster, tmp_path: Path
) -> None:
    cpus = {"cpus": slurm_cluster.cpus}
    holder = await start(runtime, "sleep", "100", resources=cpus)
    await noted(holder)
    waiter = await start(runtime, "touch", str(tmp_path / "ran"), resources=cpus)

    waiter.terminate()
    holder.kill()

    assert (await finish(waiter)).status.signal == signal.SIGTERM
    assert not (tmp_path / "ran").exists()
    assert (await finish(holder)).status.signal == signal.SIGKILL


async def test_many_jobs_are_followed_at_once(runtime: SlurmRuntime) -> None:
    executions = [
        await start(runtime, "sh", "-c", f"echo job {n}; exit {n % 4}") for n in range(12)
    ]

    finished = await asyncio.gather(*(finish(e) for e in executions))

    assert [f.stdout for f in finished] == [f"job {n}\n".encode() for n in range(12)]
    assert [f.status.exit_code for f in finished] == [n % 4 for n in range(12)]


async def test_a_job_goes_to_the_partition_it_may_choose_and_not_another(
    runtime: SlurmRuntime,
) -> None:
    execution = await start(
        runtime, "sh", "-c", 'echo "$SLURM_JOB_PARTITION"', labels={"slurm.partition": "other"}
    )
    assert (await finish(execution)).stdout == b"other\n"

    with pytest.raises(SpawnError, match="partition 'secret'"):
        await start(runtime, "true", labels={"slurm.partition": "secret"})


async def test_a_command_that_is_not_there_is_refused_before_it_is_submitted(
    runtime: SlurmRuntime, slurm_cluster: slurm.SlurmCluster
) -> None:
    with pytest.raises(SpawnError, match="no-such-command"):
        await start(runtime, "no-such-command")
    with pytest.raises(SpawnError, match="working directory"):
        await start(runtime, "true", cwd="/no/such/dir")
    assert slurm_cluster.active_jobs() == []
