"""The sandbox without a server: run one command with limits and isolation
in this process and get its outcome and output (library mode).

The same runtime and confinement as a worker's (cgroups, bubblewrap), the
same spec fields, the same outcome; nothing is stored. :meth:`Sandbox.start`
gives a :class:`SandboxJob` to hold while the command runs (its status, a
stop from anywhere, its output for any number of readers, each from the
start); :meth:`Sandbox.run` is ``start`` then ``wait``, and the synchronous
:func:`run` wraps it.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Unpack

from jobdock.models import Accounting, ExitStatus, JobSpec, JobState, Reason, Stream, outcome_of
from jobdock.runtimes.identity import job_home
from jobdock.runtimes.isolation import Confinement
from jobdock.runtimes.process import ProcessExecution, ProcessRuntime

if TYPE_CHECKING:
    from jobdock.models import RunFields

#: PATH of a sandboxed command when ``env`` does not give one.
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True, slots=True)
class SandboxResult:
    """How a sandboxed command ended, what it wrote and what it used."""

    state: JobState
    reason: Reason
    message: str
    exit_code: int | None
    signal: int | None
    stdout: bytes
    stderr: bytes
    accounting: Accounting | None

    @property
    def ok(self) -> bool:
        return self.state is JobState.SUCCEEDED


@dataclass(frozen=True, slots=True)
class SandboxStatus:
    """Where a sandboxed command is: running (``result`` None), or ended."""

    state: JobState
    pid: int | None
    #: Epoch seconds.
    started_at: float
    finished_at: float | None
    #: Output kept so far, both streams (within ``output_limit``).
    output_bytes: int
    result: SandboxResult | None


class Sandbox:
    """Runs commands confined as the host allows; detects that once.

    ``unisolated`` says what to do when a command asks for limits or
    isolation this host cannot enforce: ``run`` it anyway (the result's
    accounting says ``isolation: none``) or ``refuse`` (SpawnError).
    Leaving ``async with`` (or :meth:`close`) kills what still runs.
    """

    def __init__(
        self,
        *,
        cgroups: Literal["auto", "v1", "v2", "off"] = "auto",
        cgroup_parent: str | None = None,
        unisolated: Literal["run", "refuse"] = "run",
    ) -> None:
        # Shared by every sandboxing process: each group has a unique name,
        # and leftovers are not collected (only a server owns its parent).
        parent = cgroup_parent or "jobdock-sandbox"
        self.confinement = Confinement.detect(
            cgroups_mode=cgroups, parent=parent, unconfined=unisolated, every_job=True
        )
        self._runtime = ProcessRuntime(self.confinement)
        self._jobs: set[SandboxJob] = set()

    def close(self) -> None:
        """Kill what still runs (reaped, its group removed) and release the
        runtime's threads."""
        self._runtime.close()

    async def __aenter__(self) -> Sandbox:
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            for job in list(self._jobs):
                await job.stop(kill=True)
        finally:
            self.close()

    async def start(
        self,
        command: list[str],
        *,
        stdin: bytes = b"",
        env: Mapping[str, str] | None = None,
        **spec: Unpack[RunFields],
    ) -> SandboxJob:
        """Start ``command`` and return at once with its handle. ``spec``
        takes JobSpec's fields (``resources``, ``isolation``, ``cwd``,
        ``timeout``, ``kill_grace``, ``output_limit``, ...); raises
        pydantic's ValidationError for bad fields and SpawnError when the
        command cannot start. Without a ``cwd`` it runs in this process's
        directory, as ``subprocess.run``."""
        if spec.get("cwd") is None:
            spec["cwd"] = os.getcwd()
        job = JobSpec.model_validate({"command": command, **spec})
        base = {"PATH": DEFAULT_PATH, "HOME": job_home(job, None)}
        environment = {**base, **(env or {}), **job.env}
        execution = await self._runtime.start(job, stdin, environment)
        handle = SandboxJob(job, execution, on_end=self._jobs.discard)
        self._jobs.add(handle)
        return handle

    async def run(
        self,
        command: list[str],
        *,
        stdin: bytes = b"",
        env: Mapping[str, str] | None = None,
        **spec: Unpack[RunFields],
    ) -> SandboxResult:
        """Run ``command`` to its end (see :meth:`start`). Cancelled, it
        kills the command and waits for it to be gone."""
        job = await self.start(command, stdin=stdin, env=env, **spec)
        try:
            return await job.wait()
        except BaseException:
            await job.stop(kill=True)
            raise


class SandboxJob:
    """A command started by :meth:`Sandbox.start`, held while it runs.

    Its timeout and output limit apply without anyone waiting. Its output
    is kept (within ``output_limit``) so that every reader, however late,
    reads it from the start; the command is never slowed by a slow reader.
    """

    def __init__(
        self,
        spec: JobSpec,
        execution: ProcessExecution,
        on_end: Callable[[SandboxJob], object] | None = None,
    ) -> None:
        self.spec = spec
        self._execution = execution
        self.pid = execution.pid
        self.started_at = execution.started_at
        self._chunks: list[tuple[Stream, bytes]] = []
        self._kept = 0
        self._output_done = False
        self._grown = asyncio.Event()
        self._stop_reason: Reason | None = None
        self._stopping: asyncio.Task[ExitStatus] | None = None
        self._result: SandboxResult | None = None
        self._finished_at: float | None = None
        self._ended: asyncio.Task[SandboxResult] = asyncio.ensure_future(self._supervise())
        if on_end is not None:
            self._ended.add_done_callback(lambda _: on_end(self))

    def status(self) -> SandboxStatus:
        """Where the command is now (no waiting)."""
        result = self._result
        return SandboxStatus(
            state=JobState.RUNNING if result is None else result.state,
            pid=self.pid,
            started_at=self.started_at,
            finished_at=self._finished_at,
            output_bytes=self._kept,
            result=result,
        )

    async def wait(self, timeout: float | None = None) -> SandboxResult:
        """Wait for the command to end and return how; after ``timeout``
        seconds raises TimeoutError (the command goes on). Cancelling a
        wait does not stop the command."""
        async with asyncio.timeout(timeout):
            return await asyncio.shield(self._ended)

    async def stop(self, *, kill: bool = False) -> SandboxResult:
        """Stop the command: SIGTERM to each of its processes, SIGKILL after
        its ``kill_grace`` (at once with ``kill``); returns how it ended
        (``cancelled``, unless it had ended already). Safe to call from any
        task, any number of times."""
        if not self._ended.done():
            self._stop_reason = self._stop_reason or Reason.CANCELLED
            if kill:
                self._execution.kill()
            else:
                self._stop_once()
        return await self.wait()

    def __aiter__(self) -> AsyncIterator[tuple[Stream, bytes]]:
        return self.output()

    async def output(self, stream: Stream | None = None) -> AsyncIterator[tuple[Stream, bytes]]:
        """The output from the start, in order, as ``(Stream, bytes)``
        pieces, until the command has ended and all of it is read
        (``stream``: that stream only)."""
        index = 0
        while True:
            while index < len(self._chunks):
                piece = self._chunks[index]
                index += 1
                if stream is None or piece[0] is stream:
                    yield piece
            if self._output_done:
                return
            await self._grown.wait()

    def _stop_once(self) -> None:
        if self._stopping is None:
            self._stopping = asyncio.ensure_future(_stop(self._execution, self.spec.kill_grace))

    def _keep(self, stream: Stream, data: bytes) -> None:
        limit = self.spec.output_limit
        if limit is not None and self._kept + len(data) > limit:
            data = data[: limit - self._kept]
            if self.spec.on_output_limit == "stop" and self._stop_reason is None:
                self._stop_reason = Reason.OUTPUT_LIMIT
                self._stop_once()
        if data:
            self._kept += len(data)
            self._chunks.append((stream, data))
            self._wake()

    def _wake(self) -> None:
        self._grown.set()
        self._grown = asyncio.Event()

    async def _read(self) -> None:
        try:
            async for batch in self._execution.output():
                for stream, data in batch:
                    self._keep(stream, data)
        finally:
            self._output_done = True
            self._wake()

    async def _supervise(self) -> SandboxResult:
        execution = self._execution
        reader = asyncio.ensure_future(self._read())
        try:
            try:
                async with asyncio.timeout(self.spec.timeout):
                    status = await execution.wait()
            except TimeoutError:
                self._stop_reason = self._stop_reason or Reason.TIMEOUT
                self._stop_once()
                status = await execution.wait()
            await reader
        except BaseException:
            # Cancelled (the loop is closing): nothing may outlive it.
            execution.kill()
            reader.cancel()
            await execution.wait()  # the group is removed before the exit is told
            raise
        finally:
            if self._stopping is not None:
                self._stopping.cancel()
            await execution.close()
        self._finished_at = time.time()
        self._result = self._outcome(status)
        return self._result

    def _outcome(self, status: ExitStatus) -> SandboxResult:
        outcome = outcome_of(status, self._stop_reason, self.spec.timeout)
        stdout = b"".join(data for stream, data in self._chunks if stream is Stream.STDOUT)
        stderr = b"".join(data for stream, data in self._chunks if stream is Stream.STDERR)
        return SandboxResult(
            state=outcome.state,
            reason=outcome.reason,
            message=outcome.message,
            exit_code=status.exit_code,
            signal=status.signal,
            stdout=stdout,
            stderr=stderr,
            accounting=status.accounting,
        )


async def _stop(execution: ProcessExecution, grace: float) -> ExitStatus:
    execution.terminate()
    try:
        async with asyncio.timeout(grace):
            status: ExitStatus = await execution.wait()
    except TimeoutError:
        execution.kill()
        status = await execution.wait()
    return status


def run(command: list[str], *, stdin: bytes = b"", **spec: Unpack[RunFields]) -> SandboxResult:
    """Run ``command`` in a sandbox and wait for it (see :meth:`Sandbox.run`)."""

    async def once() -> SandboxResult:
        async with Sandbox() as sandbox:
            return await sandbox.run(command, stdin=stdin, **spec)

    return asyncio.run(once())


__all__ = ["Sandbox", "SandboxJob", "SandboxResult", "SandboxStatus", "run"]
