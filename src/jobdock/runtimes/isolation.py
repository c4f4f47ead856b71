"""What this host can do to confine a process job, and the plan for one job.

A :class:`Confinement` is found once at start-up: the cgroup hierarchy (see
:mod:`jobdock.runtimes.cgroups`) and bubblewrap (``bwrap``) for namespaces.
Where the host cannot give a job what it asks for, the server's policy
decides: run it without (and say so on its attempt, ``isolation: none``), or
refuse it. Nothing is silently pretended.
"""

from __future__ import annotations

import grp
import hashlib
import logging
import os
import pwd
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from jobdock.errors import SpawnError
from jobdock.models import Isolation, JobSpec, Resources, RootFilesystem
from jobdock.runtimes import cgroups
from jobdock.runtimes.base import RunAs

_log = logging.getLogger(__name__)

Unconfined = Literal["run", "refuse"]


@dataclass(frozen=True, slots=True)
class Plan:
    """How one job is started: its argv and the group it runs in."""

    argv: list[str]
    #: The group to create (None: no cgroup).
    resources: Resources | None
    namespaced: bool
    isolation: str
    limits: dict[str, Any] = field(default_factory=dict)
    #: Said on the attempt when the job runs with less than it asked for.
    remark: str | None = None
    #: The main process forwards signals to the job (runsc do): a stop
    #: signals it alone, not every process of its group.
    forwards_signals: bool = False


def default_parent(home: Path) -> str:
    """The parent group of a server's jobs: named after its home, so that a
    restarted server removes its own leftovers and no other server's."""
    return "jobdock-" + hashlib.sha256(str(home.resolve()).encode()).hexdigest()[:8]


def asks_for_limits(spec: JobSpec) -> bool:
    """Whether the spec sets any resource limit."""
    return any(value is not None for value in spec.resources.model_dump().values())


class Confinement:
    """The cgroups and namespaces this host offers, and the server's policy."""

    def __init__(
        self,
        hierarchy: cgroups.Hierarchy | None = None,
        bwrap: str | None = None,
        *,
        problem: str | None = None,
        unconfined: Unconfined = "run",
        isolate_by_default: bool = False,
        allow_host_network: bool = True,
        every_job: bool = False,
        runsc: str | None = None,
    ) -> None:
        self.hierarchy = hierarchy
        #: Whether a job that sets no limit and is not isolated gets a group
        #: too (so that a stop kills even its escaped children), at the cost
        #: of creating and removing one per job.
        self.every_job = every_job
        self.bwrap = bwrap
        #: Why there are no cgroups, where there are none.
        self.problem = problem
        self.unconfined = unconfined
        self.isolate_by_default = isolate_by_default
        self.allow_host_network = allow_host_network
        #: gVisor's runsc, for jobs asking for ``sandbox: gvisor``.
        self.runsc = runsc

    @classmethod
    def detect(
        cls,
        *,
        cgroups_mode: Literal["auto", "v1", "v2", "off"] = "auto",
        parent: str = "jobdock",
        **policy: Any,
    ) -> Confinement:
        """Find what this host offers; never raises (what is missing is told)."""
        hierarchy, problem = None, None
        if cgroups_mode == "off":
            problem = "cgroups are turned off in the configuration"
        elif os.geteuid() != 0:
            problem = "the server does not run as root"
        else:
            version = None if cgroups_mode == "auto" else int(cgroups_mode[1])
            try:
                hierarchy = cgroups.detect(parent, version)
            except OSError as exc:
                problem = f"cannot use cgroups: {exc.strerror or exc}"
        bwrap = shutil.which("bwrap") if os.geteuid() == 0 else None
        runsc = shutil.which("runsc") if os.geteuid() == 0 else None
        return cls(hierarchy, bwrap, problem=problem, runsc=runsc, **policy)

    def describe(self) -> str:
        """One line for the start-up log."""
        groups = self.hierarchy.describe() if self.hierarchy else f"no cgroups ({self.problem})"
        spaces = f"namespaces by {self.bwrap}" if self.bwrap else "no namespaces (no bwrap)"
        return f"{groups}; {spaces}"

    def remove_leftovers(self) -> int:
        """Kill and remove the groups a previous run of this server left."""
        if self.hierarchy is None:
            return 0
        count = 0
        for group in self.hierarchy.leftovers():
            if cgroups.remove(group):
                count += 1
            else:
                _log.warning("could not remove leftover cgroup %s", group.path)
        return count

    def isolation_of(self, spec: JobSpec) -> Isolation | None:
        """The namespaces the job gets (the server's default where it says nothing)."""
        if spec.isolation is None:
            return Isolation() if self.isolate_by_default else None
        if spec.isolation is True:
            return Isolation()
        if spec.isolation is False:
            return None
        return spec.isolation

    def missing(self, spec: JobSpec) -> str | None:
        """What the job asks for that this host cannot give, or None."""
        if asks_for_limits(spec) and self.hierarchy is None:
            return f"resource limits need cgroups: {self.problem}"
        isolation = self.isolation_of(spec)
        if isolation is not None and isolation.sandbox == "gvisor":
            return None if self.runsc else "sandbox gvisor needs runsc, which is not installed"
        if isolation is not None and self.bwrap is None:
            return "isolation needs bubblewrap (bwrap), which is not installed or not usable"
        return None

    def plan(self, spec: JobSpec, run_as: RunAs | None = None) -> Plan:
        """The plan for one job (its processes as ``run_as``, where given);
        raises SpawnError where policy refuses it."""
        isolation = self.isolation_of(spec)
        if isolation is not None and isolation.network == "host" and not self.allow_host_network:
            raise SpawnError("this server does not allow jobs on the host's network")
        missing = self.missing(spec)
        if missing is not None and self.unconfined == "refuse":
            raise SpawnError(f"cannot run this job as asked: {missing}")
        limits = spec.resources.model_dump(exclude_none=True)
        if isolation is not None and isolation.sandbox == "gvisor":
            return self._gvisor_plan(spec, isolation, run_as, missing, limits)
        if self.hierarchy is None and (isolation is None or self.bwrap is None):
            return Plan(spec.command, None, False, "none", {}, _remark(missing))
        if isolation is None and not (self.every_job or asks_for_limits(spec)):
            return Plan(spec.command, None, False, "none", {})
        if self.bwrap is None or isolation is None:
            label = f"cgroup v{self.hierarchy.version}" if self.hierarchy else "none"
            return Plan(spec.command, spec.resources, False, label, limits, _remark(missing))
        argv = bwrap_argv(self.bwrap, isolation, spec.cwd or "/", spec.command, run_as)
        if self.hierarchy is None:
            return Plan(argv, None, True, "namespaces", {}, _remark(missing))
        label = f"cgroup v{self.hierarchy.version}+namespaces"
        return Plan(argv, spec.resources, True, label, limits)

    def _gvisor_plan(
        self,
        spec: JobSpec,
        isolation: Isolation,
        run_as: RunAs | None,
        missing: str | None,
        limits: dict[str, Any],
    ) -> Plan:
        """The plan of a job under gVisor (``runsc do``), in a cgroup where
        it sets limits (the sandbox's processes are all in it)."""
        if self.runsc is None:
            if self.unconfined == "refuse" or missing is None:
                raise SpawnError("sandbox gvisor needs runsc, which is not installed here")
            return Plan(spec.command, None, False, "none", {}, _remark(missing))
        if run_as is not None:
            # runsc do runs the job as root in its kernel, reading the host's
            # files as root: never for a job of one of many users.
            raise SpawnError("sandbox gvisor cannot run a job as its owner's uid on this server")
        argv = runsc_argv(self.runsc, isolation, spec.cwd or "/", spec.command)
        if self.hierarchy is None or not asks_for_limits(spec):
            return Plan(argv, None, False, "gvisor", {}, forwards_signals=True)
        label = f"cgroup v{self.hierarchy.version}+gvisor"
        return Plan(argv, spec.resources, False, label, limits, forwards_signals=True)


def runsc_argv(runsc: str, isolation: Isolation, cwd: str, command: list[str]) -> list[str]:
    """``runsc do`` running ``command`` in gVisor's kernel, on its ptrace
    platform (the one that runs on these machines: docs/isolation.md): the
    host's file system (or the rootfs) read-only under a private writable
    overlay, no network unless 'host'. runsc forwards a stop's signals to
    the job. It makes no cgroup of its own (--ignore-cgroups): the sandbox
    stays in the attempt's, whose limits then hold it all."""
    network = "host" if isolation.network == "host" else "none"
    argv = [
        runsc,
        "--platform=ptrace",
        "--ignore-cgroups",
        f"--network={network}",
        "do",
        "--quiet",
        "--cwd",
        cwd,
    ]
    if isinstance(isolation.filesystem, RootFilesystem):
        argv += ["--root", isolation.filesystem.rootfs]
    return [*argv, "--", *command]


def _remark(missing: str | None) -> str | None:
    return None if missing is None else f"ran without isolation ({missing})"


def bwrap_argv(
    bwrap: str, isolation: Isolation, cwd: str, command: list[str], run_as: RunAs | None = None
) -> list[str]:
    """The bubblewrap command line that runs ``command`` isolated, in new
    PID, mount, UTS and IPC namespaces (and network, unless 'host'), with a
    /dev and /proc of its own. bwrap itself runs as root (it makes the
    namespaces); the command runs as the spec's user, else as ``run_as``.

    PID 1 of the namespace is bwrap's own init, and the command is PID 2:
    the kernel drops a signal that PID 1 has no handler for, so a command
    that were PID 1 would ignore the SIGTERM of a stop and wait out the
    whole grace. The init reaps what is orphaned in the namespace, and when
    the command exits bwrap exits with its status and the rest of the
    namespace is killed. It forwards no signal: a stop signals every
    process of the namespace itself (``ProcessExecution.terminate``)."""
    argv = [bwrap, "--unshare-pid", "--unshare-uts", "--unshare-ipc"]
    # If jobdock dies, bwrap's child goes with it.
    argv += ["--die-with-parent", "--hostname", "jobdock"]
    if isolation.network == "none":
        argv.append("--unshare-net")
    filesystem = isolation.filesystem
    if isinstance(filesystem, RootFilesystem):
        argv += ["--bind", filesystem.rootfs, "/"]
    elif filesystem == "readonly":
        argv += ["--ro-bind", "/", "/", "--perms", "1777", "--tmpfs", "/tmp"]
    else:
        argv += ["--bind", "/", "/"]
    argv += [*_DEVICES, "--proc", "/proc", "--chdir", cwd, "--"]
    if isolation.user is not None or isolation.group is not None:
        argv += _setpriv(isolation.user, isolation.group, run_as)
    elif run_as is not None:
        argv += setpriv_argv(run_as.uid, run_as.gid)
    return argv + command


#: Every isolated job's /dev, whatever its file system: bwrap's minimal one
#: (null, zero, full, random, urandom, tty, a private devpts at /dev/pts)
#: and a private /dev/shm anyone may write. Binding the host's /dev would
#: not do: bubblewrap binds ``nodev``, so no device in it could be opened.
_DEVICES = ["--dev", "/dev", "--perms", "1777", "--tmpfs", "/dev/shm"]


def setpriv_argv(uid: int, gid: int) -> list[str]:
    """setpriv (util-linux) drops to the uid and gid, with no supplementary
    groups, and execs the command."""
    return ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--"]


def _setpriv(user: str | None, group: str | None, run_as: RunAs | None) -> list[str]:
    # The owner's gid when only a user is named, and the owner's uid when
    # only a group is (never root by omission).
    uid, gid = (run_as.uid, run_as.gid) if run_as is not None else (0, 0)
    try:
        if user is not None and user.isdigit():
            uid = gid = int(user)
        elif user is not None:
            entry = pwd.getpwnam(user)
            uid, gid = entry.pw_uid, entry.pw_gid
        if group is not None:
            gid = int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
    except (KeyError, ValueError):
        raise SpawnError(f"no such user or group: {user or group!r}") from None
    return setpriv_argv(uid, gid)
