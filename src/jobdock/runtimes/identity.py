"""How a process job's processes take on their owner's identity.

With authentication on, every process of a job runs as its owner's uid and
gid (see :mod:`jobdock.identities`), with no supplementary groups and umask
077, so that what it makes is its own. The kernel then keeps owners apart:
another uid's ``/proc/PID/environ``, ``fd``, ``root`` and ``mem`` are closed
to it, as are ``ptrace`` and signals to processes that are not its own.

CPython changes directory before it drops to the uid, so a working
directory the uid could not enter would be entered anyway: it is checked
here first, as the kernel would check it for that uid.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from typing import Any

from jobdock.errors import SpawnError
from jobdock.runtimes.base import RunAs

#: The umask of a job that runs as its owner's identity: files it makes are
#: its own (0600, directories 0700) unless it says otherwise.
UMASK = 0o077


def popen_identity(run_as: RunAs | None) -> dict[str, Any]:
    """The arguments of ``subprocess.Popen`` that drop the child to ``run_as``."""
    if run_as is None:
        return {}
    return {"user": run_as.uid, "group": run_as.gid, "extra_groups": [], "umask": UMASK}


def _searchable(info: os.stat_result, run_as: RunAs) -> bool:
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
            if not _searchable(os.stat(path), run_as):
                return (
                    f"Permission denied (the job runs as uid {run_as.uid}, "
                    f"which may not enter {path})"
                )
            if path == "/":
                return None
            path = os.path.dirname(path)
    except OSError:
        return None


def check_command(command: str, path: str | None) -> None:
    """Raise SpawnError, as spawning would, when ``command`` is not found
    (for a job started through setpriv, whose exec comes later)."""
    found = os.path.exists(command) if "/" in command else shutil.which(command, path=path or "")
    if not found:
        raise SpawnError(f"cannot run {command!r}: {os.strerror(errno.ENOENT)}", errno=errno.ENOENT)
