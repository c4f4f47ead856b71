"""Starting a process job's process, off the event loop: the fork and exec
on a spawning thread (as its user, in its group, with its umask), the
hand-off of what it started to the waiting coroutine (or its end, when that
coroutine was cancelled meanwhile), and the removal of finished jobs'
control groups, retried while their last processes linger.

Imports the runtimes' cgroups, identity and isolation plans.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from jobdock.errors import SpawnError
from jobdock.models import JobSpec
from jobdock.runtimes import cgroups, identity
from jobdock.runtimes.base import RunAs
from jobdock.runtimes.isolation import Plan, setpriv_argv
from jobdock.runtimes.orphans import Orphans, now_ticks

_log = logging.getLogger(__name__)


Spawned = tuple[subprocess.Popen[bytes], int, float, "cgroups.Group | None"]


class Handoff:
    """Hands a spawned process from the spawning thread to its caller, or
    ends it when the caller was cancelled meanwhile (nobody would watch it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._abandoned = False
        self._spawned: Spawned | None = None

    def spawn(self, spawn: Callable[..., Spawned], *args: object) -> Spawned:
        spawned = spawn(*args)
        with self._lock:
            if not self._abandoned:
                self._spawned = spawned
                return spawned
        discard(*spawned)
        return spawned

    def abandon(self) -> None:
        with self._lock:
            self._abandoned, spawned = True, self._spawned
        if spawned is not None:
            discard(*spawned)


def discard(
    proc: subprocess.Popen[bytes], _ticks: int, _started: float, group: cgroups.Group | None
) -> None:
    """Kill a job nobody watches, reap it and remove its group (blocking)."""
    if group is not None:
        group.kill()
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()
    if group is not None and not cgroups.remove(group):
        _log.warning("could not remove cgroup %s: processes are still in it", group.path)


class Cleaner:
    """Removes the groups of finished jobs. A group whose last processes are
    not gone yet (a zombie its new parent has not reaped) is retried after
    later jobs and when the runtime closes, instead of holding up the
    outcome of its job."""

    #: How long a job's end waits for its group to go.
    WAIT_SECONDS = 0.5
    #: How long closing the runtime waits for the stragglers.
    CLOSE_SECONDS = 5.0

    def __init__(self, threads: ThreadPoolExecutor) -> None:
        self.threads = threads
        self._pending: set[cgroups.Group] = set()
        self._lock = threading.Lock()

    def remove(self, group: cgroups.Group) -> None:
        with self._lock:
            pending, self._pending = self._pending, set()
        left = {g for g in pending if not cgroups.remove(g, 0)}
        if not cgroups.remove(group, self.WAIT_SECONDS):
            left.add(group)
        if left:
            with self._lock:
                self._pending |= left

    def finish(self) -> None:
        for group in self._pending:
            if not cgroups.remove(group, self.CLOSE_SECONDS):
                _log.warning("could not remove cgroup %s: processes are still in it", group.path)
        self._pending.clear()


def spawn_process(
    spec: JobSpec,
    plan: Plan,
    stdin: int,
    env: dict[str, str],
    preexec: Callable[[], None] | None,
    run_as: RunAs | None,
    orphans: Orphans | None = None,
) -> tuple[subprocess.Popen[bytes], int, float]:
    argv, umask = plan.argv, -1  # -1: the server's own umask
    if run_as is not None:
        # The child starts as root, in its group (v1: the spawning thread's;
        # v2: joined in preexec_fn, which CPython runs after any setuid, so
        # it must be root then), and execs setpriv, which drops to the uid
        # and execs the command. Popen(user=) would lose vfork: forking the
        # whole server per job cut throughput to a third (bench_core).
        # Under bwrap, bwrap starts as root and drops inside (bwrap_argv).
        umask = identity.UMASK
        if not plan.namespaced:
            identity.check_command(spec.command[0], env.get("PATH"), spec.cwd or "/", run_as)
            argv = setpriv_argv(run_as.uid, run_as.gid) + argv
    # Both taken just before the fork: the boot-relative time is at most a
    # tick or two before the start time the kernel records (reading /proc
    # after would cost more), and the wall-clock time is when the job started.
    ticks, started_at = now_ticks(), time.time()
    with contextlib.nullcontext() if orphans is None else orphans.spawning(ticks):
        try:
            proc = subprocess.Popen(
                argv,
                stdin=stdin,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=spec.cwd or "/",
                env=env,
                start_new_session=True,
                preexec_fn=preexec,
                umask=umask,
            )
        except OSError as exc:
            raise SpawnError(spawn_message(spec, exc), errno=exc.errno) from None
        except (ValueError, TypeError, OverflowError) as exc:
            # What Popen refuses before it forks (a NUL byte in a path or an argument).
            raise SpawnError(f"cannot start {argv[0]!r}: {exc}") from None
        if orphans is not None:
            orphans.started(proc.pid, ticks, env)
    return proc, ticks, started_at


def spawn_message(spec: JobSpec, exc: OSError) -> str:
    what, cwd = exc.strerror or str(exc), spec.cwd or "/"
    if exc.filename is not None and exc.filename == cwd:
        return identity.cwd_missing(spec) or f"cannot use working directory {cwd}: {what}"
    return f"cannot run {spec.command[0]!r}: {what}{identity.in_cwd(spec.command[0], cwd)}"
