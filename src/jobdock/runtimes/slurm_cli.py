"""Slurm's command-line tools, as the Slurm runtime uses them: ``sbatch`` to
submit, ``squeue`` to follow, ``scontrol`` to read an ended job's exit code
and to hand a job to a newer attempt, ``scancel`` to signal and cancel.

The tools rather than slurmrestd: they come with every Slurm install, talk
to slurmctld with the submit host's own munge credentials (slurmrestd needs
a JWT or a local socket set up by the operator), and read the cluster's
slurm.conf (``SLURM_CONF``) as the operator's users do. Accounting
(``sacct``) is not used: it needs slurmdbd and a database, which many
clusters have but a one-node test cluster does not; ``squeue --states=all``
and ``scontrol show job`` know a job until ``MinJobAge`` after its end, and
the batch script's own exit record covers the time after.

Imports only the foundation.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from dataclasses import dataclass

from jobdock.errors import SpawnError

#: Slurm states in which a job has not ended yet.
ACTIVE = frozenset(
    {
        "PENDING",
        "CONFIGURING",
        "RUNNING",
        "COMPLETING",
        "SUSPENDED",
        "REQUEUED",
        "REQUEUE_HOLD",
        "REQUEUE_FED",
        "RESIZING",
        "SIGNALING",
        "STAGE_OUT",
        "STOPPED",
    }
)
#: Of those, the states before the job's script runs.
WAITING = frozenset({"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED"})
#: Ended, through no fault of the job: it is given back to be run again.
LOST = frozenset({"NODE_FAIL", "PREEMPTED", "BOOT_FAIL"})

_FORMAT = "%i|%T|%r|%N|%j"
_TOOLS = ("sbatch", "squeue", "scontrol", "scancel")
_EXIT_CODE = re.compile(r"\bExitCode=(\d+):(\d+)")
#: How long one call of a tool may take before the runtime gives up on it.
CALL_SECONDS = 60.0


class SlurmUnavailable(SpawnError):
    """A Slurm tool failed (slurmctld does not answer, or refused the request)."""

    @property
    def transient(self) -> bool:
        """Whether slurmctld could not be reached (rather than refusing)."""
        return any(word in self.message for word in _UNREACHABLE)


#: What the tools say when slurmctld cannot be reached (or this process ran out of time).
_UNREACHABLE = (
    "Unable to contact slurm controller",
    "Socket timed out",
    "Communication connection failure",
    "Zero Bytes were transmitted",
    "did not answer",
)


@dataclass(frozen=True, slots=True)
class SlurmJob:
    """A Slurm job as squeue shows it."""

    job_id: str
    state: str
    reason: str
    node: str
    name: str

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    @property
    def waiting(self) -> bool:
        return self.state in WAITING


def _parse(out: str) -> dict[str, SlurmJob]:
    found = {}
    for line in out.splitlines():
        parts = line.split("|", 4)
        if len(parts) == 5:
            job = SlurmJob(*parts)
            found[job.job_id] = job
    return found


class Tools:
    """The tools, run with only what they need of an environment: the
    ``slurm.conf`` to read (none: Slurm's default) and a plain PATH. What
    sbatch is run with is what the batch script starts with (with
    ``--export=ALL``, Slurm's default and its fastest: ``NONE`` and ``NIL``
    cost a second or more per job here), so never the worker's own."""

    def __init__(self, conf: str | None = None) -> None:
        self.env = {"PATH": os.defpath}
        if conf:
            self.env["SLURM_CONF"] = conf
        self._paths = {name: shutil.which(name) or name for name in _TOOLS}

    async def call(self, *argv: str, stdin: bytes | None = None) -> str:
        """Run a Slurm tool; its stdout, or SlurmUnavailable with its stderr."""
        try:
            proc = await asyncio.create_subprocess_exec(
                self._paths.get(argv[0], argv[0]),
                *argv[1:],
                env=self.env,
                stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            raise SlurmUnavailable(f"cannot run {argv[0]}: {exc.strerror or exc}") from None
        try:
            async with asyncio.timeout(CALL_SECONDS):
                out, err = await proc.communicate(stdin)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise SlurmUnavailable(f"{argv[0]} did not answer in {CALL_SECONDS:g}s") from None
        if proc.returncode != 0:
            said = err.decode(errors="replace").strip().splitlines()
            raise SlurmUnavailable(f"{argv[0]} failed: {said[-1] if said else proc.returncode}")
        return out.decode(errors="replace")

    async def sbatch(self, options: list[str], script: str) -> str:
        """Submit ``script`` (a path) with ``options``; the new job's id."""
        out = await self.call("sbatch", "--parsable", *options, script)
        job_id = out.strip().split(";")[0]
        if not job_id.isdigit():
            raise SlurmUnavailable(f"sbatch answered {out.strip()!r}, not a job id")
        return job_id

    async def squeue(self, job_ids: list[str]) -> dict[str, SlurmJob]:
        """What Slurm knows of ``job_ids`` (those it has forgotten are missing)."""
        if not job_ids:
            return {}
        try:
            return _parse(
                await self.call("squeue", "-h", "-t", "all", "-o", _FORMAT, "-j", ",".join(job_ids))
            )
        except SlurmUnavailable as exc:
            # A single forgotten id makes squeue fail: ask for each on its own.
            if "Invalid job id" not in exc.message or len(job_ids) == 1:
                if "Invalid job id" in exc.message:
                    return {}
                raise
        found: dict[str, SlurmJob] = {}
        for job_id in job_ids:
            found.update(await self.squeue([job_id]))
        return found

    async def exit_code(self, job_id: str) -> tuple[int, int] | None:
        """The ended job's (exit code, signal) as slurmctld recorded it, or None
        once it has forgotten the job."""
        try:
            out = await self.call("scontrol", "show", "job", "-o", job_id)
        except SlurmUnavailable:
            return None
        match = _EXIT_CODE.search(out)
        return None if match is None else (int(match.group(1)), int(match.group(2)))

    async def scancel(
        self, job_id: str, *, signal: str | None = None, name: str | None = None
    ) -> None:
        """Cancel the job (or, with ``signal``, send it to every process of the
        job, its batch script too); with ``name``, only if it still has that
        name (a job handed to a newer attempt is not the older one's to stop)."""
        argv = ["scancel"]
        if signal is not None:
            argv += ["--full", f"--signal={signal}"]
        if name is not None:
            argv.append(f"--name={name}")
        await self.call(*argv, job_id)

    async def rename(self, job_id: str, name: str) -> None:
        """Give the job a new name (the attempt that follows it now)."""
        await self.call("scontrol", "update", f"JobId={job_id}", f"JobName={name}")
