"""Benchmark of jobdock across processes: API server, ``jobdock worker``s, PostgreSQL.

Run it from the repository root::

    .venv/bin/python bench/bench_workers.py [--db postgresql://USER@HOST:PORT/DB]
                                            [--jobs 5000] [--in-flight 16]
                                            [--workers 1,2,4] [--takeover-runs 1]

Without ``--db`` it starts a throwaway PostgreSQL server of its own (the
tests' helper, tests/pg.py: ``initdb`` into a temporary directory, fsync off,
deleted at the end); with ``--db`` it creates (and drops) databases on that
server through the URL's user, who must be allowed to create databases.
Every measurement gets a new, empty database, one ``jobdock serve
--no-worker`` on a free port of 127.0.0.1 and its own ``jobdock worker``
processes, all started as ``python -m jobdock`` with a fresh ``JOBDOCK_HOME``
and stopped with SIGTERM afterwards. What is measured:

(a) throughput with 1, 2 and 4 workers (``--workers``): ``--jobs`` jobs
    running ``true`` are submitted one per request by ``--in-flight``
    requests in flight (the lean keep-alive client of bench_core.py).
    End to end is jobs / (the latest ``finished_at`` - the first POST), once
    the database (polled every 20 ms) records every job terminal; all must
    have succeeded. The CPU of the API server and of the workers (their jobs
    excluded) and of the whole machine show where the time went.
(b) takeover: with the default lease and heartbeat (10 s and 3 s), two
    workers and one ``sleep`` job; the worker running it is killed with
    SIGKILL, and the takeover time is from just before the kill to the
    ``started_at`` of the job's second attempt (recorded by the worker that
    took it over once its process was spawned). The time until the first
    attempt is recorded ``worker_lost`` is shown beside it, and the killed
    worker's leftover process must have been ended.

Problems (jobs that did not succeed, a leftover process, errors or
tracebacks in the output of jobdock's processes, a process that ignored
SIGTERM) are listed under the table and make the exit status 1; a missed
target does not.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_core import (
    Report,
    conclude,
    free_port,
    machine_busy_seconds,
    submit_concurrently,
)

T = TypeVar("T")
REPO = Path(__file__).resolve().parent.parent
TERMINAL = ("succeeded", "failed", "cancelled")
START_SECONDS = 60.0
STOP_SECONDS = 30.0
THROUGHPUT_TARGET = 500.0  # jobs/s with 4 workers
TAKEOVER_TARGET = 15.0  # seconds, default lease and heartbeat
#: The settings of these benchmarks; anything else in the environment that
#: starts with JOBDOCK_ is passed on to the processes as it is.
OWN_SETTINGS = (
    "JOBDOCK_DB",
    "JOBDOCK_HOME",
    "JOBDOCK_PORT",
    "JOBDOCK_LOG_LEVEL",
    "JOBDOCK_LEASE_SECONDS",
    "JOBDOCK_HEARTBEAT_SECONDS",
    "JOBDOCK_POLL_SECONDS",
)


def wait_for(check: Callable[[], T | None], timeout: float, what: str) -> T:
    """Poll ``check`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.02)


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) that process ``pid`` itself has used."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def alive(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie does not)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] not in ("Z", "X")
    except OSError:
        return False


# -- the database ------------------------------------------------------------------------


class Databases:
    """New, empty databases on one PostgreSQL server: its own, or ``--db``'s."""

    def __init__(self, url: str | None) -> None:
        self._server: Any = None
        if url is None:
            sys.path.insert(0, str(REPO / "tests"))
            from pg import PostgresServer

            self._server = PostgresServer().start()
            url = self._server.url("postgres")
        self._admin = make_url(url)
        self.where = (
            f"own PostgreSQL server on port {self._server.port}"
            if self._server is not None
            else f"PostgreSQL at {self._admin.host}:{self._admin.port or 5432}"
        )
        self._names = (f"jobdock_bench_{os.getpid()}_{n}" for n in itertools.count(1))

    def conninfo(self, name: str) -> str:
        """A libpq URL of database ``name``."""
        url = self._admin.set(drivername="postgresql", database=name)
        return url.render_as_string(hide_password=False)

    def url(self, name: str) -> str:
        """The store URL jobdock is given."""
        return self.conninfo(name)

    def _admin_run(self, statement: sql.Composable) -> None:
        admin = self.conninfo(self._admin.database or "postgres")
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(statement)

    def create(self) -> str:
        name = next(self._names)
        self._admin_run(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return name

    def drop(self, name: str) -> None:
        self._admin_run(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )

    def version(self) -> str:
        admin = self.conninfo(self._admin.database or "postgres")
        with psycopg.connect(admin) as conn:
            row = conn.execute("SHOW server_version").fetchone()
        return str(row[0]).split()[0] if row else "?"

    def cpu_seconds(self) -> float | None:
        """CPU time used so far by our own server's postmaster and its
        current children (its connections last as long as a run); None for
        a server of ``--db``."""
        if self._server is None or self._server.pid is None:
            return None
        postmaster = int(self._server.pid)
        total = cpu_seconds(postmaster)
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[1]) == postmaster:
                total += cpu_seconds(int(entry.name))
        return total

    def close(self) -> None:
        if self._server is not None:
            self._server.close()


# -- jobdock's processes -------------------------------------------------------------------


class Process:
    """``python -m jobdock ARGS`` with its own home, its output in a file."""

    _STARTED = re.compile(r"worker (\S+) started")

    def __init__(self, home: Path, args: list[str], env: dict[str, str]) -> None:
        self.home = home
        self.home.mkdir(parents=True)
        self.output_path = home / "output.log"
        self.killed = False
        self.ignored_sigterm = False
        self.exit_code: int | None = None
        with self.output_path.open("wb") as output:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "jobdock", *args],
                env={**env, "JOBDOCK_HOME": str(home)},
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
            )

    @property
    def pid(self) -> int:
        return self._process.pid

    def output(self) -> str:
        try:
            return self.output_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def check_running(self) -> None:
        if self._process.poll() is not None:
            raise RuntimeError(
                f"{self.home.name} exited with {self._process.returncode}:\n{self.output()}"
            )

    def worker_id(self) -> str | None:
        """The id a worker logged on start (it runs at log level info)."""
        self.check_running()
        found = self._STARTED.search(self.output())
        return found.group(1) if found else None

    def kill(self) -> None:
        self._process.kill()
        self.exit_code = self._process.wait()
        self.killed = True

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not exited within STOP_SECONDS."""
        if self.exit_code is not None:
            return
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                self.ignored_sigterm = True
                self.kill()
                return
        self.exit_code = self._process.returncode


class Cluster:
    """One API server (``--no-worker``) and ``workers`` workers on one database."""

    def __init__(self, base: Path, db_url: str, workers: int, settings: dict[str, str]) -> None:
        env = {k: v for k, v in os.environ.items() if k not in OWN_SETTINGS}
        env.update(settings, JOBDOCK_DB=db_url)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = Process(
            base / "server",
            ["serve", "--no-worker"],
            {**env, "JOBDOCK_PORT": str(self.port), "JOBDOCK_LOG_LEVEL": "warning"},
        )
        self.workers = [
            Process(base / f"worker-{n}", ["worker"], {**env, "JOBDOCK_LOG_LEVEL": "info"})
            for n in range(workers)
        ]
        self.worker_ids: dict[str, Process] = {}

    @property
    def processes(self) -> list[Process]:
        return [self.server, *self.workers]

    def wait_ready(self) -> None:
        def healthy() -> bool:
            self.server.check_running()
            with contextlib.suppress(httpx.TransportError):
                return httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200
            return False

        wait_for(healthy, START_SECONDS, "the API server")
        for worker in self.workers:
            worker_id = wait_for(worker.worker_id, START_SECONDS, "a worker to start")
            self.worker_ids[worker_id] = worker

    def stop(self, report: Report, what: str) -> None:
        for process in [*self.workers, self.server]:
            process.stop()
            if process.ignored_sigterm:
                report.problems.append(f"{what}: {process.home.name} ignored SIGTERM")
            report.problems += [
                f"{what}: {process.home.name}: {line}"
                for line in process.output().splitlines()
                if "ERROR" in line or "Traceback" in line
            ]


@contextlib.contextmanager
def cluster(
    databases: Databases, workers: int, settings: dict[str, str], report: Report, what: str
) -> Iterator[tuple[Cluster, str]]:
    """A new database with a server and workers on it, all ready; afterwards
    stopped and dropped."""
    name = databases.create()
    with tempfile.TemporaryDirectory(prefix="jobdock-bench-") as base:
        procs = Cluster(Path(base), databases.url(name), workers, settings)
        try:
            procs.wait_ready()
            yield procs, databases.conninfo(name)
        except BaseException:
            for process in procs.processes:
                output = process.output()
                if output:
                    print(f"{process.home.name} output:\n{output}", file=sys.stderr)
            raise
        finally:
            procs.stop(report, what)
            databases.drop(name)


# -- (a) throughput --------------------------------------------------------------------------


def bench_throughput(
    databases: Databases, workers: int, count: int, in_flight: int, report: Report
) -> float:
    what = f"{workers} worker{'s' if workers > 1 else ''}"
    with cluster(databases, workers, {}, report, what) as (procs, conninfo):
        pids = [p.pid for p in procs.processes]
        cpu_before = [cpu_seconds(pid) for pid in pids]
        pg_before, client_before = databases.cpu_seconds(), time.process_time()
        busy_before, total_before = machine_busy_seconds()
        start, submitted = asyncio.run(submit_concurrently(procs.port, count, in_flight))
        with psycopg.connect(conninfo, autocommit=True) as db:

            def all_terminal() -> bool:
                row = db.execute(
                    "SELECT count(*) FROM jobs WHERE state = ANY(%s)", (list(TERMINAL),)
                ).fetchone()
                return row is not None and int(row[0]) >= count

            wait_for(all_terminal, 60.0 + count / 20.0, f"{count} jobs to end ({what})")
            wall = time.time() - start
            cpu = [cpu_seconds(pid) - before for pid, before in zip(pids, cpu_before, strict=True)]
            pg_after, client = databases.cpu_seconds(), time.process_time() - client_before
            busy, total = machine_busy_seconds()
            row = db.execute(
                "SELECT max(finished_at), count(*), count(*) FILTER (WHERE state = 'succeeded')"
                " FROM jobs"
            ).fetchone()
            assert row is not None
            end, stored, succeeded = float(row[0]), int(row[1]), int(row[2])
            shares = [
                int(n) for (n,) in db.execute("SELECT count(*) FROM attempts GROUP BY worker_id")
            ]
    if stored != count or succeeded != count:
        report.problems.append(
            f"{what}: {succeeded} of {stored} stored jobs succeeded, {count} sent"
        )
    rate = count / (end - start)
    report.add(
        f"{what}: end-to-end (jobs/s)",
        f"{rate:.0f}",
        f">= {THROUGHPUT_TARGET:.0f}" if workers == 4 else "",
    )
    report.add(f"{what}: submit phase (jobs/s)", f"{count / (submitted - start):.0f}")
    postgres = (
        f"{100 * (pg_after - pg_before) / wall:.0f}"
        if pg_before is not None and pg_after is not None
        else "?"
    )
    report.add(
        f"{what}: CPU server / workers / PostgreSQL / client (% core)",
        f"{100 * cpu[0] / wall:.0f} / {100 * sum(cpu[1:]) / wall:.0f} / {postgres}"
        f" / {100 * client / wall:.0f}",
    )
    report.add(
        f"{what}: machine CPU busy (%)",
        f"{100 * (busy - busy_before) / max(total - total_before, 1e-9):.0f}",
    )
    if workers > 1:
        report.add(f"{what}: jobs per worker min / max", f"{min(shares)} / {max(shares)}")
    report.add(f"{what}: jobs succeeded", f"{succeeded}/{count}", f"{count}/{count}")
    return rate


# -- (b) takeover ------------------------------------------------------------------------------


def default_settings() -> dict[str, str]:
    """Lease, heartbeat and poll at jobdock's defaults, whatever the environment says."""
    from jobdock.settings import Settings

    fields = Settings.model_fields
    return {
        f"JOBDOCK_{name.upper()}": str(fields[name].default)
        for name in ("lease_seconds", "heartbeat_seconds", "poll_seconds")
    }


def bench_takeover(databases: Databases, run: int, report: Report) -> float:
    settings = default_settings()
    what = f"takeover run {run}"
    with cluster(databases, 2, settings, report, what) as (procs, conninfo):
        response = httpx.post(f"{procs.url}/v1/jobs", json={"command": ["sleep", "3600"]})
        response.raise_for_status()
        job_id = str(response.json()["id"])
        with psycopg.connect(conninfo, autocommit=True) as db:

            def attempt(number: int) -> tuple[Any, ...] | None:
                return db.execute(
                    "SELECT worker_id, pid, started_at, finished_at, reason FROM attempts"
                    " WHERE job_id = %s AND number = %s",
                    (job_id, number),
                ).fetchone()

            first = wait_for(
                lambda: (row := attempt(1)) and row[2] is not None and row,
                30.0,
                "the job to start",
            )
            victim = procs.worker_ids[first[0]]
            killed_at = time.time()
            victim.kill()
            second = wait_for(
                lambda: (row := attempt(2)) and row[2] is not None and row,
                120.0,
                "the job's second attempt to start",
            )
            lost = attempt(1)
        takeover = float(second[2]) - killed_at
        assert lost is not None
        if lost[4] != "worker_lost" or lost[3] is None:
            report.problems.append(f"{what}: the first attempt ended {lost[4]}, not worker_lost")
        leftover = int(first[1])
        if alive(leftover):
            report.problems.append(f"{what}: the killed worker's job (pid {leftover}) still runs")
            with contextlib.suppress(OSError):
                os.killpg(leftover, signal.SIGKILL)
        httpx.post(f"{procs.url}/v1/jobs/{job_id}/cancel").raise_for_status()
        detected = float(lost[3]) - killed_at if lost[3] is not None else float("nan")
    lease, beat = settings["JOBDOCK_LEASE_SECONDS"], settings["JOBDOCK_HEARTBEAT_SECONDS"]
    suffix = f" #{run}" if run > 1 else ""
    report.add(
        f"takeover{suffix}: kill -9 -> next attempt started (s)",
        f"{takeover:.2f}",
        f"< {TAKEOVER_TARGET:.0f} (lease {float(lease):g} s, heartbeat {float(beat):g} s)",
    )
    report.add(f"takeover{suffix}: kill -9 -> recorded worker_lost (s)", f"{detected:.2f}")
    return takeover


# -- main ----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--db",
        help="a PostgreSQL server to create the databases on, as a URL "
        "(postgresql://USER@HOST:PORT/DB); default: start one",
    )
    parser.add_argument("--jobs", type=int, default=5000, help="jobs per throughput run [5000]")
    parser.add_argument("--in-flight", type=int, default=16, help="submits in flight [16]")
    parser.add_argument(
        "--workers", default="1,2,4", help="worker counts of the throughput runs [1,2,4]"
    )
    parser.add_argument(
        "--takeover-runs", type=int, default=1, help="takeover measurements, 0 for none [1]"
    )
    args = parser.parse_args(argv)
    try:
        args.worker_counts = [int(n) for n in args.workers.split(",") if n.strip()]
    except ValueError:
        parser.error("--workers must be comma-separated numbers, e.g. 1,2,4")
    if any(n < 1 for n in args.worker_counts) or args.jobs < 1 or args.in_flight < 1:
        parser.error("--workers, --jobs and --in-flight must be at least 1")
    if args.takeover_runs < 0:
        parser.error("--takeover-runs must not be negative")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = Report()
    databases = Databases(args.db)
    try:
        version = databases.version()
        for workers in args.worker_counts:
            bench_throughput(databases, workers, args.jobs, args.in_flight, report)
        for run in range(1, args.takeover_runs + 1):
            bench_takeover(databases, run, report)
    finally:
        databases.close()
    cores = len(os.sched_getaffinity(0))
    title = (
        f"jobdock workers benchmark  (store: PostgreSQL {version}, {databases.where}; "
        f"{args.jobs} jobs, {args.in_flight} in flight; {cores} cores)"
    )
    return conclude(title, report)


if __name__ == "__main__":
    sys.exit(main())
