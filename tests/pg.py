"""A throwaway PostgreSQL server for the tests: ``initdb`` into a temporary
directory, ``postgres`` on loopback with trust authentication and without
durability (fsync off), stopped and deleted at the end.

As root (PostgreSQL refuses to run as root) the server and ``initdb`` run as
the ``postgres`` OS user, which owns the temporary directory. The postmaster
is our own child process: ``kill()`` is a real SIGKILL of it, as a crash
would be, and ``start()`` brings it back on the same data directory.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import weakref
from pathlib import Path

from support import eventually, free_port

#: Overrides where the server binaries (initdb, postgres) are looked for.
BINDIR_ENV = "JOBDOCK_TEST_PG_BINDIR"

#: Settings for speed, not durability against power loss: a test database is
#: thrown away. synchronous_commit stays on: with fsync off it costs only a
#: write(2) per commit, and with it off a SIGKILL of the server (``kill()``)
#: would lose the last commits, which restart tests must be able to rely on.
SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "fsync": "off",
    "synchronous_commit": "on",
    "full_page_writes": "off",
    "max_connections": "200",
    "shared_buffers": "32MB",
    "max_wal_size": "1GB",
    "checkpoint_timeout": "1h",
    "autovacuum": "off",
    "max_parallel_workers_per_gather": "0",
    "jit": "off",
    "log_min_messages": "warning",
    "logging_collector": "off",
    "timezone": "UTC",
}

#: Every server's directory is /tmp/DIR_PREFIX*, with the pid of the process
#: that made it in OWNER_FILE, so that a later run can delete the directories
#: of runs that were killed before they could clean up.
DIR_PREFIX = "jobdock-pg-"
OWNER_FILE = "owner.pid"

START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0

_counter = itertools.count(1)


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server binaries (or no psycopg) on this machine."""


class PortTaken(RuntimeError):
    """Another process took the port the server was to listen on."""


def find_bindir() -> Path:
    """The newest PostgreSQL server binaries: $JOBDOCK_TEST_PG_BINDIR, else
    the newest /usr/lib/postgresql/*/bin, else where ``initdb`` is on PATH."""
    override = os.environ.get(BINDIR_ENV)
    if override:
        path = Path(override)
        if not (path / "initdb").is_file():
            raise PostgresUnavailable(f"${BINDIR_ENV}={override} holds no initdb")
        return path

    def version(path: Path) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", path.parent.name))

    found = [
        path
        for path in Path("/usr/lib/postgresql").glob("*/bin")
        if (path / "initdb").is_file() and (path / "postgres").is_file()
    ]
    if found:
        return max(found, key=version)
    initdb = shutil.which("initdb")
    if initdb and (Path(initdb).parent / "postgres").is_file():
        return Path(initdb).parent
    raise PostgresUnavailable(
        "no PostgreSQL server binaries (no initdb under /usr/lib/postgresql/*/bin or on PATH; "
        "install them with `apt-get install postgresql`, or set $" + BINDIR_ENV + ")"
    )


_PR_SET_PDEATHSIG = 1
_prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up here, not in a forked child


def server_user() -> str | None:
    """The OS user to run PostgreSQL as: ``postgres`` when we are root (the
    server refuses to run as root), else None (as ourselves)."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise PostgresUnavailable(
            "running as root, and there is no `postgres` OS user to run PostgreSQL as"
        ) from None
    return "postgres"


def _die_with_parent() -> None:
    """In the child, after it became the postgres user (a change of user
    clears the setting): have the kernel send SIGQUIT (immediate shutdown)
    to the postmaster if the test process dies without cleaning up."""
    _prctl(_PR_SET_PDEATHSIG, int(signal.SIGQUIT), 0, 0, 0)


class PostgresServer:
    """One PostgreSQL cluster in a fresh temporary directory.

    ``start()`` runs initdb the first time and starts the postmaster; the
    first start picks a free port that later starts keep, so URLs stay valid
    across ``kill()``/``start()``. ``settings`` override ``SETTINGS``, e.g.
    ``PostgresServer(max_connections="20")``.
    """

    def __init__(self, bindir: Path | None = None, **settings: str) -> None:
        self.bindir = bindir or find_bindir()
        self.settings = {**SETTINGS, **settings}
        self.user = "postgres"  # the database superuser; trust auth, no password
        self.host = "127.0.0.1"
        self.port = 0
        self._base: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._run_as = server_user()
        # Runs on close(), when the object is collected, or at exit.
        self._finalizer = weakref.finalize(self, _cleanup, self.__dict__)

    # -- paths ---------------------------------------------------------------

    @property
    def base(self) -> Path:
        if self._base is None:
            # Short and world-traversable: the unix socket path must stay
            # under ~100 bytes, and the postgres user must reach it.
            _remove_abandoned_dirs()
            self._base = Path(tempfile.mkdtemp(prefix=DIR_PREFIX, dir="/tmp"))
            (self._base / OWNER_FILE).write_text(f"{os.getpid()}\n")
            if self._run_as:
                shutil.chown(self._base, self._run_as, self._run_as)
        return self._base

    @property
    def data_dir(self) -> Path:
        return self.base / "data"

    @property
    def socket_dir(self) -> Path:
        return self.base

    @property
    def log_path(self) -> Path:
        return self.base / "server.log"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # -- lifecycle -----------------------------------------------------------

    def _run_kwargs(self) -> dict[str, object]:
        kwargs: dict[str, object] = {"cwd": self.base, "env": {**os.environ, "LC_ALL": "C"}}
        if self._run_as:
            kwargs.update(user=self._run_as, group=self._run_as, extra_groups=[])
        return kwargs

    def _initdb(self) -> None:
        result = subprocess.run(
            [
                str(self.bindir / "initdb"),
                "--pgdata",
                str(self.data_dir),
                "--username",
                self.user,
                "--auth",
                "trust",
                "--encoding",
                "UTF8",
                "--locale",
                "C",
                "--no-sync",
                "--no-instructions",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=START_TIMEOUT,
            check=False,
            **self._run_kwargs(),  # type: ignore[arg-type]
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"initdb failed ({result.returncode}):\n{result.stdout.decode(errors='replace')}"
            )

    def start(self) -> PostgresServer:
        """Start the server (initdb first, the first time) and wait until it
        accepts connections."""
        if self.pid is not None:
            return self
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        if self.port:
            self._spawn(self.port)
            return self
        for attempt in itertools.count(1):
            # The first start picks a free port; another process may take it
            # before the server binds it, so try another one then.
            try:
                self._spawn(free_port())
                return self
            except PortTaken:
                if attempt == 5:
                    raise
        raise AssertionError("unreachable")

    def _spawn(self, port: int) -> None:
        """Start the postmaster on ``port``; return once it accepts
        connections. Raises PortTaken if it could not bind the port."""
        settings = {**self.settings, "port": str(port), "unix_socket_directories": str(self.base)}
        command = [str(self.bindir / "postgres"), "-D", str(self.data_dir)]
        for key, value in settings.items():
            command += ["-c", f"{key}={value}"]
        log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        on_main_thread = threading.current_thread() is threading.main_thread()
        with open(self.log_path, "ab") as log:
            if self._run_as:
                shutil.chown(self.log_path, self._run_as, self._run_as)
            proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # no Ctrl-C from the terminal
                # The parent of PR_SET_PDEATHSIG is the forking *thread*:
                # only tie the server to the main thread's life.
                preexec_fn=_die_with_parent if on_main_thread else None,
                **self._run_kwargs(),  # type: ignore[arg-type]
            )
        self._proc = proc
        self.port = port

        def log_since_start() -> str:
            with open(self.log_path, "rb") as log:
                log.seek(log_start)
                return log.read().decode(errors="replace")

        deadline = time.monotonic() + START_TIMEOUT
        delay = 0.01
        while not self._accepts_connections():
            if proc.poll() is not None:
                output = log_since_start()
                if "could not bind" in output or "could not create any TCP/IP" in output:
                    raise PortTaken(f"port {port} is taken:\n{output}")
                raise RuntimeError(f"PostgreSQL exited with {proc.returncode}:\n{output}")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(
                    f"PostgreSQL not ready after {START_TIMEOUT}s:\n{log_since_start()}"
                )
            time.sleep(delay)  # polling, with the deadline above
            delay = min(delay * 2, 0.1)

    def _accepts_connections(self) -> bool:
        import psycopg

        try:
            with psycopg.connect(self.dsn("postgres"), connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Fast shutdown (SIGINT: disconnect clients, checkpoint, exit); a
        SIGKILL if it takes longer than ``timeout``."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL the postmaster, as a crash would, and wait until its
        backends have noticed and exited too (so that ``start()`` can reuse
        the data directory and its shared memory at once)."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        children = _children(proc.pid)
        proc.kill()
        proc.wait(STOP_TIMEOUT)
        eventually(
            lambda: not any(_alive(pid) for pid in children),
            timeout=STOP_TIMEOUT,
            what="the killed postmaster's backends to exit",
        )

    def pause(self) -> None:
        """SIGSTOP the postmaster and its backends: the database hangs, as a
        stalled disk or a cut network would, where a kill refuses at once."""
        self._signal_all(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT what ``pause()`` stopped."""
        self._signal_all(signal.SIGCONT)

    def _signal_all(self, signo: signal.Signals) -> None:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        for pid in [proc.pid, *_children(proc.pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signo)

    def close(self) -> None:
        """Stop the server and delete its directory."""
        self._finalizer()

    def __enter__(self) -> PostgresServer:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- databases -----------------------------------------------------------

    def dsn(self, dbname: str = "postgres") -> str:
        """A libpq connection string (for psycopg.connect)."""
        return f"host={self.host} port={self.port} user={self.user} dbname={dbname}"

    def url(self, dbname: str = "postgres") -> str:
        """A SQLAlchemy URL for the psycopg (v3) driver."""
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{dbname}"

    def create_database(self, name: str | None = None) -> str:
        """Create a new, empty database (a generated name if none is given);
        returns its name."""
        import psycopg
        from psycopg import sql

        name = name or f"test_{os.getpid()}_{next(_counter)}"
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            conn.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name))
            )
        return name

    def drop_database(self, name: str) -> None:
        """Drop a database, disconnecting whoever is still connected to it."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def _cleanup(state: dict[str, object]) -> None:
    """Stop the server (fast, then SIGKILL) and delete its directory; safe to
    call more than once, from atexit or a finalizer."""
    proc = state.get("_proc")
    if isinstance(proc, subprocess.Popen) and proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    base = state.get("_base")
    if isinstance(base, Path):
        shutil.rmtree(base, ignore_errors=True)
        state["_base"] = None


def _remove_abandoned_dirs() -> None:
    """Delete the directories of servers whose test process is gone (killed
    before it could clean up; its server then shut down, see
    _die_with_parent), and only those: other test runs may be going on."""
    for path in Path("/tmp").glob(DIR_PREFIX + "*"):
        try:
            owner = int((path / OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue  # not one of ours, or being made right now
        postmaster = path / "data" / "postmaster.pid"
        if _alive(owner) or _alive(_first_int(postmaster)):
            continue
        shutil.rmtree(path, ignore_errors=True)


def _first_int(path: Path) -> int:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def _children(pid: int) -> list[int]:
    """The pids of the processes whose parent is ``pid``."""
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == pid:
            children.append(int(entry.name))
    return children


def _alive(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie does not)."""
    if pid <= 0:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"
