"""Process jobs: the command runs as a plain Linux process.

The process leads its own session and process group, so a stop reaches every
process it started in that group. Its output is read from non-blocking pipes
by the event loop, its exit is seen through a pidfd, and no thread is spent
per job. When the main process exits, whatever is left of its group is
killed: the job is over when its main process is, as with a container's
PID 1.

With a :class:`~jobdock.runtimes.isolation.Confinement` that has cgroups,
each job runs in its own control group: its limits apply there, stop and
exit kill every process in the group (also those that left the process
group), and its accounting is read from the group when it ends. A job run
without a group has what it leaves behind found and ended by
:class:`~jobdock.runtimes.orphans.Orphans` instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import logging
import os
import secrets
import signal
import subprocess
import time
from collections import deque
from collections.abc import AsyncIterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from jobdock.errors import SpawnError
from jobdock.models import AttemptInputs, JobSpec, Reason, Stream
from jobdock.models.outcome import Accounting, ExitStatus
from jobdock.runtimes import cgroups, identity
from jobdock.runtimes.base import AttemptInfo, RunAs, Stdin
from jobdock.runtimes.inputs import process_inputs
from jobdock.runtimes.isolation import Confinement, Plan
from jobdock.runtimes.orphans import Orphans, read_stat
from jobdock.runtimes.spawn import Cleaner, Handoff, discard, spawn_process

_log = logging.getLogger(__name__)

#: Read at most this much per read(2).
READ_SIZE = 1 << 20
#: Stop reading a job's pipes while this much output waits to be consumed.
HIGH_WATER = 8 << 20
LOW_WATER = 2 << 20
#: How long to wait for the pipes to close after the main process exited
#: (a process that left the process group may hold them open).
DRAIN_SECONDS = 1.0
_F_SETPIPE_SZ = 1031
#: Threads that start processes, so that several can wait for exec at once.
SPAWN_THREADS = 4
#: How long a stop of an isolated job waits for bwrap to have started its
#: command (a stop during the namespace's set-up would be lost). A loaded
#: machine can take seconds to make a namespace; bwrap's end stops the wait.
_SETUP_SECONDS = 30.0
#: When the processes killed at a job's end are reaped (seconds after it).
_COLLECT_AFTER = (0.05, 1.0)


_TICKS = os.sysconf("SC_CLK_TCK")
#: How far a process's recorded start may be from what /proc says (ticks).
START_TOLERANCE = _TICKS // 2


def descendants(pid: int, depth: int | None = None) -> list[int]:
    """The processes below ``pid`` (children, theirs, ... down to ``depth``
    levels), from /proc."""
    found: list[int] = []
    parents = [(pid, 0)]
    while parents:
        parent, level = parents.pop()
        if depth is not None and level >= depth:
            continue
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                with open(f"/proc/{parent}/task/{tid}/children") as file:
                    children = [int(child) for child in file.read().split()]
            except OSError:
                continue
            found += children
            parents += [(child, level + 1) for child in children]
    return found


def process_start_ticks(pid: int) -> int | None:
    """The start time of a process, in clock ticks since boot (from /proc)."""
    stat = read_stat(pid)
    return None if stat is None else stat.start


def kill_process_group(pid: int, pid_start: int | None, sig: int = signal.SIGKILL) -> bool:
    """Signal the process group led by ``pid`` if that process is still the one
    that started at ``pid_start`` (within half a second: the pid, then, cannot
    have been reused). Returns whether a signal was sent."""
    started = process_start_ticks(pid)
    if pid_start is None or started is None or abs(started - pid_start) > START_TOLERANCE:
        return False
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


class ProcessRuntime:
    """Starts process jobs, confined as ``confinement`` allows (by default
    not at all: no cgroups, no namespaces)."""

    def __init__(self, confinement: Confinement | None = None) -> None:
        self.confinement = confinement or Confinement(problem="no confinement was configured")
        self._devnull: int | None = None
        self._spawners = ThreadPoolExecutor(SPAWN_THREADS, thread_name_prefix="jobdock-spawn")
        self._cleaner = Cleaner(self._spawners)
        confinement = self.confinement
        # Jobs without a group need the worker to adopt what they leave.
        everyone_grouped = confinement.hierarchy is not None and confinement.every_job
        self._orphans = None if everyone_grouped else Orphans()
        #: Executions whose exit has not been seen yet.
        self._live: set[ProcessExecution] = set()

    def close(self) -> None:
        """Release the threads; kill, reap and remove the group of every job
        still running (one whose caller was cancelled before its exit was
        seen), so that nothing outlives the runtime."""
        self._spawners.shutdown(wait=True)
        for execution in list(self._live):
            execution.abandon()
        self._cleaner.finish()
        if self.confinement.hierarchy is not None:
            self.confinement.hierarchy.remove_parent()
        if self._devnull is not None:
            os.close(self._devnull)
            self._devnull = None

    def _stdin_null(self) -> int:
        if self._devnull is None:
            self._devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        return self._devnull

    async def start(
        self,
        spec: JobSpec,
        stdin: Stdin,
        env: Mapping[str, str],
        info: AttemptInfo | None = None,
    ) -> ProcessExecution:
        # Popen waits (without the GIL) until the child has called exec, most
        # of a millisecond: on a spawner thread the event loop goes on meanwhile.
        stdin_source = subprocess.PIPE if stdin else self._stdin_null()
        run_as = info.run_as if info is not None else None
        if run_as is not None and spec.cwd is None:
            spec = spec.model_copy(update={"cwd": run_as.home})
        plan = self.confinement.plan(spec, run_as)
        name = f"{info.job_id}.{info.attempt}" if info is not None else "job.0"
        loop = asyncio.get_running_loop()
        handoff = Handoff()
        spawning = loop.run_in_executor(
            self._spawners,
            handoff.spawn,
            self._spawn,
            spec,
            plan,
            f"{name}.{secrets.token_hex(3)}",
            stdin_source,
            dict(env),
            run_as,
        )
        try:
            proc, ticks, started_at, group = await asyncio.shield(spawning)
        except asyncio.CancelledError:
            # The spawning thread goes on: what it starts is ended there, or
            # here; the cancelled caller goes on once it is gone.
            handoff.abandon()
            with contextlib.suppress(Exception):
                await spawning
            raise
        execution = ProcessExecution(
            proc, stdin, ticks, started_at, group, plan, self._cleaner, self._orphans, self._live
        )
        execution.inputs = process_inputs(spec, stdin, env, plan, run_as)
        return execution

    def _spawn(
        self,
        spec: JobSpec,
        plan: Plan,
        name: str,
        stdin: int,
        env: dict[str, str],
        run_as: RunAs | None,
    ) -> tuple[subprocess.Popen[bytes], int, float, cgroups.Group | None]:
        cwd = spec.cwd or "/"
        # Said as such, before any check of the command (also under bwrap,
        # whose own message would be the job's output).
        missing = identity.cwd_missing(spec)
        if missing is not None:
            raise SpawnError(missing, errno=errno.ENOENT)
        if run_as is not None and not plan.namespaced:
            # The child changes directory before it drops to the uid: see
            # here, as the uid would, whether it may be there at all.
            problem = identity.cwd_problem(cwd, run_as)
            if problem is not None:
                raise SpawnError(f"cannot use working directory {cwd}: {problem}")
        hierarchy, orphans = self.confinement.hierarchy, self._orphans
        if plan.resources is None or hierarchy is None:
            return (*spawn_process(spec, plan, stdin, env, None, run_as, orphans), None)
        try:
            group = hierarchy.create(name, plan.resources, spec.cwd or "/")
        except (OSError, ValueError, OverflowError) as exc:
            raise SpawnError(f"cannot set the job's limits: {exc}") from None
        try:
            with group.joining() as join:
                return (*spawn_process(spec, plan, stdin, env, join, run_as, orphans), group)
        except BaseException:
            cgroups.remove(group)
            raise


class ProcessExecution:
    """A running process job."""

    #: What the attempt really ran (set by the runtime that started it).
    inputs: AttemptInputs | None = None

    def __init__(
        self,
        proc: subprocess.Popen[bytes],
        stdin: Stdin,
        ticks: int,
        started_at: float,
        group: cgroups.Group | None = None,
        plan: Plan | None = None,
        cleaner: Cleaner | None = None,
        orphans: Orphans | None = None,
        live: set[ProcessExecution] | None = None,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._proc = proc
        #: The runtime's executions not yet reaped: this one until it is.
        self._live = live if live is not None else set()
        self._live.add(self)
        self._group = group
        self._orphans = orphans
        self._plan = plan
        self._cleaner = cleaner
        self.pid: int | None = proc.pid
        self.pid_start: int | None = ticks
        self.started_at = started_at
        self._exit: asyncio.Future[ExitStatus] = self._loop.create_future()
        self._reaped = False
        self._pidfd = os.pidfd_open(proc.pid)
        self._loop.add_reader(self._pidfd, self._on_exit)

        assert proc.stdout is not None and proc.stderr is not None
        self._streams: dict[int, Stream] = {
            proc.stdout.fileno(): Stream.STDOUT,
            proc.stderr.fileno(): Stream.STDERR,
        }
        self._files = {proc.stdout.fileno(): proc.stdout, proc.stderr.fileno(): proc.stderr}
        self._buffer: deque[tuple[Stream, bytes]] = deque()
        self._buffered = 0
        self._paused = False
        self._wakeup: asyncio.Future[None] | None = None
        self._enlarged: set[int] = set()
        for fd in self._streams:
            os.set_blocking(fd, False)
            self._loop.add_reader(fd, self._on_readable, fd)
        self._stdin_task: asyncio.Task[None] | None = None
        if proc.stdin is not None:
            self._stdin_task = asyncio.ensure_future(self._feed_stdin(stdin))

    # -- exit -------------------------------------------------------------------

    def _on_exit(self) -> None:
        # The process is a zombie now: its pid (and so its group id) cannot be
        # reused until it is reaped, so killing the group here is safe.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._proc.pid, signal.SIGKILL)
        if self._group is not None and self._group.pids():
            self._group.kill()
        orphans = self._orphans
        if orphans is not None:
            # Before the main process is reaped: its session id stays its own.
            orphans.ended(self._proc.pid)
            for delay in _COLLECT_AFTER:
                self._loop.call_later(delay, orphans.collect)
        try:
            pid, status = os.waitpid(self._proc.pid, os.WNOHANG)
        except ChildProcessError:
            pid, status = self._proc.pid, 0
        if pid == 0:
            return
        self._loop.remove_reader(self._pidfd)
        os.close(self._pidfd)
        self._reaped = True
        self._live.discard(self)
        if self._stdin_task is not None:
            # Input still to come (stdin_stream) has no one to read it.
            self._stdin_task.cancel()
        code = os.waitstatus_to_exitcode(status)
        self._proc.returncode = code
        result = ExitStatus(exit_code=code) if code >= 0 else ExitStatus(signal=-code)
        if self._plan is not None:
            result = self._account(result)
        if self._group is None or self._cleaner is None:
            self._set_exit(result)
        else:
            try:
                removal = self._loop.run_in_executor(
                    self._cleaner.threads, self._cleaner.remove, self._group
                )
            except RuntimeError:  # the runtime is closed: no thread is left
                self._cleaner.remove(self._group)
                self._set_exit(result)
            else:
                removal.add_done_callback(lambda _: self._set_exit(result))
        if self._streams:
            self._loop.call_later(DRAIN_SECONDS, self._close_pipes)

    def _set_exit(self, result: ExitStatus) -> None:
        if not self._exit.done():
            self._exit.set_result(result)

    def _account(self, status: ExitStatus) -> ExitStatus:
        """The exit status with the attempt's accounting, and the reason the
        kernel knows (the OOM killer, the process limit)."""
        plan = self._plan
        assert plan is not None
        code = status.exit_code
        if plan.forwards_signals and code is not None and 128 < code <= 128 + 64:
            # runsc reports its job's death by a signal as 128 + the signal,
            # as a shell (and a container engine) does.
            status = ExitStatus(signal=code - 128)
        usage = self._group.usage() if self._group is not None else cgroups.Usage()
        accounting = Accounting(plan.isolation, plan.limits, usage.peak_memory, usage.cpu_seconds)
        status = replace(status, accounting=accounting, message=plan.remark)
        killed = status.signal == signal.SIGKILL or (
            # bwrap reports its child's death by a signal as 128 + the signal.
            plan.namespaced and status.exit_code == 128 + signal.SIGKILL
        )
        if usage.oom_killed and killed:
            limit = plan.limits.get("memory")
            return replace(
                status,
                reason=Reason.OOM,
                message=f"killed for using more memory than its limit ({limit} bytes)",
            )
        if usage.pids_limited and status.exit_code != 0:
            limit = f"reached its limit of {plan.limits.get('pids')} processes (fork failed)"
            return replace(status, limit=limit)
        return status

    async def wait(self) -> ExitStatus:
        return await asyncio.shield(self._exit)

    def _signal(self, sig: int) -> None:
        if self._reaped:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._proc.pid, sig)

    def terminate(self) -> None:
        if self._plan is not None and self._plan.forwards_signals:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if not self._reaped:
                    os.kill(self._proc.pid, signal.SIGTERM)
            return
        if self._plan is not None and self._plan.namespaced:
            self._terminate_namespace(time.monotonic() + _SETUP_SECONDS)
            return
        group = self._group
        if group is None or self._reaped:
            self._signal(signal.SIGTERM)
            return
        # Every process of the job, also those that left its process group.
        for pid in group.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    def _terminate_namespace(self, deadline: float) -> None:
        """SIGTERM to every process of the job's PID namespace: those below
        bwrap's init. bwrap itself is spared (it waits for its child and
        reports how it ended; signalled, it would die and take the namespace
        with it by SIGKILL), and so is the init, which ignores it anyway."""
        if self._reaped:
            return
        # Below the inits found here, in one read: an init that appeared
        # after a first read would otherwise count as a target, and the
        # kernel drops its SIGTERM.
        inits = descendants(self._proc.pid, depth=1)
        targets = [pid for init in inits for pid in descendants(init)]
        if not targets and time.monotonic() < deadline:
            # bwrap is still making the namespace: the command is not there
            # yet, and the signal would be lost on PID 1.
            self._loop.call_later(0.005, self._terminate_namespace, deadline)
            return
        for pid in targets:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    def kill(self) -> None:
        if self._group is not None and not self._reaped:
            self._group.kill()
        self._signal(signal.SIGKILL)

    def abandon(self) -> None:
        """End the job now, when nobody will await its exit (the runtime
        closes): kill it, reap it and remove its group (blocking)."""
        if self._reaped:
            return
        self._reaped = True
        self._live.discard(self)
        for fd in [self._pidfd, *self._streams]:
            with contextlib.suppress(Exception):  # the loop may be closed already
                self._loop.remove_reader(fd)
        os.close(self._pidfd)
        discard(self._proc, 0, 0.0, self._group)
        self._streams.clear()
        self._files.clear()
        status = ExitStatus(signal=signal.SIGKILL)
        with contextlib.suppress(RuntimeError):  # the same
            self._set_exit(status)

    async def close(self) -> None:
        """Nothing else to release: the process is reaped and its pipes are closed."""
        if self._stdin_task is not None:
            self._stdin_task.cancel()

    # -- output -----------------------------------------------------------------

    def _on_readable(self, fd: int) -> None:
        try:
            data = os.read(fd, READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._close_pipe(fd)
        else:
            if len(data) >= 65536 and fd not in self._enlarged:
                # A job that fills the default 64 KiB pipe writes a lot: give it
                # a larger pipe so each wake-up moves more.
                self._enlarged.add(fd)
                with contextlib.suppress(OSError):
                    fcntl.fcntl(fd, _F_SETPIPE_SZ, READ_SIZE)
            self._buffer.append((self._streams[fd], data))
            self._buffered += len(data)
            if self._buffered >= HIGH_WATER and not self._paused:
                self._paused = True
                for open_fd in self._streams:
                    self._loop.remove_reader(open_fd)
        self._wake()

    def _close_pipe(self, fd: int) -> None:
        if fd in self._streams:
            if not self._paused:
                self._loop.remove_reader(fd)
            del self._streams[fd]
            self._files.pop(fd).close()

    def _close_pipes(self) -> None:
        if self._paused:
            # The reader is behind, not the pipes: what they hold is the job's
            # output, so wait for the reader instead of dropping it.
            self._loop.call_later(DRAIN_SECONDS, self._close_pipes)
            return
        for fd in list(self._streams):
            self._close_pipe(fd)
        self._wake()

    def _wake(self) -> None:
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    async def output(self) -> AsyncIterator[list[tuple[Stream, bytes]]]:
        while True:
            if self._buffer:
                batch = list(self._buffer)
                self._buffer.clear()
                self._buffered = 0
                if self._paused:
                    self._paused = False
                    for fd in self._streams:
                        self._loop.add_reader(fd, self._on_readable, fd)
                yield batch
                continue
            if not self._streams:
                return
            self._wakeup = self._loop.create_future()
            await self._wakeup
            self._wakeup = None

    # -- input ------------------------------------------------------------------

    async def _feed_stdin(self, stdin: Stdin) -> None:
        """Write the input to the job's stdin, each piece once the pipe takes
        it (a job that reads slowly slows the feeding), then close it."""
        pipe = self._proc.stdin
        assert pipe is not None
        fd = pipe.fileno()
        os.set_blocking(fd, False)
        try:
            if isinstance(stdin, bytes):
                await self._write_stdin(fd, stdin)
            else:
                async for piece in stdin:
                    await self._write_stdin(fd, piece)
        except OSError as exc:
            if exc.errno not in (errno.EPIPE, errno.EBADF):
                raise
        finally:
            pipe.close()

    async def _write_stdin(self, fd: int, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                written = os.write(fd, view)
                view = view[written:]
            except BlockingIOError:
                ready = self._loop.create_future()
                self._loop.add_writer(fd, _resolve, ready)
                try:
                    await ready
                finally:
                    self._loop.remove_writer(fd)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
