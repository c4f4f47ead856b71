"""Agents under trouble, each a real process on loopback: several agents on
one server with agents killed (SIGKILL) mid-run, the server restarted under
them, PostgreSQL-backed servers, and an agent cut off from its server by a
proxy that drops its connections (docs/agents.md, "Network trouble").

Every job must run to success exactly once: one attempt ran to its end,
every other one was lost with its agent."""

from __future__ import annotations

import random
import signal
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from agents import Site, ran_once, site_at, site_of
from cutoff import CutOff
from jobdock import JobState, Reason
from support import FAST_SETTINGS, ServerProcess, eventually

LEASE = float(FAST_SETTINGS["JOBDOCK_LEASE_SECONDS"])
HEARTBEAT = float(FAST_SETTINGS["JOBDOCK_HEARTBEAT_SECONDS"])


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    yield from site_of(tmp_path)


def mixed(rng: random.Random, count: int) -> list[dict[str, Any]]:
    """Jobs of mixed length: most a few tens of ms, some up to a second."""
    specs = []
    for n in range(count):
        draw = rng.random()
        seconds = rng.uniform(0.01, 0.1) if draw < 0.7 else rng.uniform(0.2, 1.0)
        specs.append({"command": ["sh", "-c", f"sleep {seconds:.3f}; echo {n}"]})
    return specs


def check_once(site: Site, jobs: dict[str, Any], specs: list[dict[str, Any]]) -> None:
    wrong = [
        f"{job.id}: {job.state.value} " + ",".join(f"{a.worker}:{a.reason}" for a in job.attempts)
        for job in jobs.values()
        if not ran_once(job)
    ]
    assert not wrong, f"{len(wrong)} jobs did not run exactly once: {wrong[:10]}"


def _succeeded(site: Site, ids: list[str]) -> int:
    return sum(site.job(i).state is JobState.SUCCEEDED for i in ids)


def _reached(site: Site, ids: list[str], target: int) -> bool:
    return _succeeded(site, ids) >= target


def test_jobs_of_killed_agents_are_taken_over_and_each_runs_once(site: Site) -> None:
    rng = random.Random(18)
    agents = [site.agent(args=["--concurrency", "8"]) for _ in range(3)]
    for agent in agents:
        agent.wait_started()
    specs = mixed(rng, 150)
    ids = site.submit_many(specs)
    batch = ids
    for round in range(2):
        if round:
            batch = site.submit_many(mixed(rng, 60))
            ids += batch
        # A random agent dies mid-run and a new one takes its place.
        eventually(partial(_reached, site, batch[:20], 5), 30, "jobs of the batch to finish")
        victim = rng.choice([a for a in site.agents if a.running])
        victim.kill()
        site.agent(args=["--concurrency", "8"]).wait_started()
    jobs = site.all_finished(ids, timeout=120)
    check_once(site, jobs, specs)
    lost = [a for job in jobs.values() for a in job.attempts if a.reason is Reason.WORKER_LOST]
    assert lost, "a killed agent had jobs running"
    for job in jobs.values():
        n = job.spec.command[-1].rsplit(" ", 1)[-1]
        assert site.output(job.id) == f"{n}\n".encode()


def test_the_server_restarted_under_running_agents_records_each_job_once(
    tmp_path: Path,
) -> None:
    # A lease longer than the restart: the agents renew theirs once it is back.
    with site_at(tmp_path, lease_seconds="15", heartbeat_seconds="0.5") as site:
        for _ in range(2):
            site.agent(args=["--concurrency", "16"]).wait_started()
        ids = site.submit_many([{"command": ["sh", "-c", f"sleep 2; echo {n}"]} for n in range(20)])
        eventually(
            lambda: all(site.job(i).state is JobState.RUNNING for i in ids), 30, "jobs to run"
        )
        site.server.stop(signal.SIGTERM)
        site.server.launch().wait_healthy()
        jobs = site.all_finished(ids, timeout=60)
        for n, job_id in enumerate(ids):
            job = jobs[job_id]
            assert job.state is JobState.SUCCEEDED, job
            assert [a.reason for a in job.attempts] == [Reason.EXITED]
            assert site.output(job_id) == f"{n}\n".encode()
        assert all(agent.running for agent in site.agents)


def test_agents_on_two_postgresql_servers_run_each_job_once(pg_url: str, tmp_path: Path) -> None:
    with site_at(tmp_path, db=pg_url) as site:
        second = ServerProcess(
            tmp_path / "server-2", tokens="true", concurrency="0", db=pg_url
        ).start()
        try:
            site.agent(args=["--concurrency", "8"]).wait_started()
            site.agent(url=second.url, args=["--concurrency", "8"]).wait_started()
            ids = site.submit_many(mixed(random.Random(5), 120))
            jobs = site.all_finished(ids, timeout=120)
            check_once(site, jobs, [])
            workers = {a.worker for job in jobs.values() for a in job.attempts}
            assert {agent.id for agent in site.agents} <= workers
        finally:
            for agent in site.agents:
                agent.stop()
            second.stop()


# -- cut off by a proxy -------------------------------------------------------------------


def test_an_agent_cut_off_for_less_than_a_lease_loses_no_byte(tmp_path: Path) -> None:
    with (
        site_at(tmp_path, lease_seconds="8", heartbeat_seconds="0.5") as site,
        CutOff(site.server.port) as proxy,
    ):
        agent = site.agent(url=proxy.url).wait_started()
        script = "for i in $(seq 1 400); do echo line-$i; sleep 0.01; done"
        job_id = site.submit({"command": ["sh", "-c", script]})
        eventually(lambda: site.output(job_id).startswith(b"line-1\n"), 20, "output")
        proxy.cut()
        time.sleep(2)  # the cut's length is the test's point, not a wait
        proxy.restore()
        job = site.finished(job_id, timeout=30)
        assert job.state is JobState.SUCCEEDED
        assert [a.reason for a in job.attempts] == [Reason.EXITED]
        expected = "".join(f"line-{i}\n" for i in range(1, 401)).encode()
        assert site.output(job_id) == expected
        assert "cannot be reached" in agent.log()


def test_an_agent_cut_off_past_its_lease_has_its_late_result_refused(tmp_path: Path) -> None:
    with site_at(tmp_path) as site, CutOff(site.server.port) as proxy:
        cut_agent = site.agent(url=proxy.url).wait_started()
        job_id = site.submit({"command": ["sh", "-c", "sleep 3; echo $JOBDOCK_ATTEMPT"]})
        # Started by the agent (it reports the pid), not only claimed: a cut
        # between the claim and its answer would leave the agent unaware.
        eventually(lambda: _started_by_agent(site, job_id), 20, "the agent to start the job")
        proxy.cut()
        # The job is requeued once the lease ends; another agent runs it.
        eventually(
            lambda: site.job(job_id).state is JobState.QUEUED, LEASE + HEARTBEAT + 8, "requeue"
        )
        other = site.agent().wait_started()
        job = site.finished(job_id, timeout=30)
        proxy.restore()
        assert job.state is JobState.SUCCEEDED
        assert [a.reason for a in job.attempts] == [Reason.WORKER_LOST, Reason.EXITED]
        assert job.attempts[-1].worker == other.id
        assert site.output(job_id) == b"2\n"
        # Back, the cut-off agent learns its attempt is lost; the record stands.
        eventually(lambda: "lost its lease" in cut_agent.log(), 20, "the agent to learn")
        assert site.job(job_id).attempts[-1].worker == other.id


def _started_by_agent(site: Site, job_id: str) -> bool:
    attempts = site.job(job_id).attempts
    return bool(attempts) and attempts[-1].pid is not None
