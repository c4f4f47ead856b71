"""A worker ends every attempt, whatever goes wrong in jobdock's own code
(issue 15): an exception of a kind the worker did not expect, raised while
starting an attempt, used to leave its job running for ever, its lease
renewed by every heartbeat and its cancel answered 202 to no effect.

The store and the worker are real (SQLite in a temporary directory); the
runtime is the real process runtime with a bug put in its start.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path

from jobdock.engines import Engines
from jobdock.models import JobSpec, JobState, Reason
from jobdock.runtimes.base import AttemptInfo
from jobdock.runtimes.process import ProcessExecution, ProcessRuntime
from jobdock.settings import Settings
from jobdock.store.sql import SqlStore
from jobdock.submit import Policy, submit
from jobdock.worker import Worker


class BuggyRuntime(ProcessRuntime):
    """The process runtime, failing with something that is no SpawnError
    for the command ``buggy``."""

    async def start(
        self,
        spec: JobSpec,
        stdin: bytes,
        env: Mapping[str, str],
        info: AttemptInfo | None = None,
    ) -> ProcessExecution:
        if spec.command[:1] == ["buggy"]:
            raise KeyError("a bug in the runtime")
        return await super().start(spec, stdin, env, info)


async def test_an_unexpected_error_at_start_ends_the_attempt_as_spawn_error(
    tmp_path: Path,
) -> None:
    settings = Settings(home=tmp_path, heartbeat_seconds=0.2, lease_seconds=1, poll_seconds=0.1)
    async with SqlStore(settings.db_url) as store:
        engines = Engines(settings, BuggyRuntime())
        worker = Worker(store, settings, engines)
        await worker.start()
        try:
            broken = await submit(store, JobSpec(command=["buggy"]), Policy(settings))
            fine = await submit(store, JobSpec(command=["true"]), Policy(settings))

            async def ended(job_id: str) -> JobState:
                while not (job := await store.get_job(job_id)).terminal:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
                return job.state

            states = await asyncio.wait_for(
                asyncio.gather(ended(broken.id), ended(fine.id)), timeout=10
            )
        finally:
            await worker.stop()
            await engines.aclose()
        job = await store.get_job(broken.id)

    assert states == [JobState.FAILED, JobState.SUCCEEDED]
    assert job.reason is Reason.SPAWN_ERROR
    assert job.message is not None and "a bug in the runtime" in job.message
