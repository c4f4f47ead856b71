"""What a job without a cgroup leaves behind: found and ended with the job.

A job's processes all start in the job's session and process group, and
its end kills that group. A process that leaves them (``setsid``, a double
fork) is out of the group's reach; a cgroup holds it, but not every job has
one (no cgroups on the host, a server that is not root). For those jobs the
worker makes itself a *child subreaper* (``prctl(PR_SET_CHILD_SUBREAPER)``):
a job's process whose parent dies is reparented to the worker instead of to
init, so every process a job leaves is, at the job's end, in the worker's
own tree. The worker then tells which of its adopted children are the
job's:

1. its environment (``/proc/PID/environ``, readable for processes of the
   worker's own user) holds the attempt's ``JOBDOCK_JOB_ID`` and
   ``JOBDOCK_ATTEMPT``; or
2. its session is the job's (the job's main process led a session of its
   own, and a session id cannot be reused while one of its processes
   lives); or
3. it has neither (it cleared its environment and left the session), it
   started while the job ran, and every other job that could have started
   it has ended: a process starts after its ancestors, so a job that
   started after it cannot be its origin.

Each such process is killed with its whole subtree, and the dead are
reaped (they are the worker's children). Adopted processes are told from
the worker's own children by their session: the worker's own (a pool
process) share the worker's; job processes never can. The limits: a
process that clears its environment and leaves the session, while another
job that started before it still runs, lives until that job ends too; a
process that forks faster than it is killed is chased for a few rounds
only; a process running as another user cannot be read or killed; and a
process the worker itself started in a session of its own while a job ran
would be taken for that job's (jobdock starts none; tests starting
container engines do so between jobs). What an ended job left is looked
for again after its end (a process that started while another job was
being spawned is left for that later look), for the last 1000 jobs.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace

_log = logging.getLogger(__name__)

PR_SET_CHILD_SUBREAPER = 36
#: How often an ending job's leftovers are looked for again (a process
#: may fork while its tree is being killed).
ROUNDS = 5
#: How many ended jobs are remembered (their leftovers found later too).
ENDED_KEPT = 1000
#: Ticks a process's start may lie before the job's and still be the job's
#: (the job's start is taken just before its fork).
_SLACK = 2


_TICKS = os.sysconf("SC_CLK_TCK")


def now_ticks() -> int:
    """The time since boot in clock ticks, the unit of a process's start time."""
    return int(time.clock_gettime(time.CLOCK_BOOTTIME) * _TICKS)


def become_subreaper() -> bool:
    """Make this process the reaper of its orphaned descendants."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


@dataclass(frozen=True, slots=True)
class ProcStat:
    """What /proc/PID/stat says of a process (start: clock ticks since boot)."""

    state: str
    ppid: int
    sid: int
    start: int


def read_stat(pid: int) -> ProcStat | None:
    """The process's /proc/PID/stat, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            data = file.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces: count from its ')'.
    fields = data[data.rindex(b")") + 2 :].split()
    return ProcStat(fields[0].decode(), int(fields[1]), int(fields[3]), int(fields[19]))


def _children(pid: int) -> list[int]:
    """The children of every thread of ``pid``."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children", "rb") as file:
                found += [int(child) for child in file.read().split()]
        except OSError:
            continue
    return found


def _adopted(pid: int) -> list[int]:
    """The children of ``pid``'s main thread: the kernel gives a subreaper's
    orphans to the first live thread of its group, the main one while it
    lives (the processes its other threads started are theirs: one file to
    read at each job's end, not one per thread)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children", "rb") as file:
            return [int(child) for child in file.read().split()]
    except OSError:
        return _children(pid)


def _environ(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/environ", "rb") as file:
            return b"\0" + file.read()
    except OSError:
        return b""


@dataclass(frozen=True, slots=True)
class _Job:
    pid: int
    start: int
    #: ``\0NAME=value\0`` of the attempt's variables, as found in an environ.
    markers: tuple[bytes, ...]
    #: When its main process ended (ticks since boot), if it has.
    end: int | None = None

    def lived_at(self, ticks: int) -> bool:
        """Whether the job was running at ``ticks`` (within the slack)."""
        return self.start <= ticks + _SLACK and (self.end is None or ticks <= self.end + _SLACK)

    def marks(self, environ: bytes) -> bool:
        return bool(self.markers) and all(marker in environ for marker in self.markers)


def _markers(env: Mapping[str, str]) -> tuple[bytes, ...]:
    return tuple(
        f"\0{name}={env[name]}\0".encode()
        for name in ("JOBDOCK_JOB_ID", "JOBDOCK_ATTEMPT")
        if name in env
    )


class Orphans:
    """The jobs of a process runtime without cgroups, and the ending of
    what each leaves behind (see the module's docstring)."""

    def __init__(self) -> None:
        self.enabled = become_subreaper()
        if not self.enabled:
            _log.warning(
                "cannot become a child subreaper: jobs' escaped processes may outlive them"
            )
        self._me = os.getpid()
        self._sid = os.getsid(0)
        self._jobs: dict[int, _Job] = {}
        #: Jobs that ended, oldest first: what they left is still theirs.
        self._ended: dict[int, _Job] = {}
        self._spawning: dict[int, int] = {}
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def spawning(self, ticks: int) -> Iterator[None]:
        """Around a spawn that began at ``ticks``: until it is registered,
        its processes are not taken for anyone's leftovers."""
        key = threading.get_ident()
        with self._lock:
            self._spawning[key] = ticks
        try:
            yield
        finally:
            with self._lock:
                self._spawning.pop(key, None)

    def started(self, pid: int, ticks: int, env: Mapping[str, str]) -> None:
        """Register a job's main process (call inside :meth:`spawning`)."""
        with self._lock:
            self._jobs[pid] = _Job(pid, ticks, _markers(env))

    def ended(self, pid: int) -> None:
        """End what the job of main process ``pid`` left behind. Call while
        that process is a zombie (not yet reaped): its session id is then
        still its own."""
        with self._lock:
            job = self._jobs.pop(pid, None)
            if job is None:
                return
            self._ended[pid] = replace(job, end=now_ticks())
            while len(self._ended) > ENDED_KEPT:
                del self._ended[next(iter(self._ended))]
        if self.enabled:
            for _ in range(ROUNDS):
                if not self._sweep():
                    break

    def collect(self) -> None:
        """Kill what ended jobs left that a sweep could not take yet (a
        spawn was under way), and reap the adopted processes that died."""
        if self.enabled:
            self._sweep()

    def _sweep(self) -> bool:
        """Kill the ended jobs' leftovers among the adopted children, reap
        the dead ones; returns whether anything was killed."""
        with self._lock:
            running, ended = list(self._jobs.values()), list(self._ended.values())
            mains = set(self._jobs) | set(self._ended)
            newest = min(self._spawning.values(), default=None)
        killed = False
        for child in _adopted(self._me):
            if child in mains:
                continue
            stat = read_stat(child)
            if stat is None or stat.sid == self._sid or stat.ppid != self._me:
                continue
            if newest is not None and stat.start + _SLACK >= newest:
                continue  # perhaps a job being spawned right now: see collect()
            if stat.state == "Z":
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(child, os.WNOHANG)
            elif _left_by(_environ(child), stat, ended, running):
                _kill_tree(child)
                killed = True
        return killed


def _left_by(environ: bytes, stat: ProcStat, ended: list[_Job], running: list[_Job]) -> bool:
    """Whether an adopted process is an ended job's (see the module's docstring)."""
    if any(job.marks(environ) or stat.sid == job.pid for job in ended):
        return True
    if any(job.marks(environ) or stat.sid == job.pid for job in running):
        return False
    # Nothing tells whose it is: an ended job's if it started while that job
    # ran (so it is not one of the worker's own children) and no running job
    # had started by then (a job cannot start a process older than itself).
    if any(job.start <= stat.start + _SLACK for job in running):
        return False
    return any(job.lived_at(stat.start) for job in ended)


def _kill_tree(pid: int) -> None:
    """SIGKILL a process and every descendant (found first: a child whose
    parent dies is reparented to this process and found again later)."""
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo += _children(current)
    for member in tree:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(member, signal.SIGKILL)
