"""A job is found by its id, a unique prefix of its id or its name, in
every /v1/jobs/{ref} route, among the jobs the caller may see: an ambiguous
reference answers 400 listing its candidates, and another user's jobs are
never among them (a real server with tokens for alice, bob and an admin)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_auth import Users

from jobdock.models import JobSpec
from jobdock.store import NewJob
from jobdock.store.sql import SqlStore
from jobdock.vault import generate_key
from support import ServerProcess, eventually, jobdock, make_token

#: Jobs with chosen ids, written to the server's store: (id, name, owner).
#: alice's deploy and bob's job share the prefix "feed"; alice's two builds
#: share the prefix "fee1" and the name "build".
DEPLOY = "feed000000000001"
BUILD_OLD = "fee1000000000002"
BUILD_NEW = "fee1100000000003"
BOBS = "feedb00000000004"
JOBS = [
    (DEPLOY, "deploy", "alice"),
    (BUILD_OLD, "build", "alice"),
    (BUILD_NEW, "build", "alice"),
    (BOBS, "nightly", "bob"),
]


@pytest.fixture(scope="module")
def users(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Users]:
    home = tmp_path_factory.mktemp("references")
    server = ServerProcess(home, args=["--tokens"], secret_key=generate_key())
    tokens = {user: make_token(home, user) for user in ("alice", "bob")}
    tokens["root"] = make_token(home, "root", "--admin")
    server.start()
    asyncio.run(_store_jobs(home))
    yield Users(server, tokens)
    server.stop()


async def _store_jobs(home: Path) -> None:
    async with SqlStore(f"sqlite:///{home}/jobdock.db") as store:
        for job_id, name, owner in JOBS:
            spec = JobSpec(command=["echo", name], name=name)
            await store.create_job(NewJob(job_id, spec, b"", time.time(), owner))


def _get(users: Users, user: str, ref: str) -> tuple[int, dict[str, Any]]:
    response = users.http(user, "GET", f"/v1/jobs/{ref}")
    return response.status_code, response.json()


def test_a_unique_prefix_or_a_name_finds_the_job(users: Users) -> None:
    # (The job runs meanwhile: compare what does not change.)
    status, found = _get(users, "alice", "feed")
    assert (status, found["id"], found["name"]) == (200, DEPLOY, "deploy"), (
        "bob's feedb... is not one"
    )
    assert _get(users, "alice", "deploy")[1]["id"] == DEPLOY
    assert _get(users, "alice", "fee11")[1]["id"] == BUILD_NEW

    waited = users.http("alice", "GET", "/v1/jobs/deploy/wait", params={"timeout": 30})
    assert (waited.status_code, waited.json()["state"]) == (200, "succeeded")
    logs = users.http("alice", "GET", "/v1/jobs/feed/logs")
    assert (logs.status_code, logs.content) == (200, b"deploy\n")
    cancel = users.http("alice", "POST", "/v1/jobs/deploy/cancel")
    assert cancel.json()["error"]["code"] == "illegal_transition", "it finished: found, not 404"


def test_an_ambiguous_reference_answers_400_with_the_candidates(users: Users) -> None:
    for ref in ("build", "fee1"):
        status, body = _get(users, "alice", ref)
        assert status == 400
        assert body["error"]["code"] == "ambiguous_reference"
        assert body["error"]["candidates"] == [BUILD_NEW, BUILD_OLD], "newest first"
        assert BUILD_NEW in body["error"]["message"] and BUILD_OLD in body["error"]["message"]
    for route in ("/cancel", "/wait", "/logs"):
        method = "POST" if route == "/cancel" else "GET"
        answer = users.http("alice", method, f"/v1/jobs/build{route}")
        assert (answer.status_code, answer.json()["error"]["code"]) == (400, "ambiguous_reference")
    status, body = _get(users, "alice", "fee")
    assert (status, body["error"]["code"]) == (404, "not_found"), "3 characters are no prefix"


def test_another_users_jobs_are_never_candidates(users: Users) -> None:
    # "feed" is alice's deploy and bob's job: each of them finds their own.
    assert _get(users, "bob", "feed")[1]["id"] == BOBS
    for ref in ("build", "fee1", "deploy", DEPLOY):
        status, body = _get(users, "bob", ref)
        assert body == {"error": {"code": "not_found", "message": f"no job with id {ref!r}"}}
        assert status == 404
    assert _get(users, "alice", "feedb")[0] == 404
    assert _get(users, "alice", "nightly")[0] == 404
    # An admin sees everyone's jobs, so "feed" is ambiguous for them.
    status, body = _get(users, "root", "feed")
    assert (status, body["error"]["candidates"]) == (400, [BOBS, DEPLOY])


def test_the_cli_finds_jobs_by_name_and_prefix_as_the_caller(users: Users) -> None:
    def cli(user: str, *args: str) -> tuple[int, str, str]:
        env = {"JOBDOCK_URL": users.server.url, "JOBDOCK_TOKEN": users.tokens[user]}
        done = jobdock(*args, env=env)
        return done.returncode, done.stdout, done.stderr

    eventually(lambda: cli("bob", "wait", "nightly")[0] == 0, 30, "bob's job to end")
    assert cli("bob", "logs", "feed") == (0, "nightly\n", "")
    code, out, err = cli("alice", "inspect", "build")
    assert (code, out) == (1, "")
    assert err.count("\n") == 1 and BUILD_NEW in err and BUILD_OLD in err and BOBS not in err
    code, out, err = cli("alice", "describe", "nightly")
    assert (code, err) == (1, "jobdock: no job with id 'nightly'\n")
