"""How a process job's processes take on their owner's identity.

With authentication on, every process of a job runs as its owner's uid and
gid (see :mod:`jobdock.identities`), with no supplementary groups and umask
077, so that what it makes is its own. The kernel then keeps owners apart:
another uid's ``/proc/PID/environ``, ``fd``, ``root`` and ``mem`` are closed
to it, as are ``ptrace`` and signals to processes that are not its own.

The child starts as root (in its cgroup) and execs ``setpriv``, which
drops to the uid and execs the command. The working directory is entered
before the drop, and the command is exec'd after the spawn returned,
so both are checked here first, as the kernel would check them for that
uid: a directory it may not enter, or a command it may not run, is then a
``spawn_error`` as it is for any job.
"""

from __future__ import annotations

import errno
import os
import pwd
import shutil
import stat

from jobdock.errors import SpawnError
from jobdock.models import Isolation, JobSpec
from jobdock.runtimes.base import RunAs

#: The umask of a job that runs as its owner's identity: files it makes are
#: its own (0600, directories 0700) unless it says otherwise.
UMASK = 0o077


def job_home(spec: JobSpec, run_as: RunAs | None) -> str:
    """The ``HOME`` of a process job: that of the user it runs as. An
    owner's identity (``run_as``) has its own under ``job_homes``; a user
    named in ``isolation.user``, or the server's own user, has the one the
    passwd database gives; a uid it does not know gets the working directory."""
    cwd = spec.cwd or (run_as.home if run_as is not None else "/")
    user = spec.isolation.user if isinstance(spec.isolation, Isolation) else None
    if user is None and run_as is not None:
        return run_as.home
    try:
        if user is None:
            entry = pwd.getpwuid(os.getuid())
        elif user.isdigit():
            entry = pwd.getpwuid(int(user))
        else:
            entry = pwd.getpwnam(user)
    except (KeyError, OverflowError):
        return cwd
    return entry.pw_dir or cwd


def cwd_missing(spec: JobSpec) -> str | None:
    """Why the job's working directory is not there for it, or None: it is
    not on this host (or not a directory), or it is under the /tmp that a
    read-only job has its own of. (Under a rootfs it is the rootfs's; under
    gVisor the host's /tmp is seen, under its overlay.)"""
    cwd = spec.cwd or "/"
    isolation = spec.isolation if isinstance(spec.isolation, Isolation) else None
    filesystem = isolation.filesystem if isolation is not None else "host"
    if filesystem not in ("host", "readonly"):
        return None
    gvisor = isolation is not None and isolation.sandbox == "gvisor"
    if filesystem == "readonly" and not gvisor and (cwd + "/").startswith("/tmp/"):
        return f"working directory {cwd} is under /tmp, which a read-only job has its own of"
    return _not_a_directory(cwd)


def _not_a_directory(cwd: str) -> str | None:
    try:
        if not stat.S_ISDIR(os.stat(cwd).st_mode):
            return f"working directory {cwd} is not a directory"
    except FileNotFoundError:
        return f"working directory {cwd} does not exist"
    except (OSError, ValueError):
        return None  # one it may not search, or a NUL in its name: spawning says so
    return None


def in_cwd(command: str, cwd: str) -> str:
    """Where a relative command was looked for: the job's working
    directory, said after the error (bare names are looked up in PATH)."""
    return f" (working directory {cwd})" if "/" in command and not command.startswith("/") else ""


def _executable(info: os.stat_result, run_as: RunAs) -> bool:
    """Whether the x bit that applies to ``run_as`` (owner, group or other)
    is set: a directory it may enter, a file it may run."""
    if info.st_uid == run_as.uid:
        return bool(info.st_mode & stat.S_IXUSR)
    if info.st_gid == run_as.gid:
        return bool(info.st_mode & stat.S_IXGRP)
    return bool(info.st_mode & stat.S_IXOTH)


def cwd_problem(cwd: str, run_as: RunAs) -> str | None:
    """Why ``run_as`` could not enter ``cwd``, or None (also when ``cwd``
    does not exist: spawning then says so, as for any job). Checks the mode
    bits of the directory and each one above it; ACLs are not read."""
    path = os.path.realpath(cwd)
    try:
        if not stat.S_ISDIR(os.stat(path).st_mode):
            return None
        while True:
            if not _executable(os.stat(path), run_as):
                return (
                    f"Permission denied (the job runs as uid {run_as.uid}, "
                    f"which may not enter {path})"
                )
            if path == "/":
                return None
            path = os.path.dirname(path)
    except OSError:
        return None


def check_command(command: str, search_path: str | None, cwd: str, run_as: RunAs) -> None:
    """Raise SpawnError, as spawning would, when ``command`` is not found or
    ``run_as`` may not run it (for a job started through setpriv, whose own
    exec comes after the spawn)."""
    found = (
        os.path.join(cwd, command)
        if "/" in command
        else shutil.which(command, path=search_path or "")
    )
    if found is None or not os.path.exists(found):
        raise SpawnError(
            f"cannot run {command!r}: {os.strerror(errno.ENOENT)}{in_cwd(command, cwd)}",
            errno=errno.ENOENT,
        )
    problem = cwd_problem(os.path.dirname(found), run_as)
    if problem is not None or not _executable(os.stat(found), run_as):
        raise SpawnError(
            f"cannot run {command!r}: {os.strerror(errno.EACCES)} "
            f"(the job runs as uid {run_as.uid})",
            errno=errno.EACCES,
        )
