"""The Runtime contract where it applies to the Slurm runtime, against a real
one-node Slurm cluster the session starts (tests/slurm.py): the contract
suite's own cases (imported from test_runtime.py, run here on a Slurm
``runtime``): exit codes and signals, separate and large streams, stdin,
environment and directory, stop and kill, what a job leaves behind, what
cannot start; then what only Slurm has: live output from the shared files,
an OOM kill under ``--mem``, a job pending on resources while another runs,
a pending job stopped, many jobs followed at once, the partition a job may
choose, the worker's environment kept out.

Not here: streamed stdin (the runtime refuses it: the job reads a file on
the shared file system), process limits and cgroup accounting (Slurm's).
The jobdock timeout of a Slurm job is the worker's (test_slurm_worker.py).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import test_runtime
from test_runtime import Finished, collect, read_until

import slurm
from conftest import RuntimeCase  # tests/contract/conftest.py
from jobdock.errors import SpawnError
from jobdock.models import JobSpec, Reason, Stream
from jobdock.runtimes import ExitStatus
from jobdock.runtimes.base import AttemptInfo
from jobdock.runtimes.slurm import SlurmExecution, SlurmOptions, SlurmRuntime
from jobdock.submit import new_job_id

#: The contract suite's cases that apply, collected here to run on Slurm.
CONTRACT = (
    "test_a_command_that_does_not_exist_raises_spawn_error_naming_it",
    "test_a_file_that_is_not_executable_raises_spawn_error_naming_it",
    "test_a_job_given_no_input_reads_end_of_file_at_once",
    "test_a_job_killed_by_a_signal_reports_the_signal",
    "test_a_job_that_does_not_read_its_input_still_ends_normally",
    "test_a_job_that_ignores_sigterm_survives_terminate_and_dies_on_kill",
    "test_a_reader_that_falls_behind_still_gets_all_the_output",
    "test_a_working_directory_that_does_not_exist_raises_spawn_error_naming_it",
    "test_large_output_on_both_streams_arrives_separately_and_completely",
    "test_stdin_reaches_the_job_byte_for_byte",
    "test_stdout_and_stderr_arrive_separately_and_completely",
    "test_terminate_stops_a_sleeping_job",
    "test_the_end_of_the_main_process_kills_children_that_left_its_session",
    "test_the_exit_code_of_the_command_is_reported",
    "test_the_job_runs_with_the_environment_and_directory_it_is_given",
    "test_when_the_main_process_exits_the_processes_it_left_behind_are_killed",
)
globals().update({name: getattr(test_runtime, name) for name in CONTRACT})

ENV = {"PATH": os.environ.get("PATH") or "/usr/local/bin:/usr/bin:/bin"}
#: Every wait ends by then (a Slurm job takes a second or two to start).
DEADLINE = 30.0


@pytest.fixture
async def slurm_runtime(
    slurm_cluster: slurm.SlurmCluster, tmp_path: Path
) -> AsyncIterator[SlurmRuntime]:
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


@pytest.fixture
def runtime(slurm_runtime: SlurmRuntime) -> RuntimeCase:
    """The contract cases' runtime: Slurm's."""
    return RuntimeCase("slurm", slurm_runtime)


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


async def test_output_is_read_while_the_job_runs(
    slurm_runtime: SlurmRuntime, tmp_path: Path
) -> None:
    script = "echo first; until [ -e go ]; do sleep 0.05; done; echo second"
    execution = await start(slurm_runtime, "sh", "-c", script, cwd=str(tmp_path))
    batches = execution.output()

    await read_until(batches, b"first\n")
    (tmp_path / "go").touch()
    assert (await read_until(batches, b"second\n")).endswith(b"second\n")
    assert await asyncio.wait_for(execution.wait(), DEADLINE) == ExitStatus(exit_code=0)
    await execution.close()


async def test_a_job_over_its_memory_is_killed_and_reported_oom(
    slurm_runtime: SlurmRuntime,
) -> None:
    grow = "x = bytearray(300 << 20); print(len(x))"
    execution = await start(slurm_runtime, sys.executable, "-c", grow, resources={"memory": "64m"})

    finished = await finish(execution)

    assert finished.status.reason is Reason.OOM
    assert finished.status.signal == signal.SIGKILL
    assert finished.stdout == b""


async def test_a_job_waits_pending_on_resources_while_another_holds_the_node(
    slurm_runtime: SlurmRuntime, slurm_cluster: slurm.SlurmCluster, tmp_path: Path
) -> None:
    cpus = {"cpus": slurm_cluster.cpus}
    holder = await start(
        slurm_runtime,
        "sh",
        "-c",
        "until [ -e go ]; do sleep 0.05; done",
        cwd=str(tmp_path),
        resources=cpus,
    )
    await noted(holder)
    waiter = await start(slurm_runtime, "echo", "ran", resources=cpus)
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
    # RUNNING, or COMPLETED if it ended within one poll.
    assert said[-1].endswith(f" on {slurm_cluster.node}")
    assert (await finish(holder)).status == ExitStatus(exit_code=0)
    assert (await finish(waiter)).stdout == b"ran\n"


async def test_a_pending_job_that_is_stopped_is_cancelled_without_running(
    slurm_runtime: SlurmRuntime, slurm_cluster: slurm.SlurmCluster, tmp_path: Path
) -> None:
    cpus = {"cpus": slurm_cluster.cpus}
    holder = await start(slurm_runtime, "sleep", "100", resources=cpus)
    await noted(holder)
    waiter = await start(slurm_runtime, "touch", str(tmp_path / "ran"), resources=cpus)

    waiter.terminate()
    holder.kill()

    assert (await finish(waiter)).status.signal == signal.SIGTERM
    assert not (tmp_path / "ran").exists()
    assert (await finish(holder)).status.signal == signal.SIGKILL


async def test_many_jobs_are_followed_at_once(slurm_runtime: SlurmRuntime) -> None:
    executions = [
        await start(slurm_runtime, "sh", "-c", f"echo job {n}; exit {n % 4}") for n in range(12)
    ]

    finished = await asyncio.gather(*(finish(e) for e in executions))

    assert [f.stdout for f in finished] == [f"job {n}\n".encode() for n in range(12)]
    assert [f.status.exit_code for f in finished] == [n % 4 for n in range(12)]


async def test_a_job_goes_to_the_partition_it_may_choose_and_not_another(
    slurm_runtime: SlurmRuntime,
) -> None:
    execution = await start(
        slurm_runtime,
        "sh",
        "-c",
        'echo "$SLURM_JOB_PARTITION"',
        labels={"slurm.partition": "other"},
    )
    assert (await finish(execution)).stdout == b"other\n"

    with pytest.raises(SpawnError, match="partition 'secret'"):
        await start(slurm_runtime, "true", labels={"slurm.partition": "secret"})
