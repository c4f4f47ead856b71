"""Webhooks against a receiver on loopback: a job that ends POSTs its record
there, signed; a receiver that is down gets each try, further and further
apart, all in the delivery log; an address the operator did not allow is
refused at submit (docs/operating.md)."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from receivers import Receiver
from support import ServerProcess, WorkerProcess, eventually, free_port, make_token

SECRET = "s3cret-for-the-tests"


def _server(tmp_path: Path, allow: list[str], **settings: str) -> ServerProcess:
    return ServerProcess(
        tmp_path / "home",
        webhook_allow=json.dumps(allow),
        webhook_secret=SECRET,
        **settings,
    ).start()


def _submit(server: ServerProcess, **spec: Any) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/jobs", json={"command": ["true"], **spec})


def _deliveries(server: ServerProcess, job_id: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{server.url}/v1/jobs/{job_id}/webhooks")
    assert response.status_code == 200, response.text
    deliveries: list[dict[str, Any]] = response.json()["deliveries"]
    return deliveries


def test_an_ended_job_posts_its_signed_record_to_its_webhook(tmp_path: Path) -> None:
    with Receiver() as receiver:
        server = _server(tmp_path, [f"{receiver.url}/hooks/"])
        try:
            job = _submit(
                server,
                command=["sh", "-c", "exit 3"],
                webhooks=[f"{receiver.url}/hooks/jobdock"],
            ).json()
            got = eventually(lambda: receiver.requests("/hooks/jobdock"), timeout=20)
            log = eventually(lambda: _deliveries(server, job["id"]), timeout=10)
        finally:
            server.stop()

    [request] = got
    expected = hmac.new(SECRET.encode(), request.body, hashlib.sha256).hexdigest()
    assert request.headers["x-jobdock-signature"] == f"sha256={expected}"
    body = json.loads(request.body)
    assert body["event"] == "job.ended"
    assert body["job"]["id"] == job["id"]
    assert body["job"]["state"] == "failed" and body["job"]["exit_code"] == 3
    assert request.headers["x-b3-traceid"] == job["trace_id"]
    assert [(d["try_number"], d["status"], d["ok"]) for d in log] == [(1, 200, True)]


def test_a_receiver_that_is_down_gets_retries_with_backoff_each_in_the_log(
    tmp_path: Path,
) -> None:
    down = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens there
    server = _server(
        tmp_path, [down], webhook_tries="3", webhook_backoff="0.3", webhook_timeout="2"
    )
    try:
        job = _submit(server, webhooks=[down]).json()
        log = eventually(
            lambda: (found := _deliveries(server, job["id"])) and len(found) == 3 and found,
            timeout=30,
            what="three tries",
        )
    finally:
        server.stop()

    assert [d["try_number"] for d in log] == [1, 2, 3]
    assert all(d["url"] == down and not d["ok"] and d["status"] is None for d in log)
    assert all("Connect" in d["error"] for d in log), log
    times = [datetime.fromisoformat(d["at"]).timestamp() for d in log]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert gaps[0] >= 0.3 and gaps[1] >= 0.6, gaps


def test_a_receiver_that_fails_then_recovers_is_tried_until_it_takes_it(tmp_path: Path) -> None:
    with Receiver(status=503) as receiver:
        server = _server(tmp_path, [receiver.url], webhook_tries="5", webhook_backoff="0.2")
        try:
            job = _submit(server, webhooks=[f"{receiver.url}/x"]).json()
            eventually(lambda: receiver.requests("/x"), timeout=20)
            receiver.status = 204
            log = eventually(
                lambda: (found := _deliveries(server, job["id"])) and found[-1]["ok"] and found,
                timeout=20,
            )
        finally:
            server.stop()

    assert log[0]["status"] == 503 and log[0]["error"] == "HTTP 503"
    assert log[-1]["status"] == 204
    assert [d["try_number"] for d in log] == list(range(1, len(log) + 1))


def test_an_address_the_operator_did_not_allow_is_refused_at_submit(tmp_path: Path) -> None:
    server = _server(tmp_path, ["http://127.0.0.1:9/hooks/"])
    try:
        other_host = _submit(server, webhooks=["http://169.254.169.254/latest/meta-data"])
        other_path = _submit(server, webhooks=["http://127.0.0.1:9/elsewhere"])
        other_port = _submit(server, webhooks=["http://127.0.0.1:10/hooks/x"])
        not_http = _submit(server, webhooks=["file:///etc/passwd"])
        listed = httpx.get(f"{server.url}/v1/jobs").json()["jobs"]
    finally:
        server.stop()

    for refused in (other_host, other_path, other_port, not_http):
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"]["code"] == "invalid_spec"
        assert "webhooks[0]" in refused.json()["error"]["message"]
    assert listed == [], "nothing was created"


def test_the_servers_default_webhook_serves_jobs_that_name_none(tmp_path: Path) -> None:
    with Receiver() as receiver:
        server = _server(tmp_path, [], webhooks=json.dumps([f"{receiver.url}/default"]))
        try:
            job = _submit(server).json()
            got = eventually(lambda: receiver.requests("/default"), timeout=20)
        finally:
            server.stop()

    assert job["spec"]["webhooks"] == [f"{receiver.url}/default"]
    assert json.loads(got[0].body)["job"]["id"] == job["id"]


def test_a_jobs_delivery_log_is_its_owners_alone(tmp_path: Path) -> None:
    with Receiver() as receiver:
        home = tmp_path / "home"
        server = ServerProcess(
            home, tokens="true", jobs_as_server="true", webhook_allow=json.dumps([receiver.url])
        )
        home.mkdir(parents=True)
        alice, bob = make_token(home, "alice"), make_token(home, "bob")
        server.start()
        try:
            job = httpx.post(
                f"{server.url}/v1/jobs",
                json={"command": ["true"], "webhooks": [f"{receiver.url}/a"]},
                headers={"Authorization": f"Bearer {alice}"},
            ).json()
            eventually(lambda: receiver.requests("/a"), timeout=20)

            def log_as(token: str) -> httpx.Response:
                return httpx.get(
                    f"{server.url}/v1/jobs/{job['id']}/webhooks",
                    headers={"Authorization": f"Bearer {token}"},
                )

            hers = eventually(lambda: (r := log_as(alice)).json()["deliveries"] and r, timeout=10)
            his = log_as(bob)
        finally:
            server.stop()

    assert hers.json()["deliveries"][0]["ok"] is True
    assert his.status_code == 404, his.text


def test_a_separate_worker_sends_the_webhooks_of_an_api_only_servers_jobs(
    tmp_path: Path, pg_url: str
) -> None:
    with Receiver() as receiver:
        hooks = {"webhook_allow": json.dumps([receiver.url]), "webhook_secret": SECRET}
        server = ServerProcess(tmp_path / "server", args=("--no-worker",), db=pg_url, **hooks)
        server.start()
        worker = WorkerProcess(tmp_path / "worker", pg_url, **hooks).start()
        try:
            job = _submit(server, webhooks=[f"{receiver.url}/w"]).json()
            got = eventually(lambda: receiver.requests("/w"), timeout=30)
            log = eventually(lambda: _deliveries(server, job["id"]), timeout=10)
        finally:
            worker.stop()
            server.stop()

    assert json.loads(got[0].body)["job"]["state"] == "succeeded"
    assert [d["ok"] for d in log] == [True]
