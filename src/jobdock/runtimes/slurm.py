"""Slurm jobs: each attempt is submitted to a Slurm cluster as a batch job.

The worker runs on a Slurm submit host. Each attempt gets a directory of its
job's under ``slurm_dir``: the batch script, its stdin, the command's stdout
and stderr (kept apart) and the script's exit record. **That directory must
be on a file system the submit host and the nodes share** (as the home and
scratch directories of a cluster are): the script reads its input there and
writes its output there, and the runtime reads the output while the job
runs, so that ``jobdock logs -f`` is live, and to its last byte at the end.

One watcher per runtime asks ``squeue`` about every followed job at once,
each ``slurm_poll_seconds``, and reads the new output of each. While Slurm
keeps the job pending, :meth:`SlurmExecution.until_running` reports its
reason (the worker records it on the attempt); a stop is ``scancel
--signal=TERM``, then ``scancel --signal=KILL`` after the grace, both
fenced by the job's name (``jobdock-JOB.ATTEMPT``). A job that is already
in Slurm when its job's next attempt starts (its worker died, or shut down)
is adopted: renamed to the new attempt, followed, and its output read from
the beginning again. See docs/slurm.md.

Imports the Slurm tools (slurm_cli), the runtimes' types and the foundation.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import math
import os
import shlex
import shutil
import signal
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from jobdock.errors import SpawnError
from jobdock.models import AttemptInputs, JobSpec, Reason, Stream
from jobdock.models.outcome import ExitStatus
from jobdock.runtimes import slurm_cli
from jobdock.runtimes.base import AttemptInfo, AttemptLost, Stdin
from jobdock.runtimes.identity import cwd_missing
from jobdock.runtimes.inputs import base_inputs
from jobdock.runtimes.slurm_cli import SlurmJob, SlurmUnavailable

_log = logging.getLogger(__name__)

#: Read at most this much of a stream per poll, while the reader keeps up.
READ_SIZE = 8 << 20
#: Stop reading while this much output waits to be consumed.
HIGH_WATER = 8 << 20
#: Labels a job may choose its partition, account and QoS with (within
#: what the operator allows: ``slurm_allowed``).
CHOICES = {"partition": "slurm.partition", "account": "slurm.account", "qos": "slurm.qos"}
#: Slurm's time limit is in minutes and the worker times jobs itself: the
#: limit is a backstop, this much past the job's timeout and grace.
TIME_MARGIN = 60.0

#: How long a submit is tried again while slurmctld cannot be reached.
SUBMIT_RETRY_SECONDS = 120.0
#: How long a job just submitted may be missing from squeue before it counts as gone.
UNLISTED_SECONDS = 10.0

#: Called with the Slurm job id and what Slurm says of it (e.g. ``PENDING
#: (Resources)``), to record on the attempt.
Note = Callable[[str, str], Awaitable[None]]


@dataclass(frozen=True)
class SlurmOptions:
    """How a worker submits its jobs (from its settings)."""

    directory: Path
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    #: partition/account/qos -> the values a job may choose with its labels.
    allowed: Mapping[str, list[str]] = field(default_factory=dict)
    poll_seconds: float = 0.25
    #: The slurm.conf the tools read (None: Slurm's default).
    conf: str | None = None


class SlurmRuntime:
    """Submits attempts as Slurm batch jobs and follows them."""

    def __init__(self, options: SlurmOptions) -> None:
        self.options = options
        self.tools = slurm_cli.Tools(options.conf)
        self._watcher = _Watcher(self.tools, options.poll_seconds)

    def close(self) -> None:
        self._watcher.close()

    async def start(
        self, spec: JobSpec, stdin: Stdin, env: Mapping[str, str], info: AttemptInfo
    ) -> SlurmExecution:
        if not isinstance(stdin, bytes):
            raise SpawnError("the Slurm runtime takes the stdin given with the job, not a stream")
        job_dir = self.options.directory / info.job_id
        name = f"jobdock-{info.job_id}.{info.attempt}"
        inputs = base_inputs(spec, stdin, env).model_copy(update={"runtime": "slurm"})
        adopted = await self._adopt(job_dir, name, info)
        if adopted is not None:
            adopted.inputs = inputs
            return adopted
        options = self._sbatch_options(spec, info, job_dir)
        _check_command(spec, env)
        await asyncio.get_running_loop().run_in_executor(
            None, _prepare, job_dir, spec, stdin, env, info
        )
        try:
            slurm_id = await self._sbatch([f"--job-name={name}", *options], job_dir / "script")
        except SlurmUnavailable:
            shutil.rmtree(job_dir, ignore_errors=True)
            raise
        _write(job_dir / "slurm_id", slurm_id)
        execution = SlurmExecution(slurm_id, name, job_dir, info.attempt, self._watcher)
        execution.inputs = inputs
        return execution

    async def _sbatch(self, options: list[str], script: Path) -> str:
        """Submit; while slurmctld cannot be reached, try again with backoff
        for up to SUBMIT_RETRY_SECONDS (the attempt holds its claim), so
        that a controller's restart fails no job."""
        delay, give_up = 0.5, time.monotonic() + SUBMIT_RETRY_SECONDS
        while True:
            try:
                return await self.tools.sbatch(options, str(script))
            except SlurmUnavailable as exc:
                if not exc.transient or time.monotonic() + delay > give_up:
                    raise
                _log.warning("cannot submit to Slurm (%s); trying again", exc.message)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    def _sbatch_options(self, spec: JobSpec, info: AttemptInfo, job_dir: Path) -> list[str]:
        opts = self.options
        chosen = {"partition": opts.partition, "account": opts.account, "qos": opts.qos}
        for what, label in CHOICES.items():
            wanted = spec.labels.get(label)
            if wanted is None:
                continue
            if wanted not in opts.allowed.get(what, []):
                raise SpawnError(
                    f"this worker does not let jobs choose the Slurm {what} {wanted!r}"
                )
            chosen[what] = wanted
        argv = [f"--{what}={value}" for what, value in chosen.items() if value]
        log = job_dir / "slurm.log"
        # The script starts with sbatch's environment (slurm_cli.Tools: a
        # plain PATH and SLURM_CONF) and Slurm's SLURM_*; the job's own is in
        # the script. Never the worker's.
        argv += ["--export=ALL", "--no-requeue", f"--output={log}", f"--error={log}"]
        argv.append(f"--chdir={spec.cwd or (info.run_as.home if info.run_as else '/')}")
        resources = spec.resources
        if resources is not None and resources.cpus is not None:
            argv.append(f"--cpus-per-task={math.ceil(resources.cpus)}")
        if resources is not None and resources.memory is not None:
            argv.append(f"--mem={math.ceil(resources.memory / (1 << 20))}M")
        if spec.timeout is not None:
            minutes = math.ceil((spec.timeout + spec.kill_grace + TIME_MARGIN) / 60)
            argv.append(f"--time={minutes}")
        if info.run_as is not None:
            argv += [f"--uid={info.run_as.uid}", f"--gid={info.run_as.gid}"]
        return argv

    async def _adopt(self, job_dir: Path, name: str, info: AttemptInfo) -> SlurmExecution | None:
        """Follow the Slurm job an earlier attempt of the job left (its worker
        died or gave it back), if it still runs or left its exit record."""
        try:
            slurm_id = (job_dir / "slurm_id").read_text().strip()
        except OSError:
            shutil.rmtree(job_dir, ignore_errors=True)
            return None
        job = (await self.tools.squeue([slurm_id])).get(slurm_id)
        if not (job is not None and job.active) and not (job_dir / "exit").exists():
            shutil.rmtree(job_dir, ignore_errors=True)
            return None
        if job is not None and job.active:
            try:
                await self.tools.rename(slurm_id, name)
            except SlurmUnavailable as exc:
                # It ended meanwhile (its exit record says how), or slurmctld
                # is away: a stop of the older attempt's is then not fenced off.
                _log.warning("cannot rename Slurm job %s: %s", slurm_id, exc.message)
        _write(job_dir / "attempt", str(info.attempt))
        _log.info("attempt %d of job %s follows Slurm job %s", info.attempt, info.job_id, slurm_id)
        return SlurmExecution(slurm_id, name, job_dir, info.attempt, self._watcher)


def _check_command(spec: JobSpec, env: Mapping[str, str]) -> None:
    """The command must be there on the submit host too (the nodes share its
    file system): a missing one is said at once, as for a process job."""
    missing = cwd_missing(spec)
    if missing is not None:
        raise SpawnError(missing, errno=errno.ENOENT)
    command = spec.command[0]
    if "/" in command:
        path = command if os.path.isabs(command) else os.path.join(spec.cwd or "/", command)
        if not os.path.exists(path):
            raise SpawnError(f"cannot run {command!r}: No such file", errno=errno.ENOENT)
        if not os.access(path, os.X_OK) or os.path.isdir(path):
            raise SpawnError(f"cannot run {command!r}: Permission denied", errno=errno.EACCES)
    elif shutil.which(command, path=env.get("PATH", os.defpath)) is None:
        message = f"cannot run {command!r}: No such file or directory (not in PATH)"
        raise SpawnError(message, errno=errno.ENOENT)


def _write(path: Path, text: str) -> None:
    part = path.with_name(path.name + ".part")
    part.write_text(text)
    part.replace(path)


def _prepare(
    job_dir: Path, spec: JobSpec, stdin: bytes, env: Mapping[str, str], info: AttemptInfo
) -> None:
    """Write the attempt's directory: its script (with the job's environment,
    so the directory is the job's owner's only), stdin and attempt number."""
    shutil.rmtree(job_dir, ignore_errors=True)
    job_dir.parent.mkdir(parents=True, exist_ok=True, mode=0o711)
    job_dir.mkdir(mode=0o700)
    (job_dir / "stdin").write_bytes(stdin)
    script = job_dir / "script"
    script.write_text(batch_script(job_dir, spec, env, bool(stdin), info))
    script.chmod(0o700)
    _write(job_dir / "attempt", str(info.attempt))
    if info.run_as is not None:
        for path in (job_dir, *job_dir.iterdir()):
            os.chown(path, info.run_as.uid, info.run_as.gid)


def batch_script(
    job_dir: Path, spec: JobSpec, env: Mapping[str, str], has_stdin: bool, info: AttemptInfo
) -> str:
    """The batch script of an attempt. It handles (not ignores) the signals
    a stop sends, so that it outlives a command that ignores SIGTERM, and
    records how the command ended (``exit``) before it ends itself: what
    Slurm does not know any more once it forgets the job."""
    d = shlex.quote(str(job_dir))
    assignments = " ".join(shlex.quote(f"{key}={value}") for key, value in env.items())
    command = " ".join(shlex.quote(arg) for arg in spec.command)
    stdin = f"{d}/stdin" if has_stdin else "/dev/null"
    return (
        "#!/bin/sh\n"
        f"# jobdock job {info.job_id}, attempt {info.attempt} (jobdock's Slurm runtime)\n"
        "trap : TERM INT HUP USR1 USR2\n"
        f": >{d}/started\n"
        f"env -- {assignments} {command} <{stdin} >{d}/stdout 2>{d}/stderr\n"
        "code=$?\n"
        f"printf '%s\\n' \"$code\" >{d}/exit.part && mv -f {d}/exit.part {d}/exit\n"
        'exit "$code"\n'
    )


def _read_record(job_dir: Path) -> int | None:
    try:
        return int((job_dir / "exit").read_text().strip())
    except (OSError, ValueError):
        return None


class SlurmExecution:
    """A Slurm job that runs (or waits to run) one attempt."""

    def __init__(
        self, slurm_id: str, name: str, job_dir: Path, attempt: int, watcher: _Watcher
    ) -> None:
        self.slurm_id = slurm_id
        self.name = name
        self.pid: int | None = None
        self.pid_start: int | None = None
        self.started_at = time.time()
        #: What it runs (the spec's parts: no image, no local process).
        self.inputs: AttemptInputs | None = None
        self._dir = job_dir
        self._attempt = attempt
        self._watcher = watcher
        self._loop = asyncio.get_running_loop()
        self._exit: asyncio.Future[ExitStatus] = self._loop.create_future()
        self._job: SlurmJob | None = None
        self._running = False
        self._offsets = {Stream.STDOUT: 0, Stream.STDERR: 0}
        self._buffer: deque[tuple[Stream, bytes]] = deque()
        self._buffered = 0
        self._output_done = False
        self._changed = asyncio.Event()
        #: The last signal a stop sent (what a job that left no record died of).
        self._sent: int | None = None
        self._detached = False
        self._calls: set[asyncio.Task[None]] = set()
        self._known_by = time.monotonic() + UNLISTED_SECONDS
        watcher.follow(self)

    # -- following --------------------------------------------------------------

    async def tick(self, job: SlurmJob | None) -> None:
        """What the watcher learnt of the job (None: Slurm no longer knows it)."""
        if self._exit.done():
            return
        self._job = job
        if self._buffered < HIGH_WATER:
            self._read(READ_SIZE)
        record = _read_record(self._dir)
        if job is None and record is None and time.monotonic() < self._known_by:
            # Not listed yet (a busy slurmctld, a federation): ask again.
            pass
        elif job is not None and job.waiting:
            pass
        elif job is not None and job.active:
            # Slurm says RUNNING a little before the script runs: a signal
            # sent then would reach no process of the job.
            if not self._running and (self._dir / "started").exists():
                self._running, self.started_at = True, time.time()
            # Done when the script says the command succeeded; a failure waits
            # for Slurm's state, which tells a timeout or an OOM kill from it.
            if record == 0:
                self._end(ExitStatus(exit_code=0))
        else:
            await self._ended(job, record)
        self._changed.set()

    async def _ended(self, job: SlurmJob | None, record: int | None) -> None:
        state = job.state if job is not None else None
        if state in slurm_cli.LOST:
            self._fail(AttemptLost(f"Slurm job {self.slurm_id} ended {state}"))
            return
        if record is not None:
            status = _from_code(record)
        elif state is None:
            self._fail(AttemptLost(f"Slurm job {self.slurm_id} is gone and left no exit record"))
            return
        else:
            code = await self._watcher.tools.exit_code(self.slurm_id)
            if code is not None and code[1]:
                status = ExitStatus(signal=code[1])
            elif code is not None and code[0]:
                status = _from_code(code[0])
            else:
                status = ExitStatus(signal=self._sent or signal.SIGKILL)
        self._end(_explained(status, state, self._sent is not None, self.slurm_id))

    def _end(self, status: ExitStatus) -> None:
        self._read(None)
        self._output_done = True
        self._watcher.unfollow(self)
        if not self._exit.done():
            self._exit.set_result(status)
        self._changed.set()

    def _fail(self, error: Exception) -> None:
        self._read(None)
        self._output_done = True
        self._watcher.unfollow(self)
        if not self._exit.done():
            self._exit.set_exception(error)
        self._changed.set()

    def _read(self, limit: int | None) -> None:
        """Read what the job wrote since the last read (everything: ``limit`` None)."""
        for stream in (Stream.STDOUT, Stream.STDERR):
            try:
                with open(self._dir / stream.value, "rb") as file:
                    file.seek(self._offsets[stream])
                    data = file.read() if limit is None else file.read(limit)
            except FileNotFoundError:
                continue
            if data:
                self._offsets[stream] += len(data)
                self._buffer.append((stream, data))
                self._buffered += len(data)

    async def until_running(self, note: Note) -> None:
        """Wait until Slurm runs the job (or it ended first), telling ``note``
        its id at once and then why it waits each time that changes."""
        said = "submitted"
        await note(self.slurm_id, said)
        while not self._exit.done() and not self._running:
            job = self._job
            if job is not None and job.waiting and job.reason not in ("None", ""):
                now = f"{job.state} ({job.reason})"
            elif job is not None and job.waiting:
                now = job.state
            else:
                now = said
            if now != said:
                await note(self.slurm_id, now)
                said = now
            self._changed.clear()
            await self._changed.wait()
        job = self._job
        if job is not None:
            # RUNNING, or how it ended if that came first (within one poll).
            await note(self.slurm_id, f"{job.state} on {job.node}" if job.node else job.state)

    # -- the Execution interface ------------------------------------------------

    async def output(self) -> AsyncIterator[list[tuple[Stream, bytes]]]:
        while True:
            if self._buffer:
                batch = list(self._buffer)
                self._buffer.clear()
                self._buffered = 0
                yield batch
                continue
            if self._output_done:
                return
            self._changed.clear()
            await self._changed.wait()

    async def wait(self) -> ExitStatus:
        return await asyncio.shield(self._exit)

    def terminate(self) -> None:
        self._stop(signal.SIGTERM)

    def kill(self) -> None:
        self._stop(signal.SIGKILL)

    def _stop(self, sig: int) -> None:
        if self._exit.done():
            return
        self._sent = sig
        # A job whose script does not run yet has no processes to signal: it
        # is cancelled.
        how = signal.Signals(sig).name[3:] if self._running else None
        task = asyncio.ensure_future(self._scancel(how))
        self._calls.add(task)
        task.add_done_callback(self._calls.discard)

    async def _scancel(self, how: str | None) -> None:
        try:
            await self._watcher.tools.scancel(self.slurm_id, signal=how, name=self.name)
        except SlurmUnavailable as exc:
            _log.warning("cannot stop Slurm job %s: %s", self.slurm_id, exc.message)

    def detach(self) -> None:
        """Stop following the job and leave it running in Slurm, for the job's
        next attempt to adopt (the worker shuts down)."""
        self._detached = True
        self._watcher.unfollow(self)
        self._output_done = True
        if not self._exit.done():
            self._exit.set_result(ExitStatus(signal=signal.SIGTERM))
        self._changed.set()

    async def close(self) -> None:
        """Remove the attempt's directory, unless the Slurm job was handed to
        a newer attempt or left for one; cancel a job still running (jobdock
        failed to follow it to its end)."""
        self._watcher.unfollow(self)
        if self._calls:
            await asyncio.wait(set(self._calls))
        if self._detached or _read_owner(self._dir) != self._attempt:
            return
        if not self._exit.done():
            await self._scancel(None)
        await self._loop.run_in_executor(None, shutil.rmtree, self._dir, True)


def _read_owner(job_dir: Path) -> int | None:
    try:
        return int((job_dir / "attempt").read_text())
    except (OSError, ValueError):
        return None


def _from_code(code: int) -> ExitStatus:
    """An exit status from the shell's ``$?``: 128+N is death by signal N (as
    for a container, an exit code 128+N reads the same)."""
    if 128 < code <= 128 + 64:
        return ExitStatus(signal=code - 128)
    return ExitStatus(exit_code=code)


def _explained(status: ExitStatus, state: str | None, stopped: bool, slurm_id: str) -> ExitStatus:
    """The status with what Slurm's final state says beyond the exit."""
    if state == "OUT_OF_MEMORY":
        message = f"Slurm job {slurm_id} was killed for using more memory than it asked for"
        return replace(status, reason=Reason.OOM, message=message)
    if state == "TIMEOUT" and not stopped:
        return replace(
            status, reason=Reason.TIMEOUT, message=f"Slurm job {slurm_id} reached its time limit"
        )
    if state == "DEADLINE" and not stopped:
        return replace(
            status, reason=Reason.DEADLINE, message=f"Slurm job {slurm_id} reached its deadline"
        )
    if state == "CANCELLED" and not stopped:
        message = f"Slurm job {slurm_id} was cancelled in Slurm (scancel)"
        return replace(status, reason=Reason.CANCELLED, message=message)
    return status


class _Watcher:
    """Asks squeue about every followed job at once, each poll."""

    def __init__(self, tools: slurm_cli.Tools, poll_seconds: float) -> None:
        self.tools = tools
        self.poll_seconds = poll_seconds
        self._followed: dict[str, SlurmExecution] = {}
        self._task: asyncio.Task[None] | None = None
        self._wakeup = asyncio.Event()

    def follow(self, execution: SlurmExecution) -> None:
        self._followed[execution.slurm_id] = execution
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._run())
        self._wakeup.set()

    def unfollow(self, execution: SlurmExecution) -> None:
        if self._followed.get(execution.slurm_id) is execution:
            del self._followed[execution.slurm_id]

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _run(self) -> None:
        while self._followed:
            followed = dict(self._followed)
            try:
                jobs = await self.tools.squeue(list(followed))
            except SlurmUnavailable as exc:
                _log.warning("cannot follow Slurm jobs: %s", exc.message)
            else:
                for slurm_id, execution in followed.items():
                    try:
                        await execution.tick(jobs.get(slurm_id))
                    except Exception:
                        _log.exception("cannot follow Slurm job %s", slurm_id)
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_seconds):
                    await self._wakeup.wait()
