"""Interruptions (docs/machines.md#interruptions): a real ``jobdock agent``
told that its machine will be reclaimed (``--interruption-url``, a real
HTTP server on loopback standing in for EC2's instance metadata) hands
its running jobs back at once; they run again on another agent without
spending their retries. A machine that dies without notice is a lost
worker, as before. Server: tokens on, its embedded worker runs nothing;
leases are FAST_SETTINGS'."""

from __future__ import annotations

import secrets
import signal
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType

import httpx
import pytest

from agents import Site, site_of
from jobdock import JobState, Reason
from support import eventually, jobdock, make_token

#: EC2's spot notice, under its instance metadata.
NOTICE_PATH = "/latest/meta-data/spot/instance-action"
#: Would fail the job at the first loss that counts.
NO_RETRIES = {"max_attempts": 1, "count_worker_lost": True}


class InstanceMetadata:
    """EC2's instance metadata as far as spot notices go: 404 at NOTICE_PATH
    until ``notice`` is set, then 200 with EC2's body; with ``imdsv2``, GETs
    need the session token that ``PUT /latest/api/token`` hands out."""

    def __init__(self, imdsv2: bool = False) -> None:
        self.notice = False
        self.token = secrets.token_hex(8)
        self.tokens_given = 0
        self.refused = 0
        meta = self

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self) -> None:
                if self.path == "/latest/api/token" and imdsv2:
                    meta.tokens_given += 1
                    self._answer(200, meta.token.encode())
                else:
                    self._answer(404, b"")

            def do_GET(self) -> None:
                if imdsv2 and self.headers.get("X-aws-ec2-metadata-token") != meta.token:
                    meta.refused += 1
                    self._answer(401, b"")
                elif self.path == NOTICE_PATH and meta.notice:
                    self._answer(200, b'{"action": "terminate", "time": "2026-12-02T09:00:00Z"}')
                else:
                    self._answer(404, b"")

            def _answer(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}{NOTICE_PATH}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> InstanceMetadata:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    yield from site_of(tmp_path)


def _once_then_quick(mark: Path) -> list[str]:
    """A job that runs for long the first time, and succeeds at once after."""
    return [
        "sh",
        "-c",
        f"test -e {mark} && echo second run && exit 0; touch {mark}; exec sleep 120",
    ]


@pytest.mark.parametrize("imdsv2", [True, False], ids=["imdsv2", "imdsv1"])
def test_an_interruption_notice_requeues_the_job_and_it_runs_again_with_its_retries_unspent(
    site: Site, tmp_path: Path, imdsv2: bool
) -> None:
    mark = tmp_path / "ran-once"
    with InstanceMetadata(imdsv2) as metadata:
        doomed = site.agent(args=["--interruption-url", metadata.url]).wait_started()
        job_id = site.submit({"command": _once_then_quick(mark), "retry": NO_RETRIES})
        eventually(lambda: mark.exists(), 30, "the first attempt to start")
        spare = site.agent().wait_started()

        metadata.notice = True
        job = site.finished(job_id, 30)

        assert job.state is JobState.SUCCEEDED, site.logs()
        first, second = job.attempts
        assert (first.worker, first.reason) == (doomed.id, Reason.INTERRUPTED)
        assert (second.worker, second.reason, second.exit_code) == (spare.id, Reason.EXITED, 0)
        assert site.output(job_id) == b"second run\n"
        assert doomed.proc is not None and doomed.proc.wait(30) == 0
        assert "handed back" in doomed.log()
        if imdsv2:
            assert metadata.tokens_given >= 1 and metadata.refused == 0
    workers = {w["id"]: w["state"] for w in site.http.get("/v1/workers").json()["workers"]}
    assert workers[doomed.id] == "stopped" and workers[spare.id] == "alive"


def test_an_interrupted_agent_hands_back_only_its_own_jobs(site: Site) -> None:
    other_token = make_token(site.server.home, "other-box", "--agent")
    with InstanceMetadata() as metadata:
        doomed = site.agent(
            labels={"box": "doomed"}, args=["--interruption-url", metadata.url]
        ).wait_started()
        # The same agent token on another machine, and another agent token.
        sibling = site.agent(labels={"box": "sibling"}).wait_started()
        other = site.agent(token=other_token, labels={"box": "other"}).wait_started()
        jobs = {
            box: site.submit({"command": ["sleep", "120"], "requires": {"box": box}})
            for box in ("doomed", "sibling", "other")
        }
        eventually(
            lambda: all(site.job(j).state is JobState.RUNNING for j in jobs.values()),
            30,
            "the three jobs to run",
        )

        metadata.notice = True
        assert doomed.proc is not None and doomed.proc.wait(30) == 0

    handed = site.job(jobs["doomed"])
    # Requeued, it waits for an agent that offers box=doomed.
    assert handed.state is JobState.QUEUED
    assert [a.reason for a in handed.attempts] == [Reason.INTERRUPTED]
    for box, agent in (("sibling", sibling), ("other", other)):
        job = site.job(jobs[box])
        assert job.state is JobState.RUNNING
        assert [(a.worker, a.reason) for a in job.attempts] == [(agent.id, None)]


def test_another_agent_or_a_user_cannot_hand_back_an_agents_jobs(site: Site) -> None:
    agent = site.agent().wait_started()
    job_id = site.submit({"command": ["sleep", "120"]})
    eventually(lambda: site.job(job_id).state is JobState.RUNNING, 30, "the job to run")
    other_token = make_token(site.server.home, "other-box", "--agent")
    body = {"worker_id": agent.id}

    for token in (other_token, site.user_token):
        answer = httpx.post(
            f"{site.server.url}/v1/agent/workers/interrupted",
            json=body,
            headers={"authorization": f"Bearer {token}"},
        )
        assert answer.status_code == 403, answer.text
        assert answer.json()["error"]["code"] == "forbidden"
    job = site.job(job_id)
    assert job.state is JobState.RUNNING and job.attempts[-1].worker == agent.id


def test_an_agent_killed_without_notice_is_a_lost_worker_that_spends_a_retry(
    site: Site,
) -> None:
    agent = site.agent().wait_started()
    job_id = site.submit({"command": ["sleep", "120"], "retry": NO_RETRIES})
    eventually(lambda: site.job(job_id).state is JobState.RUNNING, 30, "the job to run")

    agent.send(signal.SIGKILL)
    job = site.finished(job_id, 30)

    assert job.state is JobState.FAILED
    assert job.reason is Reason.WORKER_LOST
    assert [a.reason for a in job.attempts] == [Reason.WORKER_LOST]


def test_an_interruption_url_that_is_not_http_is_refused_in_one_line() -> None:
    done = jobdock(
        "agent", "--server", "http://127.0.0.1:9", "--interruption-url", "file:///etc/passwd"
    )
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0
    assert "--interruption-url must be an http:// or https:// URL" in done.stderr
