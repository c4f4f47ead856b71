"""``POST /v1/jobs/{id}/stdin`` on a server with tokens: only the job's owner
sends its stdin, in as many requests as they like, within the server's
``max_stdin_stream``; the job reads it as it comes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from jobdock.models import JobState
from support import ServerProcess, make_token

LIMIT = 1024 * 1024


@pytest.fixture(scope="module")
def users(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, dict]]:
    home: Path = tmp_path_factory.mktemp("stdin")
    server = ServerProcess(home, args=["--tokens"], max_stdin_stream=str(LIMIT))
    tokens = {user: make_token(home, user) for user in ("alice", "bob")}
    tokens["root"] = make_token(home, "root", "--admin")
    server.launch().wait_healthy(120)
    yield server, tokens
    server.stop()


def _http(users: tuple[ServerProcess, dict], who: str) -> httpx.Client:
    server, tokens = users
    headers = {"authorization": f"Bearer {tokens[who]}"}
    return httpx.Client(base_url=server.url, headers=headers, timeout=60)


def _submit(http: httpx.Client, command: list[str]) -> str:
    answer = http.post("/v1/jobs", json={"command": command, "stdin_stream": True})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def _output(http: httpx.Client, job_id: str) -> bytes:
    job = http.get(f"/v1/jobs/{job_id}/wait", params={"timeout": 60}).json()
    assert job["state"] == JobState.SUCCEEDED.value, job
    return http.get(f"/v1/jobs/{job_id}/logs").content


def test_the_owner_sends_stdin_in_several_requests(users: tuple[ServerProcess, dict]) -> None:
    with _http(users, "alice") as alice:
        job_id = _submit(alice, ["cat"])

        first = alice.post(f"/v1/jobs/{job_id}/stdin", content=b"one ")
        second = alice.post(f"/v1/jobs/{job_id}/stdin", content=iter([b"two ", b"three"]))
        closed = alice.post(f"/v1/jobs/{job_id}/stdin", params={"eof": "true"})

        assert first.json() == {"job_id": job_id, "bytes": 4, "eof": False}
        assert second.json()["bytes"] == 13
        assert closed.json() == {"job_id": job_id, "bytes": 13, "eof": True}
        assert _output(alice, job_id) == b"one two three"
        late = alice.post(f"/v1/jobs/{job_id}/stdin", content=b"more")
        assert late.status_code == 409
        assert late.json()["error"]["code"] == "stdin_closed"


def test_another_user_cannot_send_stdin_to_your_job(users: tuple[ServerProcess, dict]) -> None:
    with _http(users, "alice") as alice, _http(users, "bob") as bob, _http(users, "root") as root:
        job_id = _submit(alice, ["cat"])

        his = bob.post(f"/v1/jobs/{job_id}/stdin", content=b"bob was here", params={"eof": 1})
        admins = root.post(f"/v1/jobs/{job_id}/stdin", content=b"root too", params={"eof": 1})
        alice.post(f"/v1/jobs/{job_id}/stdin", content=b"hers", params={"eof": "true"})

        assert his.status_code == 404, "as if the job did not exist"
        assert his.json()["error"]["code"] == "not_found"
        assert admins.status_code == 403
        assert _output(alice, job_id) == b"hers"


def test_stdin_past_the_servers_limit_is_413_and_a_plain_job_takes_none(
    users: tuple[ServerProcess, dict],
) -> None:
    with _http(users, "alice") as alice:
        job_id = _submit(alice, ["cat"])
        plain = alice.post("/v1/jobs", json={"command": ["true"]}).json()["id"]

        pieces = iter([b"x" * 65536] * (LIMIT // 65536 + 1))
        too_much = alice.post(f"/v1/jobs/{job_id}/stdin", content=pieces)
        refused = alice.post(f"/v1/jobs/{plain}/stdin", content=b"no")

        assert too_much.status_code == 413
        assert too_much.json()["error"]["code"] == "stdin_too_large"
        assert "max_stdin_stream" in too_much.json()["error"]["message"]
        assert refused.status_code == 409
        assert "stdin_stream" in refused.json()["error"]["message"]
        alice.post(f"/v1/jobs/{job_id}/cancel")
