"""One ``jobdock serve`` per home: the first holds an exclusive lock on a file
in the home for as long as it runs; a second refuses, before it touches the
store, with one line naming the first one's pid.

The lock is ``flock``'s: the kernel lets go of it when the process ends, a
``kill -9`` included, so that a crashed server never blocks the next one.

Imports nothing of jobdock's but the CLI's exits.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from jobdock.cli.exits import fail

#: The file in the home that the running server holds locked (it holds its pid).
LOCK_NAME = "serve.lock"

# The open lock files of this process: closing one would let go of its lock.
_held: list[int] = []


def hold_home(home: Path) -> None:
    """Lock ``home`` for this process until it exits; if another process
    holds it, stop with one line saying which and what to do (exit 2)."""
    home.mkdir(parents=True, exist_ok=True)
    path = home / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        fail(f"cannot open {path}: {exc.strerror}", 2)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = _holder(fd)
        os.close(fd)
        fail(
            f"another jobdock serve ({holder}) is running on the home {home}; stop it, "
            "or give this one a home of its own (--home or JOBDOCK_HOME)",
            2,
        )
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    _held.append(fd)


def _holder(fd: int) -> str:
    """Who holds the lock: its pid as it wrote it, if it did yet."""
    with contextlib.suppress(OSError, ValueError):
        return f"pid {int(os.pread(fd, 32, 0).decode().strip())}"
    return "pid unknown"
