"""Job identities: with authentication on, each owner's process jobs run as
an unprivileged uid of that owner's, never as the server (docs/security.md,
"Job identities: what a job can reach").

An owner's uid comes from ``job_uids`` and is recorded in the store the
first time, so every worker sharing it agrees; its gid is the same number
and it has no supplementary groups. Its HOME is ``job_homes/UID`` (0700,
its own), outside the server's home. The server, for its part, keeps its
home, store, configuration and keys to itself (:func:`protect_server_files`)
and refuses to start where it cannot keep jobs off them
(:func:`startup_problem`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
from pathlib import Path

from jobdock.errors import JobdockError, SpawnError
from jobdock.models import Isolation, JobSpec
from jobdock.runtimes.base import RunAs
from jobdock.settings import Settings
from jobdock.store.protocol import UidSource

_log = logging.getLogger(__name__)

#: The warning said at start-up, and to admins by /v1/me, with ``jobs_as_server``.
AS_SERVER_WARNING = (
    "jobs_as_server is set: every process job runs as this server's own user, so any "
    "user's job can read every other user's jobs and secrets and the server's key and store"
)


def startup_problem(settings: Settings) -> str | None:
    """Why this server or worker must not start as configured, or None."""
    if not settings.job_identities:
        return None
    if os.geteuid() != 0:
        return (
            f"refusing to start: with authentication on, jobs must run as identities of "
            f"their own, which needs root (this process runs as uid {os.geteuid()}); run it "
            "as root, or set jobs_as_server = true to let every job run as this user"
        )
    homes, home = settings.job_homes.resolve(), settings.home.resolve()
    if homes == home or home in homes.parents:
        return f"refusing to start: job_homes ({homes}) must not be inside the server's home"
    return None


def shared_store_problem(settings: Settings, has_tokens: bool) -> str | None:
    """Why a worker must not run the jobs of a store that has API tokens
    (several users' jobs) as itself, or None."""
    if not has_tokens or settings.auth_enabled or settings.jobs_as_server:
        return None
    return (
        "refusing to start: the store has API tokens, so its jobs are several users'; "
        "set tokens = true (JOBDOCK_TOKENS) on this worker too, so that they run as "
        "identities of their own, or jobs_as_server = true to run them all as this user"
    )


def warning(settings: Settings) -> str | None:
    """What an admin should know about how jobs are walled off, or None."""
    return AS_SERVER_WARNING if settings.auth_enabled and settings.jobs_as_server else None


def protect_server_files(settings: Settings) -> None:
    """Make the server's home (0700), store files, configuration and keys
    (0600) unreadable to others, where they are this process's."""
    settings.home.mkdir(parents=True, exist_ok=True)
    _restrict(settings.home, 0o700)
    db = settings.home / "jobdock.db"
    paths = [Path(f"{db}{suffix}") for suffix in ("", "-wal", "-shm")]
    if settings.db and settings.db.startswith("sqlite:///"):
        db = Path(settings.db.removeprefix("sqlite:///"))
        paths += [Path(f"{db}{suffix}") for suffix in ("", "-wal", "-shm")]
    paths += [p for p in (settings.config, settings.tls_key, settings.docker_tls_key) if p]
    for path in paths:
        _restrict(path, 0o600)


def _restrict(path: Path, mode: int) -> None:
    try:
        info = path.lstat()
        if info.st_uid == os.geteuid() and stat.S_IMODE(info.st_mode) & 0o077:
            path.chmod(stat.S_IMODE(info.st_mode) & mode)
    except OSError:
        pass


def run_as_refusal(spec: JobSpec, settings: Settings, owner: str) -> tuple[str, str] | None:
    """(field, message) when ``spec`` names a user or group (isolation.user,
    isolation.group) that ``owner``'s jobs may not run as, or None."""
    if not settings.job_identities or not isinstance(spec.isolation, Isolation):
        return None
    allowed = settings.job_run_as.get(owner, [])
    for field in ("user", "group"):
        value = getattr(spec.isolation, field)
        if value is not None and value not in allowed:
            return (
                f"isolation.{field}",
                f"isolation.{field}: the jobs of {owner!r} may not run as {value!r} here; "
                "they run as their own identity (an operator allows more in job_run_as)",
            )
    return None


class Identities:
    """The identities owners' process jobs run as, allocated once per owner."""

    def __init__(self, settings: Settings, store: UidSource) -> None:
        self.enabled = settings.job_identities
        self._store = store
        self._range = settings.job_uid_range
        self._homes = settings.job_homes
        self._known: dict[str, RunAs] = {}

    async def run_as(self, owner: str) -> RunAs | None:
        """The identity of ``owner``'s jobs (None with identities off), its
        HOME made where missing; raises SpawnError when there is none."""
        if not self.enabled:
            return None
        known = self._known.get(owner)
        if known is not None:
            return known
        try:
            uid = await self._store.job_uid(owner, *self._range)
        except JobdockError as exc:
            raise SpawnError(f"cannot give the job an identity: {exc.message}") from None
        found = RunAs(uid, uid, str(self._homes / str(uid)))
        await asyncio.get_running_loop().run_in_executor(None, self._make_home, found)
        self._known[owner] = found
        return found

    def _make_home(self, run_as: RunAs) -> None:
        try:
            self._homes.mkdir(mode=0o711, parents=True, exist_ok=True)
            info = self._homes.stat()
            if info.st_uid != os.geteuid() or info.st_mode & 0o022:
                raise SpawnError(
                    f"job_homes {self._homes} must belong to the server and be writable by "
                    "it alone (another user could put links there)"
                )
            home = Path(run_as.home)
            try:
                home.mkdir(mode=0o700)
            except FileExistsError:
                if not stat.S_ISDIR(home.lstat().st_mode):
                    raise SpawnError(f"the job's HOME {home} is not a directory") from None
            os.chown(home, run_as.uid, run_as.gid, follow_symlinks=False)
            home.chmod(0o700)
        except OSError as exc:
            raise SpawnError(f"cannot make the job's HOME {run_as.home}: {exc}") from None
