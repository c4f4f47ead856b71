"""``jobdock agent``: a worker that reaches a real ``jobdock serve`` over HTTP
on loopback with an agent token (docs/agents.md). The server has tokens on
and its embedded worker has concurrency 0, so every job here ran on an
agent; leases are FAST_SETTINGS' (lease 2 s, heartbeat 0.5 s)."""

from __future__ import annotations

import hashlib
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import engines
from agents import Site, ran_once, site_of
from jobdock import JobState, Reason, Stream
from jobdock.agent_wire import CHUNKS_TYPE, encode_chunks
from jobdock.models.records import LogChunk
from jobdock.vault import generate_key
from support import FAST_SETTINGS, eventually, jobdock

LEASE = float(FAST_SETTINGS["JOBDOCK_LEASE_SECONDS"])
HEARTBEAT = float(FAST_SETTINGS["JOBDOCK_HEARTBEAT_SECONDS"])
#: Allowance for a 2-core machine busy with the server, agents and jobs.
MARGIN = 3.0


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    yield from site_of(tmp_path, secret_key=generate_key())


def test_an_agent_runs_jobs_and_is_listed_beside_other_workers(site: Site) -> None:
    agent = site.agent(labels={"zone": "a"}, args=["--concurrency", "4"]).wait_started()
    ids = [
        site.submit({"command": ["sh", "-c", f"echo out-{n}; echo err-{n} >&2; exit {n % 2}"]})
        for n in range(6)
    ]
    for n, job_id in enumerate(ids):
        job = site.finished(job_id)
        assert job.state is (JobState.FAILED if n % 2 else JobState.SUCCEEDED)
        assert job.exit_code == n % 2
        assert job.attempts[-1].worker == agent.id
        assert site.output(job_id) == f"out-{n}\n".encode()
        assert site.output(job_id, "stderr") == f"err-{n}\n".encode()
    listed = site.http.get("/v1/workers").json()["workers"]
    mine = [w for w in listed if w["id"] == agent.id]
    assert mine and mine[0]["labels"]["zone"] == "a" and mine[0]["concurrency"] == 4
    assert mine[0]["state"] == "alive"
    assert agent.id is not None and agent.id.startswith("agent-")


def test_a_job_that_requires_a_label_runs_only_on_the_agent_that_offers_it(site: Site) -> None:
    plain = site.agent().wait_started()
    gpu = site.agent(labels={"gpu": "1"}).wait_started()
    ids = [site.submit({"command": ["true"], "requires": {"gpu": "1"}}) for _ in range(5)]
    for job_id in ids:
        job = site.finished(job_id)
        assert job.state is JobState.SUCCEEDED
        assert job.attempts[-1].worker == gpu.id != plain.id


def test_a_claim_is_a_long_poll_answered_as_soon_as_a_job_is_queued(site: Site) -> None:
    site.agent().wait_started()
    # Past the first long poll: the agent now waits on the server.
    time.sleep(0.5)
    started = time.monotonic()
    job = site.finished(site.submit({"command": ["true"]}))
    assert job.state is JobState.SUCCEEDED
    # Far below the poll interval of a worker that polls (and the 30 s wait).
    assert time.monotonic() - started < 2.0


def test_secrets_reach_an_agent_job_and_are_masked_in_its_output(site: Site) -> None:
    site.agent().wait_started()
    assert site.http.put("/v1/secrets/pw", content=b"s3cret-value").status_code in (200, 204)
    job_id = site.submit(
        {
            "command": ["sh", "-c", 'test "$PW" = s3cret-value && echo "got $PW"'],
            "secrets": [{"name": "pw", "env": "PW"}],
        }
    )
    job = site.finished(job_id)
    assert job.state is JobState.SUCCEEDED, job.message
    assert b"s3cret-value" not in site.output(job_id)


def test_an_agents_claims_secret_reads_and_ends_are_in_the_audit_log(site: Site) -> None:
    site.agent().wait_started()
    assert site.http.put("/v1/secrets/pw", content=b"s3cret-value").status_code in (200, 204)
    job_id = site.submit({"command": ["true"], "secrets": [{"name": "pw", "env": "PW"}]})
    assert site.finished(job_id).state is JobState.SUCCEEDED
    admin = jobdock("tokens", "create", "root", "--admin", "--home", str(site.server.home))
    headers = {"authorization": f"Bearer {admin.stdout.strip()}"}

    entries = httpx.get(f"{site.server.url}/v1/audit", headers=headers).json()["entries"]

    done = {e["action"]: e["actor"] for e in entries if e["target"] == f"{job_id}.1"}
    assert set(done) == {"agent.claim", "agent.secrets", "agent.finish"}, entries
    assert all(actor.startswith("agent:") for actor in done.values()), done


def test_stop_and_kill_reach_a_job_on_an_agent(site: Site) -> None:
    site.agent().wait_started()
    job_id = site.submit({"command": ["sleep", "60"]})
    eventually(lambda: site.job(job_id).state is JobState.RUNNING, 20, "the job to start")
    assert site.http.post(f"/v1/jobs/{job_id}/cancel").status_code in (200, 202)
    job = site.finished(job_id, timeout=10)
    assert job.state is JobState.CANCELLED and job.reason is Reason.CANCELLED


def test_a_timeout_and_an_output_limit_apply_on_an_agent(site: Site) -> None:
    site.agent().wait_started()
    timed = site.submit({"command": ["sleep", "30"], "timeout": 0.5})
    limited = site.submit(
        {
            "command": ["sh", "-c", "head -c 100000 /dev/zero; sleep 30"],
            "output_limit": 1000,
            "on_output_limit": "stop",
        }
    )
    job = site.finished(timed, timeout=15)
    assert job.reason is Reason.TIMEOUT
    job = site.finished(limited, timeout=15)
    assert job.reason is Reason.OUTPUT_LIMIT
    assert len(site.output(limited)) == 1000


def test_output_is_streamed_while_the_job_runs_and_arrives_byte_exact(site: Site) -> None:
    site.agent().wait_started()
    slow = site.submit({"command": ["sh", "-c", "echo first; sleep 30"]})
    eventually(lambda: site.output(slow) == b"first\n", 20, "the first line while it runs")
    assert site.job(slow).state is JobState.RUNNING
    site.http.post(f"/v1/jobs/{slow}/cancel")
    big = site.submit({"command": ["sh", "-c", "seq 1 2000000"]})
    job = site.finished(big, timeout=60)
    assert job.state is JobState.SUCCEEDED
    expected = "".join(f"{n}\n" for n in range(1, 2000001)).encode()
    got = site.output(big)
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(expected).hexdigest()
    assert job.attempts[-1].stdout_bytes == len(expected)


def test_sigterm_drains_then_hands_jobs_back_without_counting_them(site: Site) -> None:
    agent = site.agent().wait_started()
    short = site.submit({"command": ["sleep", "0.3"]})
    long = site.submit({"command": ["sleep", "60"]})
    eventually(
        lambda: all(site.job(j).state is JobState.RUNNING for j in (short, long)),
        20,
        "both jobs to run",
    )
    assert agent.stop(signal.SIGTERM) == 0
    assert site.job(short).state is JobState.SUCCEEDED
    given_back = site.job(long)
    assert given_back.state is JobState.QUEUED
    assert given_back.attempts[-1].reason is Reason.WORKER_LOST
    # Handed back, not lost: another agent runs it from the start.
    other = site.agent().wait_started()
    eventually(lambda: site.job(long).attempts[-1].worker == other.id, 20, "the next attempt")


def test_a_killed_agents_jobs_are_taken_over_within_lease_and_heartbeat(site: Site) -> None:
    doomed = site.agent().wait_started()
    job_id = site.submit({"command": ["sh", "-c", "sleep 1; echo done"]})
    eventually(lambda: site.job(job_id).state is JobState.RUNNING, 20, "the job to start")
    doomed.kill()
    killed_at = time.monotonic()
    survivor = site.agent().wait_started()
    job = site.finished(job_id, timeout=LEASE + HEARTBEAT + MARGIN + 10)
    assert ran_once(job)
    assert job.attempts[-1].worker == survivor.id
    assert [a.reason for a in job.attempts] == [Reason.WORKER_LOST, Reason.EXITED]
    assert time.monotonic() - killed_at < LEASE + HEARTBEAT + MARGIN + 3
    assert site.output(job_id) == b"done\n"


def test_revoking_an_agent_token_loses_its_attempts_at_once(site: Site) -> None:
    agent = site.agent().wait_started()
    job_id = site.submit({"command": ["sleep", "60"]})
    eventually(lambda: site.job(job_id).state is JobState.RUNNING, 20, "the job to start")
    token_id = site.agent_token.split("_")[1]
    done = jobdock("tokens", "revoke", token_id, "--home", str(site.server.home))
    assert done.returncode == 0, done.stderr
    job = site.job(job_id)
    assert job.state is JobState.QUEUED
    assert job.attempts[-1].reason is Reason.WORKER_LOST
    # The agent learns at its next heartbeat, kills the job's process and
    # stops, saying why in one line.
    assert agent.proc is not None
    assert agent.proc.wait(20) == 1
    assert "lost its lease" in agent.log()
    assert "no longer takes this agent's token" in agent.log()


def test_an_agent_with_a_user_token_stops_with_one_line(site: Site, tmp_path: Path) -> None:
    done = jobdock(
        "agent", "--server", site.server.url, "--token", site.user_token, "--home", str(tmp_path)
    )
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "agent token" in done.stderr, done.stderr


def test_the_agent_refuses_a_bad_server_url_in_one_line(tmp_path: Path) -> None:
    done = jobdock("agent", "--server", "ftp://example", "--home", str(tmp_path))
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "--server" in done.stderr


# -- token walls --------------------------------------------------------------------------


def _operations(site: Site) -> list[tuple[str, str]]:
    document = httpx.get(f"{site.server.url}/openapi.json").json()
    found = []
    for path, methods in document["paths"].items():
        for method in methods:
            concrete = path.replace("{", "x").replace("}", "")
            found.append((method.upper(), concrete))
    return found


def test_an_agent_token_is_refused_by_every_route_but_the_agent_routes(site: Site) -> None:
    agent_headers = {"authorization": f"Bearer {site.agent_token}"}
    public = {"/healthz", "/health/live", "/health/ready", "/", "/openapi.json"}
    checked = 0
    for method, path in _operations(site):
        if path.startswith("/v1/agent/") or path in public:
            continue
        answer = httpx.request(method, f"{site.server.url}{path}", headers=agent_headers)
        assert answer.status_code == 403, (method, path, answer.status_code, answer.text)
        assert answer.json()["error"]["code"] == "forbidden"
        checked += 1
    assert checked > 30


def test_a_user_token_is_refused_by_every_agent_route(site: Site) -> None:
    admin = jobdock("tokens", "create", "root", "--admin", "--home", str(site.server.home))
    assert admin.returncode == 0, admin.stderr
    agent_routes = [(m, p) for m, p in _operations(site) if p.startswith("/v1/agent/")]
    assert len(agent_routes) >= 10
    for token in (site.user_token, admin.stdout.strip()):
        for method, path in agent_routes:
            answer = httpx.request(
                method, f"{site.server.url}{path}", headers={"authorization": f"Bearer {token}"}
            )
            assert answer.status_code == 403, (method, path, answer.status_code, answer.text)
    for method, path in agent_routes:
        assert httpx.request(method, f"{site.server.url}{path}").status_code == 401


def test_an_agent_learns_no_uid_of_an_owner_whose_attempt_it_does_not_hold(
    site: Site,
) -> None:
    job_id = site.submit({"command": ["true"]})
    headers = {"authorization": f"Bearer {site.agent_token}"}

    answer = httpx.post(
        f"{site.server.url}/v1/agent/uids",
        json={"owner": "mallory", "job_id": job_id, "attempt": 1},
        headers=headers,
    )

    assert answer.status_code == 409, answer.text
    assert answer.json()["error"]["code"] == "fenced_off"


def test_an_agent_cannot_act_as_another_agents_worker(site: Site) -> None:
    other = jobdock("tokens", "create", "box2", "--agent", "--home", str(site.server.home))
    assert other.returncode == 0, other.stderr
    agent = site.agent().wait_started()
    job_id = site.submit({"command": ["sleep", "60"]})
    eventually(lambda: site.job(job_id).state is JobState.RUNNING, 20, "the job to start")
    attempt = site.job(job_id).attempt
    intruder = {"authorization": f"Bearer {other.stdout.strip()}"}
    url = site.server.url
    beat = httpx.post(
        f"{url}/v1/agent/heartbeat",
        json={"worker_id": agent.id, "running": {job_id: attempt}},
        headers=intruder,
    )
    assert beat.status_code == 403
    secrets = httpx.get(f"{url}/v1/agent/attempts/{job_id}/{attempt}/secrets", headers=intruder)
    assert secrets.status_code == 409 and secrets.json()["error"]["code"] == "fenced_off"
    finish = httpx.post(
        f"{url}/v1/agent/attempts/{job_id}/{attempt}/release",
        json={"message": "mine now"},
        headers=intruder,
    )
    assert finish.status_code == 409
    assert site.job(job_id).state is JobState.RUNNING


def test_an_agent_token_is_made_and_listed_by_the_cli(tmp_path: Path) -> None:
    home = str(tmp_path)
    both = jobdock("tokens", "create", "x", "--agent", "--admin", "--home", home)
    assert both.returncode == 2 and both.stderr.count("\n") == 1
    made = jobdock("tokens", "create", "x", "--agent", "--home", home)
    assert made.returncode == 0 and "(agent)" in made.stderr
    listed = jobdock("tokens", "ls", "--home", home)
    assert "agent" in listed.stdout


# -- container jobs ---------------------------------------------------------------------


def test_an_agent_runs_container_jobs_on_its_own_engine(
    site: Site, dockerd: engines.Engine
) -> None:
    # The server has no engine; the agent has the session's dockerd.
    agent = site.agent(docker_host=dockerd.url, namespace=engines.NAMESPACE).wait_started()
    job_id = site.submit(
        {"image": engines.BUSYBOX, "command": ["sh", "-c", "echo in-a-container; exit 3"]}
    )
    job = site.finished(job_id, timeout=60)
    assert job.state is JobState.FAILED and job.exit_code == 3, job.message
    assert job.attempts[-1].worker == agent.id
    assert job.attempts[-1].container is not None
    assert site.output(job_id) == b"in-a-container\n"


def test_an_agent_with_tokens_on_runs_process_jobs_as_their_owners_uid(site: Site) -> None:
    agent = site.agent(tokens="true").wait_started()
    job_id = site.submit({"command": ["id", "-u"]})
    job = site.finished(job_id)
    assert job.state is JobState.SUCCEEDED, job.message
    assert job.attempts[-1].worker == agent.id
    uid = int(site.output(job_id))
    assert uid != 0
    # The same uid for the owner's next job: the server allocated it once.
    again = site.submit({"command": ["id", "-u"]})
    site.finished(again)
    assert int(site.output(again)) == uid


def test_stdin_reaches_an_agent_job_given_and_streamed(site: Site) -> None:
    site.agent().wait_started()
    given = site.submit({"command": ["cat"], "stdin": "given input\n"})
    streamed = site.submit({"command": ["cat"], "stdin_stream": True})
    eventually(lambda: site.job(streamed).state is JobState.RUNNING, 20, "the job to start")
    for piece, eof in ((b"first ", False), (b"second\n", True)):
        answer = site.http.post(
            f"/v1/jobs/{streamed}/stdin", content=piece, params={"eof": str(eof).lower()}
        )
        assert answer.status_code == 200, answer.text
    assert site.finished(given).state is JobState.SUCCEEDED
    assert site.output(given) == b"given input\n"
    assert site.finished(streamed).state is JobState.SUCCEEDED
    assert site.output(streamed) == b"first second\n"


# -- the agent routes, as an agent calls them --------------------------------------------


def test_output_sent_again_after_a_lost_answer_is_stored_once(site: Site) -> None:
    agent = httpx.Client(
        base_url=f"{site.server.url}/v1/agent",
        headers={"authorization": f"Bearer {site.agent_token}"},
    )
    prefix = agent.post("/hello").json()["worker_prefix"]
    worker = f"{prefix}test"
    body = {"id": worker, "host": "here", "labels": {}, "concurrency": 1}
    assert agent.post("/workers", json=body).status_code == 200
    job_id = site.submit({"command": ["true"]})
    claims = agent.post("/claim", json={"worker_id": worker, "limit": 1, "labels": {}}).json()
    [claim] = claims["claims"]
    assert claim["job_id"] == job_id
    logs = f"/attempts/{job_id}/{claim['attempt']}/logs"
    first = [LogChunk(1, Stream.STDOUT, 0, 0, b"one "), LogChunk(2, Stream.STDOUT, 4, 4, b"two ")]
    again = [*first, LogChunk(3, Stream.STDOUT, 8, 8, b"three\n")]
    headers = {"content-type": CHUNKS_TYPE}
    assert agent.post(logs, content=encode_chunks(first), headers=headers).status_code == 200
    # The answer was lost: the agent sends from its last acknowledged chunk on.
    answer = agent.post(
        logs, content=encode_chunks(again), headers=headers, params={"resume": "true"}
    )
    assert answer.status_code == 200, answer.text
    assert site.output(job_id) == b"one two three\n"
    outcome = {"state": "succeeded", "reason": "exited", "message": "ok", "finished_at": 1.0}
    outcome |= {"exit_code": 0, "stdout_bytes": 14}
    finish = agent.post(f"/attempts/{job_id}/{claim['attempt']}/finish", json=outcome)
    assert finish.status_code == 200, finish.text
    assert site.job(job_id).state is JobState.SUCCEEDED
    # The attempt has ended: a late write is refused by its fence.
    late = agent.post(logs, content=encode_chunks(again[2:]), headers=headers)
    assert late.status_code == 409 and late.json()["error"]["code"] == "fenced_off"
    assert site.output(job_id) == b"one two three\n"
    bad = agent.post(logs, content=b"not chunks", headers=headers)
    assert bad.status_code == 422
    # Reports: each answered on its own; one with neither part is refused.
    late_end = {"job_id": job_id, "attempt": claim["attempt"], "outcome": outcome}
    answer = agent.post("/reports", json={"reports": [late_end]})
    assert answer.status_code == 200
    assert answer.json()["results"][0]["code"] == "fenced_off"
    empty = {"job_id": job_id, "attempt": claim["attempt"]}
    assert agent.post("/reports", json={"reports": [empty]}).status_code == 422


def test_an_agent_with_max_jobs_runs_that_many_jobs_then_exits_0(site: Site) -> None:
    agent = site.agent(args=["--concurrency", "2", "--max-jobs", "3"]).wait_started()
    ids = [site.submit({"command": ["sh", "-c", "sleep 0.3"]}) for _ in range(5)]

    assert agent.proc is not None
    code = agent.proc.wait(30)
    ran = [job_id for job_id in ids if site.job(job_id).state is JobState.SUCCEEDED]
    left = [site.job(job_id).state for job_id in ids if job_id not in ran]

    assert code == 0, site.logs()
    assert len(ran) == 3
    assert left == [JobState.QUEUED, JobState.QUEUED]


def test_an_agent_refuses_a_max_jobs_out_of_bounds(site: Site) -> None:
    result = jobdock("agent", "--server", site.server.url, "--max-jobs", "-1")

    assert result.returncode == 2
    assert "--max-jobs must be between 0 and" in result.stderr
