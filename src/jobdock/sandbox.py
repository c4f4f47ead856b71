"""The sandbox without a server: run one command with limits and isolation
in this process and get its outcome and output (library mode).

The same runtime and confinement as a worker's (cgroups, bubblewrap), the
same spec fields, the same outcome; nothing is stored. The synchronous
:func:`run` wraps the asynchronous :meth:`Sandbox.run`.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from jobdock.models import Accounting, ExitStatus, JobSpec, JobState, Reason, Stream, outcome_of
from jobdock.runtimes.identity import job_home
from jobdock.runtimes.isolation import Confinement
from jobdock.runtimes.process import ProcessRuntime

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


class Sandbox:
    """Runs commands confined as the host allows; detects that once.

    ``unisolated`` says what to do when a command asks for limits or
    isolation this host cannot enforce: ``run`` it anyway (the result's
    accounting says ``isolation: none``) or ``refuse`` (SpawnError).
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

    def close(self) -> None:
        """Release the runtime's threads."""
        self._runtime.close()

    async def __aenter__(self) -> Sandbox:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    async def run(
        self,
        command: list[str],
        *,
        stdin: bytes = b"",
        env: Mapping[str, str] | None = None,
        **spec: Any,
    ) -> SandboxResult:
        """Run ``command`` to its end. ``spec`` takes JobSpec's fields
        (``resources``, ``isolation``, ``cwd``, ``timeout``, ``kill_grace``,
        ``output_limit``, ...); raises InvalidSpec-like pydantic errors for
        bad fields and SpawnError when the command cannot start. Without a
        ``cwd`` it runs in this process's directory, as ``subprocess.run``."""
        if spec.get("cwd") is None:
            spec["cwd"] = os.getcwd()
        job = JobSpec(command=command, **spec)
        base = {"PATH": DEFAULT_PATH, "HOME": job_home(job, None)}
        environment = {**base, **(env or {}), **job.env}
        execution = await self._runtime.start(job, stdin, environment)
        output: dict[Stream, bytearray] = {Stream.STDOUT: bytearray(), Stream.STDERR: bytearray()}
        stop_reason: Reason | None = None
        limit = job.output_limit
        stopping: list[asyncio.Future[ExitStatus]] = []

        async def read() -> None:
            nonlocal stop_reason
            kept = 0
            async for batch in execution.output():
                for stream, data in batch:
                    if limit is not None and kept + len(data) > limit:
                        data = data[: limit - kept]
                        if job.on_output_limit == "stop" and stop_reason is None:
                            stop_reason = Reason.OUTPUT_LIMIT
                            stopping.append(asyncio.ensure_future(_stop(execution, job.kill_grace)))
                    kept += len(data)
                    output[stream] += data

        reader = asyncio.ensure_future(read())
        try:
            try:
                status = await asyncio.wait_for(execution.wait(), job.timeout)
            except TimeoutError:
                stop_reason = stop_reason or Reason.TIMEOUT
                status = await _stop(execution, job.kill_grace)
            except BaseException:
                execution.kill()
                raise
            await reader
        finally:
            await execution.close()
        outcome = outcome_of(status, stop_reason, job.timeout)
        return SandboxResult(
            state=outcome.state,
            reason=outcome.reason,
            message=outcome.message,
            exit_code=status.exit_code,
            signal=status.signal,
            stdout=bytes(output[Stream.STDOUT]),
            stderr=bytes(output[Stream.STDERR]),
            accounting=status.accounting,
        )


async def _stop(execution: Any, grace: float) -> ExitStatus:
    execution.terminate()
    try:
        status: ExitStatus = await asyncio.wait_for(execution.wait(), grace)
    except TimeoutError:
        execution.kill()
        status = await execution.wait()
    return status


def run(command: list[str], *, stdin: bytes = b"", **spec: Any) -> SandboxResult:
    """Run ``command`` in a sandbox and wait for it (see :meth:`Sandbox.run`)."""

    async def once() -> SandboxResult:
        async with Sandbox() as sandbox:
            return await sandbox.run(command, stdin=stdin, **spec)

    return asyncio.run(once())


__all__ = ["Sandbox", "SandboxResult", "run"]
