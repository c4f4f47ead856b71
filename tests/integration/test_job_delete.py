"""DELETE /v1/jobs/{id} on a real server: a finished job goes with its
attempts and logs (what ``jobdock run --rm`` does); one that has not
finished stays and answers 409; another user's job is not found."""

from __future__ import annotations

import httpx
from test_auth import Users, users  # noqa: F401  (the fixture: a server with tokens)

from jobdock import ApiError, Client
from support import ServerProcess, eventually


def test_a_finished_job_is_deleted_with_its_logs(client: Client, server: ServerProcess) -> None:
    job = client.submit({"command": ["echo", "bye"]})
    client.wait(job.id, timeout=60)

    deleted = httpx.delete(f"{server.url}/v1/jobs/{job.id}", timeout=30)

    assert (deleted.status_code, deleted.content) == (204, b"")
    assert httpx.get(f"{server.url}/v1/jobs/{job.id}").status_code == 404
    assert httpx.get(f"{server.url}/v1/jobs/{job.id}/logs").status_code == 404
    assert job.id not in [j.id for j in client.list(limit=1000).jobs]
    again = httpx.delete(f"{server.url}/v1/jobs/{job.id}", timeout=30)
    assert (again.status_code, again.json()["error"]["code"]) == (404, "not_found")


def test_a_job_that_has_not_finished_is_409_and_stays(
    client: Client, server: ServerProcess
) -> None:
    job = client.submit({"command": ["sleep", "30"]})
    eventually(lambda: client.get(job.id).state.value == "running", what="the job running")

    refused = httpx.delete(f"{server.url}/v1/jobs/{job.id}", timeout=30)

    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "illegal_transition"
    assert "running" in refused.json()["error"]["message"]
    assert client.get(job.id).state.value == "running"
    client.cancel(job.id, kill=True)
    client.wait(job.id, timeout=60)


def test_another_users_job_cannot_be_deleted(users: Users) -> None:  # noqa: F811
    with users.client("alice") as alice:
        job = alice.submit({"command": ["true"]})
        alice.wait(job.id, timeout=60)

        as_bob = users.http("bob", "DELETE", f"/v1/jobs/{job.id}")

        assert (as_bob.status_code, as_bob.json()["error"]["code"]) == (404, "not_found")
        assert alice.get(job.id).terminal
        alice.delete(job.id)
        try:
            alice.get(job.id)
        except ApiError as exc:
            assert exc.status == 404
        else:
            raise AssertionError("the job is still there")
