"""Batch submit (``POST /v1/jobs/batch`` and ``Client.submit_many``)
against a real server: jobs are created in order and run; one bad spec
creates none and the error names its index; a batch spends one submit of
its owner's rate per job, so batching gets no more past a limit; a batch
past the bounds is refused with a clear 4xx; ``submit_many`` cuts more
than 1000 specs into several batches."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import jobdock
from jobdock import Client, JobState
from jobdock.client import Credentials
from jobdock.client_errors import RateLimited
from support import ServerProcess, make_token


def job_count(client: Client, name: str) -> int:
    return len(client.list(name=name, limit=1000).jobs)


def test_a_batch_is_created_in_order_and_every_job_runs(client: Client) -> None:
    specs = [{"command": ["sh", "-c", f"echo {i}"], "name": f"batch-order-{i}"} for i in range(5)]

    handles = client.submit_many(specs)

    assert [h.name for h in handles] == [f"batch-order-{i}" for i in range(5)]
    assert len({h.id for h in handles}) == 5
    for i, handle in enumerate(handles):
        done = handle.wait(timeout=60)
        assert done.state == JobState.SUCCEEDED
        assert "".join(text for _, text in handle.logs()) == f"{i}\n"


def test_one_bad_spec_creates_none_and_the_error_names_its_index(
    server: ServerProcess,
) -> None:
    jobs = [{"command": ["true"], "name": "batch-bad"} for _ in range(4)]
    jobs[2] = {"name": "batch-bad", "timeout": "10m"}  # no command

    response = httpx.post(f"{server.url}/v1/jobs/batch", json={"jobs": jobs})

    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_spec"
    assert error["message"].startswith("jobs.2.command: ")
    with Client(server.url) as client:
        assert job_count(client, "batch-bad") == 0


def test_a_spec_the_policy_refuses_names_its_index_and_creates_none(client: Client) -> None:
    specs = [{"command": ["true"], "name": "batch-policy"} for _ in range(3)]
    specs[1] = {
        "command": ["true"],
        "name": "batch-policy",
        "secrets": [{"name": "nosuch", "env": "X"}],
    }

    with pytest.raises(jobdock.InvalidSpec) as raised:
        client.submit_many(specs)

    assert raised.value.message.startswith("jobs.1.secrets.0.name: ")
    assert job_count(client, "batch-policy") == 0


def test_idempotency_keys_apply_per_spec(client: Client) -> None:
    first = client.submit({"command": ["true"], "idempotency_key": "batch-key-1"})

    again = client.submit_many(
        [
            {"command": ["true"], "idempotency_key": "batch-key-1"},
            {"command": ["true"], "idempotency_key": "batch-key-2"},
        ]
    )

    assert again[0].id == first.id
    assert again[1].id != first.id


def test_a_batch_past_1000_specs_or_the_body_limit_is_refused(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, args=("--no-worker",), max_request_body="64KiB").start()
    try:
        many = httpx.post(
            f"{server.url}/v1/jobs/batch",
            json={"jobs": [{"command": ["true"]}] * 1001},
            timeout=30,
        )
        big = httpx.post(
            f"{server.url}/v1/jobs/batch",
            json={"jobs": [{"command": ["echo", "x" * 1000]}] * 100},
            timeout=30,
        )
        with Client(server.url) as client:
            assert client.list(limit=10).jobs == []
    finally:
        server.stop()

    assert many.status_code == 422
    assert many.json()["error"]["message"].startswith("jobs: a batch holds at most 1000 jobs")
    assert big.status_code == 413
    assert big.json()["error"]["code"] == "request_too_large"


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, str]]:
    home = tmp_path_factory.mktemp("batch-rates")
    token = make_token(home, "alice")
    server = ServerProcess(
        home, args=("--tokens", "--no-worker"), submit_rate="0.01", submit_burst="10"
    ).start()
    yield server, token
    server.stop()


def test_a_batch_spends_one_submit_per_job_of_the_owners_rate(
    limited: tuple[ServerProcess, str],
) -> None:
    server, token = limited
    with Client(server.url, credentials=Credentials(token=token)) as client:
        made = client.submit_many([{"command": ["true"]}] * 8)
        with pytest.raises(RateLimited) as refused:
            client.submit_many([{"command": ["true"]}] * 3)
        last = client.submit_many([{"command": ["true"]}] * 2)
        with pytest.raises(RateLimited):
            client.submit({"command": ["true"]})
        total = len(client.list(limit=1000).jobs)

    assert (len(made), len(last), total) == (8, 2, 10)
    assert "too many submits of alice" in refused.value.message


def test_a_batch_past_the_burst_says_to_send_smaller_ones(tmp_path: Path) -> None:
    token = make_token(tmp_path, "bob")
    server = ServerProcess(
        tmp_path, args=("--tokens", "--no-worker"), submit_rate="1", submit_burst="5"
    ).start()
    try:
        response = httpx.post(
            f"{server.url}/v1/jobs/batch",
            json={"jobs": [{"command": ["true"]}] * 6},
            headers={"authorization": f"Bearer {token}"},
        )
    finally:
        server.stop()

    assert response.status_code == 429
    assert "send batches of at most 5" in response.json()["error"]["message"]
    assert "retry-after" in response.headers


def test_submit_many_sends_more_than_1000_specs_as_several_batches(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, args=("--no-worker",)).start()
    try:
        with Client(server.url) as client:
            handles = client.submit_many(
                {"command": ["true"], "labels": {"n": str(i)}} for i in range(2100)
            )
            page = client.list(limit=1000)
    finally:
        server.stop()

    # The server takes at most 1000 a request: these came as three batches.
    assert [h.labels["n"] for h in handles] == [str(i) for i in range(2100)]
    assert len({h.id for h in handles}) == 2100
    assert len(page.jobs) == 1000
