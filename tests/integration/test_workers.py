"""jobdock beyond one machine: API servers (``jobdock serve --no-worker``)
and ``jobdock worker`` processes sharing one PostgreSQL database, each a
real subprocess, with short leases (tests/support.py FAST_SETTINGS: lease
2 s, heartbeat 0.5 s, poll 0.2 s).

Every test gets a new database (``pg_url``, or its own server where it kills
PostgreSQL); without PostgreSQL server binaries the tests are skipped (see
tests/conftest.py). Processes are stopped after each test, also on failure.
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from jobdock import ApiError, Client, Job, JobState, Reason
from jobdock.models import ACTIVE_STATES
from pg import PostgresServer
from support import FAST_SETTINGS, ServerProcess, WorkerProcess, eventually, stop_all

LEASE = float(FAST_SETTINGS["JOBDOCK_LEASE_SECONDS"])
HEARTBEAT = float(FAST_SETTINGS["JOBDOCK_HEARTBEAT_SECONDS"])
#: Allowance on top of lease + heartbeat for a 2-core machine busy with
#: several jobdock processes, PostgreSQL and the jobs themselves.
TAKEOVER_MARGIN = 2.5

ACTIVE = sorted(ACTIVE_STATES)


# -- processes --------------------------------------------------------------------------


class Cluster:
    """The jobdock processes of one test; ``close()`` ends them all."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.servers: list[ServerProcess] = []
        self.workers: list[WorkerProcess] = []

    def server(self, db: str, *, worker: bool = False, **settings: str) -> ServerProcess:
        """An API server on ``db``, launched; without an embedded worker
        unless ``worker``."""
        home = self.base / f"server-{len(self.servers)}"
        proc = ServerProcess(home, args=() if worker else ("--no-worker",), db=db, **settings)
        self.servers.append(proc)
        return proc.launch()

    def worker(self, db: str, **options: Any) -> WorkerProcess:
        """A ``jobdock worker`` on ``db``, launched (options: see WorkerProcess)."""
        proc = WorkerProcess(self.base / f"worker-{len(self.workers)}", db, **options)
        self.workers.append(proc)
        return proc.launch()

    def ready(self) -> None:
        """Wait until every server launched answers and every worker
        launched claims jobs. Processes start side by side: most of their
        start-up is importing Python modules."""
        for server in self.servers:
            server.wait_healthy()
        for worker in self.workers:
            if worker.id is None:
                worker.wait_started()

    def by_id(self, worker_id: str | None) -> WorkerProcess:
        for proc in self.workers:
            if proc.id == worker_id:
                return proc
        raise AssertionError(f"no worker process has the id {worker_id!r}")

    def logs(self) -> str:
        parts = [f"--- {proc.log_path}:\n{proc.log()[-4000:]}" for proc in self.servers]
        parts += [
            f"--- {proc.log_path} ({proc.id}):\n{proc.log()[-4000:]}" for proc in self.workers
        ]
        return "\n".join(parts)

    def close(self) -> None:
        """SIGTERM everything (a paused worker is continued), SIGKILL what
        does not exit in time."""
        stop_all([*self.workers, *self.servers])


@pytest.fixture
def cluster(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    procs = Cluster(tmp_path / "procs")
    try:
        yield procs
    finally:
        procs.close()
        # Shown by pytest with a failing test's captured output.
        print(procs.logs())


# -- the API, many requests at a time -----------------------------------------------------
#
# httpx costs a 2-core machine several times the CPU per request that the
# server spends on a job, so the bulk requests go over plain HTTP/1.1
# keep-alive connections (as bench/bench_core.py's lean client does); the
# answers are parsed with jobdock's own models.


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[int, bytes]:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head[:-4].split(b"\r\n")
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return int(lines[0].split()[1]), await reader.readexactly(length)


def requests_all(
    urls: Sequence[str], requests: Sequence[tuple[str, str, bytes]], in_flight: int
) -> list[tuple[int, bytes]]:
    """Send (method, path, JSON body) requests with ``in_flight`` at a time
    on as many connections, spread over the servers at ``urls``; the status
    and body of each answer, in the order of ``requests``."""
    results: list[tuple[int, bytes]] = [(0, b"")] * len(requests)
    todo = iter(range(len(requests)))

    async def connection(url: str) -> None:
        host, port = httpx.URL(url).host, httpx.URL(url).port
        reader, writer = await asyncio.open_connection(host, port)
        try:
            for index in todo:
                method, path, body = requests[index]
                request = (
                    f"{method} {path} HTTP/1.1\r\nhost: {host}:{port}\r\n"
                    f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
                ).encode() + body
                results[index] = await _exchange(reader, writer, request)
        finally:
            writer.close()

    async def main() -> None:
        async with asyncio.TaskGroup() as group:
            for n in range(in_flight):
                group.create_task(connection(urls[n % len(urls)]))

    asyncio.run(main())
    return results


def submit_all(urls: Sequence[str], specs: Sequence[dict[str, Any]], in_flight: int) -> list[str]:
    """Submit ``specs`` with ``in_flight`` requests at a time, spread over
    the servers at ``urls``; the ids in the order of ``specs``."""
    answers = requests_all(
        urls, [("POST", "/v1/jobs", json.dumps(spec).encode()) for spec in specs], in_flight
    )
    refused = [(status, body[:200]) for status, body in answers if status != 201]
    assert not refused, f"{len(refused)} submits refused, e.g. {refused[:3]}"
    return [Job.model_validate_json(body).id for _, body in answers]


def get_all(url: str, ids: Sequence[str], in_flight: int = 8) -> dict[str, Job]:
    """The records (with attempts) of the jobs ``ids``."""
    answers = requests_all([url], [("GET", f"/v1/jobs/{i}", b"") for i in ids], in_flight)
    failed = [(status, body[:200]) for status, body in answers if status != 200]
    assert not failed, f"{len(failed)} reads failed, e.g. {failed[:3]}"
    jobs = [Job.model_validate_json(body) for _, body in answers]
    return {job.id: job for job in jobs}


def listed_ids(client: Client, states: Sequence[JobState] = ()) -> list[str]:
    """The ids of every job the store holds (in ``states``), all pages."""
    ids: list[str] = []
    cursor = None
    while True:
        page = client.list(states=states, limit=1000, cursor=cursor)
        ids += [job.id for job in page.jobs]
        cursor = page.next_cursor
        if cursor is None:
            return ids


def wait_all_terminal(client: Client, timeout: float) -> None:
    eventually(
        lambda: not client.list(states=ACTIVE, limit=1).jobs,
        timeout=timeout,
        what="every job to end",
    )


def when(job_time: Any) -> float:
    assert job_time is not None
    return float(job_time.timestamp())


def check_ran_to_success_once(jobs: dict[str, Job]) -> None:
    """Every job succeeded; exactly one attempt of each ran to its end (the
    last one), every other attempt was lost with its worker."""
    problems = []
    for job in jobs.values():
        ended = [a for a in job.attempts if a.reason is Reason.EXITED]
        others = {a.reason for a in job.attempts if a.reason is not Reason.EXITED}
        if (
            job.state is not JobState.SUCCEEDED
            or job.exit_code != 0
            or len(ended) != 1
            or ended[0] is not job.attempts[-1]
            or ended[0].exit_code != 0
            or others - {Reason.WORKER_LOST}
        ):
            problems.append(
                f"{job.id}: {job.state.value} exit {job.exit_code}, attempts "
                + ", ".join(f"{a.number}:{a.worker}:{a.reason}:{a.exit_code}" for a in job.attempts)
            )
    assert not problems, f"{len(problems)} jobs did not run to success exactly once:\n" + (
        "\n".join(problems[:20])
    )


# -- 1. failover -----------------------------------------------------------------------------


def mixed_specs(rng: random.Random, count: int) -> list[dict[str, Any]]:
    """Jobs of mixed length: most a few tens of ms, some up to a second."""
    specs = []
    for index in range(count):
        draw = rng.random()
        if draw < 0.7:
            seconds = rng.uniform(0.01, 0.1)
        elif draw < 0.92:
            seconds = rng.uniform(0.2, 0.6)
        else:
            seconds = rng.uniform(0.8, 1.0)
        specs.append({"command": ["sh", "-c", f"sleep {seconds:.3f}"], "name": f"mixed-{index}"})
    return specs


def test_jobs_of_killed_workers_are_taken_over_within_a_lease(
    pg_url: str, cluster: Cluster
) -> None:
    rng = random.Random()
    count, kills = 300, 3
    server = cluster.server(pg_url)
    # Few slots per worker, so that jobs queue up and every worker is busy
    # when one is killed.
    live = [cluster.worker(pg_url, concurrency="4") for _ in range(3)]
    cluster.ready()
    killed: list[tuple[str, float]] = []  # worker id, time of the kill

    with Client(server.url) as client:
        ids = submit_all([server.url], mixed_specs(rng, count), in_flight=16)
        for round_ in range(kills):
            # Spread the kills over the run, while jobs are still queued.
            threshold = count * (round_ + 1) // (kills + 2)
            eventually(
                lambda t=threshold: count - len(listed_ids(client, ACTIVE)) >= t,
                timeout=60,
                what=f"{threshold} jobs to end",
            )
            busy = {w.id for w in client.workers() if w.state == "alive" and w.running}
            candidates = [proc for proc in live if proc.id in busy]
            assert candidates, f"no live worker runs a job before kill {round_ + 1}"
            victim = rng.choice(candidates)
            killed.append((str(victim.id), time.time()))
            victim.kill()
            live.remove(victim)
            live.append(cluster.worker(pg_url, concurrency="4").wait_started())

        wait_all_terminal(client, timeout=60)
        stored = listed_ids(client)
        # /v1/workers tells the killed workers (lost) from the others.
        expected = {worker: "lost" for worker, _ in killed} | {w.id: "alive" for w in live}
        eventually(
            lambda: {w.id: w.state for w in client.workers()} == expected,
            what=f"the workers to be listed as {expected}",
        )
    assert len(ids) == len(set(ids)) == count
    assert sorted(stored) == sorted(ids), "jobs were lost or made up"

    jobs = get_all(server.url, ids)
    check_ran_to_success_once(jobs)

    killed_ids = {worker for worker, _ in killed}
    lost_elsewhere = [
        f"{job.id} attempt {a.number} on {a.worker}"
        for job in jobs.values()
        for a in job.attempts
        if a.reason is Reason.WORKER_LOST and a.worker not in killed_ids
    ]
    assert not lost_elsewhere, f"attempts of live workers were taken over: {lost_elsewhere}"

    bound = LEASE + HEARTBEAT + TAKEOVER_MARGIN
    takeovers: list[float] = []
    for worker, killed_at in killed:
        lost = 0
        for job in jobs.values():
            for attempt in job.attempts:
                if attempt.worker != worker:
                    continue
                if attempt.reason is Reason.EXITED:
                    # Its result was stored before the kill, never after.
                    assert when(attempt.finished_at) <= killed_at, (job.id, attempt)
                    continue
                # Running (or claimed) when its worker was killed.
                assert attempt.reason is Reason.WORKER_LOST, (job.id, attempt)
                lost += 1
                after = job.attempts[attempt.number]  # numbers start at 1
                assert after.started_at is not None, (job.id, after)
                takeovers.append(when(after.started_at) - killed_at)
        assert lost, f"killing worker {worker} interrupted no attempt"
    assert max(takeovers) <= bound, (
        f"takeover took up to {max(takeovers):.2f}s (bound {bound}s); "
        f"all: {sorted(round(t, 2) for t in takeovers)}"
    )


# -- 2. a paused worker --------------------------------------------------------------------


def test_a_paused_worker_cannot_record_the_attempt_it_lost(
    pg_url: str, cluster: Cluster, tmp_path: Path
) -> None:
    marker = tmp_path / "marker"
    # Attempt 1 would fail (exit 3), any later one succeeds: the job's
    # result shows which attempt recorded it.
    script = (
        f'echo "start $JOBDOCK_ATTEMPT" >> {marker}; sleep 0.5; '
        f'echo "end $JOBDOCK_ATTEMPT" >> {marker}; '
        '[ "$JOBDOCK_ATTEMPT" = 1 ] && exit 3; exit 0'
    )
    server = cluster.server(pg_url)
    cluster.worker(pg_url)
    cluster.worker(pg_url)
    cluster.ready()

    with Client(server.url) as client:
        job = client.submit({"command": ["sh", "-c", script]})

        def first_attempt_started() -> Job | None:
            found = client.get(job.id)
            return found if found.attempts and found.attempts[0].started_at else None

        first = eventually(first_attempt_started, what="the first attempt to start").attempts[0]
        paused = cluster.by_id(first.worker)
        other = next(proc for proc in cluster.workers if proc is not paused)
        paused.send(signal.SIGSTOP)
        paused_at = time.time()
        try:
            # The job runs out its lease; another worker takes it over and
            # runs it to its end while the first worker is still paused.
            done = client.wait(job.id, timeout=LEASE + HEARTBEAT + TAKEOVER_MARGIN + 10)
            assert done.terminal, f"job still {done.state.value} while its worker is paused"
            assert paused.running, "the paused worker exited"
        finally:
            paused.send(signal.SIGCONT)
        resumed_at = time.time()
        assert resumed_at - paused_at > LEASE

        # The resumed worker finds that it lost the attempt (on its first
        # heartbeat, or when it tries to store the result of the process that
        # ended meanwhile) and records nothing.
        eventually(lambda: job.id in paused.log(), what="the resumed worker to give the attempt up")
        eventually(
            lambda: any(
                w.id == paused.id and w.state == "alive" and when(w.heartbeat_at) > resumed_at
                for w in client.workers()
            ),
            what="the resumed worker to beat again",
        )
        final = client.get(job.id)

    assert final == done, "the paused worker changed the job's record after it resumed"
    assert final.state is JobState.SUCCEEDED
    assert (final.exit_code, final.attempt) == (0, 2)
    old, new = final.attempts
    assert (old.number, old.worker, old.reason) == (1, paused.id, Reason.WORKER_LOST)
    assert (old.exit_code, old.signal) == (None, None)
    assert (new.number, new.worker, new.reason, new.exit_code) == (2, other.id, Reason.EXITED, 0)
    # The first attempt's process did run to its end (while its worker was
    # paused): there was a result, and it was refused.
    assert marker.read_text().splitlines() == ["start 1", "end 1", "start 2", "end 2"]


# -- 3. PostgreSQL restarted -------------------------------------------------------------


def test_the_service_recovers_from_a_postgresql_restart(
    own_postgres: PostgresServer, cluster: Cluster, tmp_path: Path
) -> None:
    db = own_postgres.url(own_postgres.create_database())
    server = cluster.server(db)
    cluster.worker(db)
    cluster.worker(db)
    cluster.ready()
    rng = random.Random()

    ran = tmp_path / "ran"

    def specs(count: int) -> list[dict[str, Any]]:
        script = 'echo "$JOBDOCK_JOB_ID" >> {}; sleep {:.2f}'
        return [
            {"command": ["sh", "-c", script.format(ran, rng.uniform(0.05, 2.5))]}
            for _ in range(count)
        ]

    with Client(server.url) as client:
        before = submit_all([server.url], specs(40), in_flight=8)
        eventually(
            lambda: any(w.running for w in client.workers()), what="jobs to run on the workers"
        )

        own_postgres.kill()
        # While the database is away, the API says so instead of hanging.
        with pytest.raises(ApiError) as refused:
            client.submit({"command": ["true"]})
        assert refused.value.code == "store_unavailable"
        time.sleep(3)  # the outage: leases expire meanwhile
        own_postgres.start()

        # No operator action: the API answers again by itself, and takes jobs.
        eventually(lambda: health(server.url), timeout=30, what="the API to be healthy again")
        after = submit_all([server.url], specs(40), in_flight=8)
        wait_all_terminal(client, timeout=60)
        stored = listed_ids(client)
    ids = before + after
    assert sorted(stored) == sorted(ids), "jobs were lost or made up"
    check_ran_to_success_once(get_all(server.url, ids))
    # The workers lived through the outage: no job was taken from them and
    # run again (their leases expired meanwhile, but so did everyone's).
    assert sorted(ran.read_text().split()) == sorted(ids)


def test_a_database_and_workers_that_hang_past_a_lease_lose_no_job(
    own_postgres: PostgresServer, cluster: Cluster, tmp_path: Path
) -> None:
    """A stalled database (calls hang, then all answer at once) is an outage
    too: the reaper's late answers must not take the workers' jobs."""
    db = own_postgres.url(own_postgres.create_database())
    server = cluster.server(db)
    workers = [cluster.worker(db), cluster.worker(db)]
    cluster.ready()
    ran = tmp_path / "ran"
    script = f'echo "$JOBDOCK_JOB_ID" >> {ran}; sleep 8'
    with Client(server.url) as client:
        ids = submit_all([server.url], [{"command": ["sh", "-c", script]}] * 6, in_flight=6)
        eventually(
            lambda: sum(len(w.running) for w in client.workers()) == 6,
            timeout=30,
            what="all six jobs to run on the workers",
        )
        own_postgres.pause()
        for worker in workers:
            worker.send(signal.SIGSTOP)
        try:
            time.sleep(LEASE + 1.5)  # the stall: every lease expires meanwhile
            own_postgres.resume()
            # The workers renew a little after the reaper's late answers
            # (their own calls come back later, a reconnect's back-off).
            time.sleep(LEASE / 2)
        finally:
            own_postgres.resume()
            for worker in workers:
                worker.send(signal.SIGCONT)
        wait_all_terminal(client, timeout=60)
    check_ran_to_success_once(get_all(server.url, ids))
    assert sorted(ran.read_text().split()) == sorted(ids), "a job was run again"


def health(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


# -- 4. many submits at once ---------------------------------------------------------------


def test_concurrent_submits_through_two_servers_run_each_job_once(
    pg_url: str, cluster: Cluster, tmp_path: Path
) -> None:
    ran = tmp_path / "ran"
    ran.mkdir()
    log = ran / "ids"
    count = 1000
    # One API server without a worker, one with its embedded worker, and two
    # jobdock workers: three claimers racing for every job.
    servers = [cluster.server(pg_url), cluster.server(pg_url, worker=True)]
    workers = [cluster.worker(pg_url), cluster.worker(pg_url)]
    cluster.ready()
    spec = {"command": ["sh", "-c", f'echo "$JOBDOCK_JOB_ID $JOBDOCK_ATTEMPT" >> {log}']}

    ids = submit_all([s.url for s in servers], [spec] * count, in_flight=24)
    assert len(set(ids)) == count
    with Client(servers[0].url) as client:
        wait_all_terminal(client, timeout=90)
        assert sorted(listed_ids(client)) == sorted(ids)

    jobs = get_all(servers[1].url, ids)
    check_ran_to_success_once(jobs)
    single = [job.id for job in jobs.values() if len(job.attempts) != 1]
    assert not single, f"jobs with more than one attempt: {single[:20]}"
    lines = log.read_text().splitlines()
    assert len(lines) == count, f"{len(lines)} runs for {count} jobs"
    assert sorted(lines) == sorted(f"{job_id} 1" for job_id in ids)
    # The claims did race: more than one claimer ran jobs.
    ran_on = {job.attempts[0].worker for job in jobs.values()}
    assert len(ran_on) > 1, f"every job ran on {ran_on}"
    assert {w.id for w in workers} & ran_on


# -- 5. labels -----------------------------------------------------------------------------


def test_a_job_that_requires_a_label_runs_only_on_a_worker_with_it(
    pg_url: str, cluster: Cluster
) -> None:
    server = cluster.server(pg_url)
    plain = cluster.worker(pg_url, labels={"gpu": "no"})
    cluster.ready()

    with Client(server.url) as client:
        gpu_job = client.submit({"command": ["sleep", "60"], "requires": {"gpu": "yes"}})
        # A job submitted after it runs at once: the worker without the label
        # claimed the oldest job it may run, and left the older one queued.
        later = client.wait(client.submit({"command": ["true"]}).id, timeout=30)
        assert later.state is JobState.SUCCEEDED
        assert later.attempts[0].worker == plain.id
        assert client.get(gpu_job.id).state is JobState.QUEUED

        gpu = cluster.worker(pg_url, labels={"gpu": "yes"}).wait_started()

        def running() -> Job | None:
            job = client.get(gpu_job.id)
            return job if job.attempts and job.attempts[0].started_at else None

        job = eventually(running, what="the job to start on the gpu worker")
        assert job.state is JobState.RUNNING
        assert [a.worker for a in job.attempts] == [gpu.id]

        def listed() -> dict[str, Any] | None:
            found = {w.id: w for w in client.workers()}
            ready = {plain.id, gpu.id} <= found.keys() and all(
                found[w].state == "alive"
                and when(found[w].heartbeat_at) > when(found[w].started_at)
                for w in (plain.id, gpu.id)
            )
            return found if ready else None

        found = eventually(listed, what="both workers to be listed alive, with a heartbeat")
        assert found[gpu.id].labels["gpu"] == "yes"
        assert found[plain.id].labels["gpu"] == "no"
        assert found[gpu.id].running == [gpu_job.id]
        assert found[plain.id].running == []

        # More of both kinds, while both workers are up.
        short_gpu = submit_all(
            [server.url], [{"command": ["true"], "requires": {"gpu": "yes"}}] * 10, in_flight=4
        )
        anywhere = submit_all([server.url], [{"command": ["true"]}] * 10, in_flight=4)
        for job_id in short_gpu + anywhere:
            assert client.wait(job_id, timeout=30).state is JobState.SUCCEEDED
        records = get_all(server.url, short_gpu)
        assert {r.attempts[0].worker for r in records.values()} == {gpu.id}

        client.cancel(gpu_job.id)
        cancelled = client.wait(gpu_job.id, timeout=30)
    assert cancelled.state is JobState.CANCELLED
    assert [a.worker for a in cancelled.attempts] == [gpu.id]
