"""A job that becomes claimable starts at once, not at the next poll
(issue 17): every server and worker here polls only every POLL seconds,
so a job that waited for the poll would start seconds late.

Each test measures, on the store's own clock, the time from the event that
made a job claimable (a finish of any outcome, a cancel, a freed
``max_running`` slot, a retry's due time, a schedule's fire time) to the
job's start, and asserts it is under BOUND: the claim, the spawn and the
record of the start, with room for a 2-core machine running several jobdock
processes. Real processes throughout: ``jobdock serve`` with its embedded
worker on SQLite, ``serve --no-worker`` plus ``jobdock worker`` processes on
PostgreSQL and on one SQLite file.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path

import pytest

from jobdock import Client, Job, JobState
from support import ServerProcess, WorkerProcess, eventually, stop_all

#: The fallback poll of every process in these tests: far longer than BOUND.
POLL = "10"
#: How late a job that became claimable may start.
BOUND = 0.5
#: Each of these jobs runs long enough that the next cannot start with it.
SLEEP = ["sleep", "0.3"]


class Processes:
    """The jobdock processes of one test; ``close()`` ends them all."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.procs: list[ServerProcess | WorkerProcess] = []

    def server(self, db: str | None = None, *, worker: bool = True, **settings: str) -> str:
        """A ``jobdock serve`` polling every POLL seconds, started; its URL."""
        home = self.base / f"server-{len(self.procs)}"
        if db is not None:
            settings["db"] = db
        proc = ServerProcess(
            home, args=() if worker else ("--no-worker",), poll_seconds=POLL, **settings
        )
        self.procs.append(proc)
        return proc.start().url

    def worker(self, db: str, **settings: str) -> None:
        """A ``jobdock worker`` on ``db`` polling every POLL seconds, started."""
        proc = WorkerProcess(
            self.base / f"worker-{len(self.procs)}", db, poll_seconds=POLL, **settings
        )
        self.procs.append(proc)
        proc.start()

    def logs(self) -> str:
        return "\n".join(f"--- {proc.log_path}:\n{proc.log()[-4000:]}" for proc in self.procs)

    def close(self) -> None:
        stop_all(self.procs)


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    procs = Processes(tmp_path / "procs")
    try:
        yield procs
    finally:
        procs.close()
        # Shown by pytest with a failing test's captured output.
        print(procs.logs())


def _at(moment: datetime | None) -> float:
    assert moment is not None
    return moment.timestamp()


def _finished(client: Client, job_id: str) -> Job:
    return client.wait(job_id, timeout=60)


def _gaps(jobs: Sequence[Job]) -> list[float]:
    """For jobs that ran one after another: from each one's finish to the
    next one's start."""
    ordered = sorted(jobs, key=lambda job: _at(job.started_at))
    return [
        _at(after.started_at) - _at(before.finished_at)
        for before, after in itertools.pairwise(ordered)
    ]


def _one_after_another(url: str, spec: dict[str, object], count: int = 4) -> list[float]:
    """Submit ``count`` jobs of ``spec`` that may only run one at a time;
    the gaps between them, once all succeeded."""
    with Client(url) as client:
        ids = [client.submit(spec).id for _ in range(count)]
        done = [_finished(client, job_id) for job_id in ids]
    assert [job.state for job in done] == [JobState.SUCCEEDED] * count
    gaps = _gaps(done)
    assert min(gaps) >= 0, f"two jobs ran at once: {gaps}"
    return gaps


def _keyed(key: str) -> dict[str, object]:
    return {"command": SLEEP, "concurrency_key": key}


def test_jobs_of_a_key_start_one_after_another_at_once_embedded(processes: Processes) -> None:
    url = processes.server()

    gaps = _one_after_another(url, _keyed("k-embedded"))

    assert max(gaps) < BOUND, f"gaps between jobs of one key: {gaps}"


def test_jobs_of_a_key_start_one_after_another_at_once_on_postgres(
    pg_url: str, processes: Processes
) -> None:
    url = processes.server(pg_url, worker=False)
    processes.worker(pg_url)
    processes.worker(pg_url)

    gaps = _one_after_another(url, _keyed("k-postgres"))

    assert max(gaps) < BOUND, f"gaps between jobs of one key: {gaps}"


def test_a_worker_on_the_servers_sqlite_file_starts_jobs_at_once(
    processes: Processes, tmp_path: Path
) -> None:
    db = f"sqlite:///{tmp_path / 'shared.db'}"
    url = processes.server(db, worker=False)
    processes.worker(db)

    with Client(url) as client:
        # The first job of a process pays for its lazy imports: not measured.
        _finished(client, client.submit({"command": ["true"]}).id)
        submitted = time.time()
        first = _finished(client, client.submit({"command": ["true"]}).id)
    gaps = _one_after_another(url, _keyed("k-sqlite-worker"))

    late = _at(first.started_at) - submitted
    assert max(late, *gaps) < BOUND, f"started {late:.3f}s after its submit; gaps of a key: {gaps}"


def test_a_cancel_of_a_running_keyed_job_starts_the_next_at_once(processes: Processes) -> None:
    url = processes.server()
    with Client(url) as client:
        running = client.submit({"command": ["sleep", "60"], "concurrency_key": "k-cancel"})
        waiting = client.submit({"command": ["true"], "concurrency_key": "k-cancel"})
        eventually(
            lambda: client.get(running.id).state is JobState.RUNNING,
            timeout=30,
            what="the first job to run",
        )

        client.cancel(running.id)
        cancelled = _finished(client, running.id)
        started = _finished(client, waiting.id)

    assert cancelled.state is JobState.CANCELLED
    assert started.state is JobState.SUCCEEDED
    late = _at(started.started_at) - _at(cancelled.finished_at)
    assert 0 <= late < BOUND, f"the next job started {late:.3f}s after the cancel ended"


def test_a_freed_max_running_slot_starts_the_next_job_at_once(processes: Processes) -> None:
    url = processes.server(max_running="1")

    gaps = _one_after_another(url, {"command": SLEEP})

    assert max(gaps) < BOUND, f"gaps between jobs under max_running=1: {gaps}"


def test_a_retry_starts_at_its_due_time(processes: Processes, tmp_path: Path) -> None:
    url = processes.server()
    marker = tmp_path / "tried"
    with Client(url) as client:
        job = client.submit(
            {
                "command": ["sh", "-c", f"test -e {marker} || {{ touch {marker}; exit 3; }}"],
                "retry": {"max_attempts": 2, "backoff": {"initial": 1.0, "jitter": 0}},
            }
        )
        done = _finished(client, job.id)

    assert done.state is JobState.SUCCEEDED
    first, second = done.attempts
    late = _at(second.started_at) - (_at(first.finished_at) + 1.0)
    assert -0.05 <= late < BOUND, f"the retry started {late:.3f}s after its due time"


@pytest.fixture(params=["postgresql", "sqlite"])
def shared_db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store for an API server and a separate worker: a new PostgreSQL
    database, or one SQLite file. (Set up before ``processes``, so that the
    processes end before the database is dropped.)"""
    if request.param == "postgresql":
        return str(request.getfixturevalue("pg_url"))
    return f"sqlite:///{tmp_path / 'shared.db'}"


def test_a_schedule_added_through_the_api_fires_on_time_on_a_separate_worker(
    shared_db: str, processes: Processes
) -> None:
    url = processes.server(shared_db, worker=False)
    processes.worker(shared_db)
    name = f"wake-{time.time_ns()}"

    with Client(url) as client:
        added = client.add_schedule(
            {"name": name, "cron": "* * * * * *", "job": {"command": ["true"]}}
        )
        fire_at = _at(added.next_fire_at)
        jobs = eventually(
            lambda: client.list(labels={"jobdock.schedule": name}).jobs,
            timeout=30,
            what="the schedule's first job",
        )
        client.remove_schedule(name)

    late = min(_at(job.created_at) for job in jobs) - fire_at
    assert late < BOUND, f"the schedule's first job was made {late:.3f}s after its fire time"
