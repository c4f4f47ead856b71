"""The pools autoscaler end to end: a real ``jobdock serve`` (tokens on, its
embedded worker running nothing) with a ``command`` pool whose scripts
(tests/machine_script.py) start real ``jobdock agent`` processes on this
host, each with the agent token the server made for that machine alone
(docs/machines.md#pools-and-the-autoscaler). Short idle and boot timeouts
keep the tests quick.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agents import Site, site_at
from jobdock import JobState, Reason
from pools import Pool
from support import ServerProcess, eventually

SCRIPT = Path(__file__).parent.parent / "machine_script.py"
GPU = {"pool": "gpu"}
#: A job whose first attempt runs for a minute and whose next one ends at once.
SLEEPS_ONCE = '[ "$JOBDOCK_ATTEMPT" -gt 1 ] || sleep 60'


def pool_config(directory: Path, *, start: str = "start", **fields: Any) -> str:
    """A config file's text: one command pool ``gpu`` run by machine_script.py."""
    settings = {"max": 2, "idle_timeout": 1.5, "boot_timeout": 30, **fields}
    script = [sys.executable, str(SCRIPT)]
    lines = [
        "[[pools]]",
        'name = "gpu"',
        'provider = "command"',
        'labels = { pool = "gpu" }',
        *(f"{key} = {value}" for key, value in settings.items()),
        "[pools.command]",
        f"start = {[*script, start, str(directory)]!r}".replace("'", '"'),
        f"stop = {[*script, 'stop', str(directory)]!r}".replace("'", '"'),
        f"interruptions = {[*script, 'interruptions', str(directory)]!r}".replace("'", '"'),
        "timeout = 30",
    ]
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def pool_site(base: Path, db: str | None = None, **fields: Any) -> Iterator[tuple[Site, Pool]]:
    directory = base / "machines"
    directory.mkdir(parents=True)
    config = base / "jobdock.toml"
    config.write_text(pool_config(directory, **fields))
    db = db or f"sqlite:///{base}/jobs.db"
    pool = Pool(directory, db)
    try:
        with site_at(base, db=db, config=str(config)) as site:
            yield site, pool
    finally:
        pool.kill_all()


def test_a_job_for_a_pool_starts_a_machine_that_runs_it_then_stops_and_stays_at_zero(
    tmp_path: Path,
) -> None:
    with pool_site(tmp_path) as (site, pool):
        job_id = site.submit({"command": ["sh", "-c", "echo on-a-machine"], "requires": GPU})

        job = site.finished(job_id, timeout=60)
        [machine] = pool.machines()
        assert job.state is JobState.SUCCEEDED, site.logs()
        assert site.output(job_id) == b"on-a-machine\n"
        assert job.attempts[-1].worker is not None
        assert job.attempts[-1].worker.startswith(f"agent-{machine.token_id}-")

        stopped = eventually(
            lambda: (m := pool.machines(since=0)[0]).state == "stopped" and m, 30, "idle stop"
        )
        assert (stopped.jobs_done, stopped.error) == (1, None)
        assert stopped.booted_at is not None and stopped.stopped_at is not None
        assert stopped.token_id is not None and pool.token_revoked(stopped.token_id)
        assert pool.starts() == [machine.provider_id]
        assert pool.events()[1:] == [f"stop {machine.provider_id}"]
        # Scale to zero stays at zero: an observation window (not a wait for
        # a condition) in which nothing may happen; the autoscaler runs
        # about once a second, so 3 s is three rounds or more.
        time.sleep(3)
        assert len(pool.events()) == 2
        assert pool.machines() == []


def test_max_holds_with_30_jobs_waiting(tmp_path: Path) -> None:
    with pool_site(tmp_path, max=2) as (site, pool):
        ids = [site.submit({"command": ["sleep", "0.1"], "requires": GPU}) for _ in range(30)]

        jobs = site.all_finished(ids, timeout=120)

        assert {job.state for job in jobs.values()} == {JobState.SUCCEEDED}, site.logs()
        assert pool.most_live() <= 2
        assert len(pool.starts()) == 2


def test_max_jobs_1_gives_each_job_a_fresh_machine(tmp_path: Path) -> None:
    with pool_site(tmp_path, max=3, max_jobs=1) as (site, pool):
        ids = [site.submit({"command": ["true"], "requires": GPU}) for _ in range(3)]

        jobs = site.all_finished(ids, timeout=90)

        assert {job.state for job in jobs.values()} == {JobState.SUCCEEDED}, site.logs()
        workers = {job.attempts[-1].worker for job in jobs.values()}
        assert len(workers) == 3
        eventually(lambda: pool.machines() == [], 30, "every machine to stop")
        ended = pool.machines(since=0)
        assert len(ended) == 3
        assert {(m.state, m.jobs_done) for m in ended} == {("stopped", 1)}


def test_a_machine_killed_mid_job_is_recorded_failed_and_replaced(tmp_path: Path) -> None:
    with pool_site(tmp_path, max=1) as (site, pool):
        job_id = site.submit({"command": ["sh", "-c", SLEEPS_ONCE], "requires": GPU})
        eventually(lambda: site.job(job_id).state is JobState.RUNNING, 60, "the job to run")
        [first] = pool.machines()
        assert first.provider_id is not None

        os.kill(pool.agent_pid(first.provider_id), signal.SIGKILL)
        job = site.finished(job_id, timeout=60)

        assert job.state is JobState.SUCCEEDED, site.logs()
        assert [a.reason for a in job.attempts] == [Reason.WORKER_LOST, Reason.EXITED]
        failed = [m for m in pool.machines(since=0) if m.id == first.id]
        assert failed[0].state == "failed"
        assert failed[0].error is not None and "lost" in failed[0].error
        assert len(pool.starts()) == 2


def test_an_interrupted_machine_hands_its_job_back_without_spending_a_retry(
    tmp_path: Path,
) -> None:
    with pool_site(tmp_path, max=1) as (site, pool):
        job_id = site.submit({"command": ["sh", "-c", SLEEPS_ONCE], "requires": GPU})
        eventually(lambda: site.job(job_id).state is JobState.RUNNING, 60, "the job to run")
        [first] = pool.machines()

        (pool.directory / "interrupt").write_text(f"{first.provider_id}\n")
        job = site.finished(job_id, timeout=60)

        assert job.state is JobState.SUCCEEDED, site.logs()
        assert [a.reason for a in job.attempts] == [Reason.INTERRUPTED, Reason.EXITED]
        # The job may run again elsewhere before the stop script has ended.
        handed = eventually(
            lambda: next(
                (m for m in pool.machines(since=0) if m.id == first.id and m.state == "stopped"),
                None,
            ),
            60,
            "the interrupted machine to be stopped",
        )
        assert handed.error is not None and "1 job(s) handed back" in handed.error


def test_a_machine_that_never_registers_is_stopped_and_the_pool_backs_off(
    tmp_path: Path,
) -> None:
    with pool_site(tmp_path, start="start-dead", boot_timeout=1) as (site, pool):
        site.submit({"command": ["true"], "requires": GPU})

        eventually(lambda: len(pool.machines(since=0)) >= 3, 60, "three tries")
        tries = sorted(pool.machines(since=0), key=lambda m: m.requested_at)
        [state] = pool.pool_states()

        first, second, third = tries[:3]
        assert (first.state, second.state) == ("failed", "failed")
        assert first.error == "its agent did not register within 1 s"
        assert first.stopped_at is not None and second.stopped_at is not None
        # 2 s after the first failure, 4 s after the second: backed off, not looping.
        assert second.requested_at - first.stopped_at >= 2.0
        assert third.requested_at - second.stopped_at >= 4.0
        assert state.failures >= 2 and state.last_error is not None
        assert "did not register" in state.last_error
        assert len([e for e in pool.events() if e.startswith("stop ")]) >= 2


def test_two_servers_on_one_postgresql_start_only_the_machines_needed(
    tmp_path: Path, pg_url: str
) -> None:
    with pool_site(tmp_path, db=pg_url, max=4) as (site, pool):
        other = ServerProcess(
            tmp_path / "server-2",
            tokens="true",
            concurrency="0",
            db=pg_url,
            config=str(tmp_path / "jobdock.toml"),
        ).start()
        try:
            ids = [site.submit({"command": ["sleep", "1"], "requires": GPU}) for _ in range(2)]
            jobs = site.all_finished(ids, timeout=90)
        finally:
            other.stop()

        assert {job.state for job in jobs.values()} == {JobState.SUCCEEDED}, site.logs()
        machines = pool.machines(since=0)
        assert len(machines) == 2
        assert len(pool.starts()) == 2
        assert len({m.server for m in machines}) == 1


def test_min_machines_are_kept_warm_and_take_jobs_at_once(tmp_path: Path) -> None:
    with pool_site(tmp_path, min=1, idle_timeout=1) as (site, pool):
        [warm] = eventually(
            lambda: [m for m in pool.machines() if m.state == "ready"], 60, "a warm machine"
        )

        job = site.finished(site.submit({"command": ["true"], "requires": GPU}), timeout=30)
        # Past its idle_timeout, the one machine of min stays: an observation
        # window (3 rounds or more) in which it may not be stopped.
        time.sleep(3)

        assert job.state is JobState.SUCCEEDED, site.logs()
        assert job.attempts[-1].worker is not None
        assert job.attempts[-1].worker.startswith(f"agent-{warm.token_id}-")
        assert [(m.id, m.state) for m in pool.machines()] == [(warm.id, "ready")]
        assert pool.starts() == [warm.provider_id]
