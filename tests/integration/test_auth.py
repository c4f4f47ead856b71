"""Users on a real server with API tokens: who sees which job, which
credentials are refused, secrets reaching jobs but no one else, the audit
log, and refusing to listen beyond loopback without authentication."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from jobdock import ApiError, Client, Flow, JobState
from jobdock.client import Credentials
from jobdock.vault import generate_key
from support import ServerProcess, eventually, free_port, jobdock, make_token

SECRET = "hunter2-correct-horse"


@dataclass
class Users:
    server: ServerProcess
    tokens: dict[str, str]

    def client(self, user: str) -> Client:
        return Client(self.server.url, credentials=Credentials(token=self.tokens[user]))

    def http(self, user: str | None, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"authorization": f"Bearer {self.tokens[user]}"} if user else {}
        headers.update(kwargs.pop("headers", {}))
        return httpx.request(method, self.server.url + path, headers=headers, timeout=30, **kwargs)


@pytest.fixture(scope="module")
def users(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Users]:
    """A server that requires tokens, with a secret key; tokens for alice,
    bob and an admin, and one that expired and one that was revoked."""
    home = tmp_path_factory.mktemp("auth")
    server = ServerProcess(home, args=["--tokens"], secret_key=generate_key())
    tokens = {user: make_token(home, user) for user in ("alice", "bob")}
    tokens["root"] = make_token(home, "root", "--admin")
    tokens["expired"] = make_token(home, "alice", "--expires", "1ms")
    tokens["revoked"] = make_token(home, "alice")
    revoked_id = tokens["revoked"].split("_")[1]
    assert jobdock("tokens", "revoke", revoked_id, "--home", str(home)).returncode == 0
    server.start()
    yield Users(server, tokens)
    server.stop()


def test_users_see_and_stop_only_their_own_jobs_and_admins_all(users: Users) -> None:
    with users.client("alice") as alice, users.client("bob") as bob, users.client("root") as root:
        hers = alice.submit({"command": ["sleep", "60"], "kill_grace": 1})
        assert hers.owner == "alice"
        eventually(lambda: alice.get(hers.id).state is JobState.RUNNING, 30)

        assert hers.id not in [job.id for job in bob.list().jobs]
        for path, method in (
            ("", "GET"),
            ("/logs", "GET"),
            ("/wait?timeout=0", "GET"),
            ("/cancel", "POST"),
        ):
            theirs = users.http("bob", method, f"/v1/jobs/{hers.id}{path}")
            missing = users.http("bob", method, f"/v1/jobs/0123456789abcdef{path}")
            assert theirs.status_code == missing.status_code == 404
            assert theirs.json() == {
                "error": {**missing.json()["error"], "message": f"no job with id {hers.id!r}"}
            }
        assert users.http("bob", "GET", "/v1/jobs", params={"owner": "alice"}).json()["jobs"] == []
        assert alice.get(hers.id).state is JobState.RUNNING

        his = bob.run({"command": ["echo", "mine"]})
        assert his.stdout == "mine\n" and his.job.owner == "bob"
        assert [job.id for job in bob.list().jobs] == [his.job.id]

        everyone = {job.id: job.owner for job in root.list().jobs}
        assert everyone[hers.id] == "alice" and everyone[his.job.id] == "bob"
        assert {job.owner for job in root.list(owner="alice").jobs} == {"alice"}

        root.cancel(hers.id)
        assert alice.wait(hers.id, timeout=60).state is JobState.CANCELLED


def test_bad_credentials_are_refused_with_401_and_never_logged(users: Users) -> None:
    bogus = "jdk_0123456789ab_" + "x" * 43
    for headers in (
        {},
        {"authorization": "Basic YWxpY2U6cHc="},
        {"authorization": "Bearer"},
        {"authorization": "Bearer not-a-token"},
        {"authorization": f"Bearer {bogus}"},
        {"authorization": f"Bearer {users.tokens['expired']}"},
        {"authorization": f"Bearer {users.tokens['revoked']}"},
    ):
        for method, path in (("GET", "/v1/jobs"), ("POST", "/v1/jobs"), ("POST", "/v1/run")):
            response = users.http(None, method, path, headers=headers, json={"command": ["true"]})
            assert response.status_code == 401, (headers, path)
            assert response.headers["www-authenticate"].startswith("Bearer")
            assert response.json()["error"]["code"] == "unauthenticated"
    expired = users.http("expired", "GET", "/v1/jobs").json()["error"]["message"]
    revoked = users.http("revoked", "GET", "/v1/jobs").json()["error"]["message"]
    assert "expired" in expired and "revoked" in revoked
    assert users.http(None, "GET", "/healthz").status_code == 200
    log = users.server.log()
    for token in (*users.tokens.values(), bogus):
        assert token not in log and token[17:] not in log


def test_a_secret_reaches_the_job_as_env_and_file_and_is_masked(users: Users) -> None:
    env = {"JOBDOCK_URL": users.server.url, "JOBDOCK_TOKEN": users.tokens["alice"]}
    done = jobdock("secrets", "set", "db", env=env, stdin=SECRET + "\n")
    assert done.returncode == 0, done.stderr
    script = (
        'echo "env=$DB_PASSWORD"; cat "$JOBDOCK_SECRETS_DIR/db.txt"; echo; '
        'stat -c %a "$JOBDOCK_SECRETS_DIR" "$JOBDOCK_SECRETS_DIR/db.txt"; '
        # Split across two pieces of output.
        'printf "%s" "${DB_PASSWORD%????}"; sleep 0.5; printf "%s\\n" "${DB_PASSWORD#${DB_PASSWORD%????}}"; '
        'echo "$JOBDOCK_SECRETS_DIR" >&2'
    )
    spec = {
        "command": ["sh", "-c", script],
        "secrets": [{"name": "db", "env": "DB_PASSWORD", "file": "db.txt"}],
    }
    with users.client("alice") as alice:
        result = alice.run(spec)
        assert result.job.state is JobState.SUCCEEDED, result
        assert result.stdout == "env=***\n***\n700\n600\n***\n"
        directory = Path(result.stderr.strip())
        assert not directory.exists()
        responses = [
            users.http("alice", "GET", f"/v1/jobs/{result.job.id}").text,
            users.http("alice", "GET", "/v1/jobs").text,
            users.http("alice", "GET", f"/v1/jobs/{result.job.id}/logs").text,
            users.http("alice", "GET", "/v1/secrets").text,
            users.http("root", "GET", "/v1/audit").text,
            jobdock("inspect", result.job.id, env=env).stdout,
            jobdock("secrets", "ls", env=env).stdout,
        ]
        assert "db" in responses[3]
        for text in [*responses, users.server.log()]:
            assert SECRET not in text


def test_jobdock_run_gives_secrets_by_flag_as_env_and_file(users: Users) -> None:
    env = {"JOBDOCK_URL": users.server.url, "JOBDOCK_TOKEN": users.tokens["alice"]}
    assert jobdock("secrets", "set", "cli-db", env=env, stdin=SECRET).returncode == 0
    script = 'echo "$PASS"; cat "$JOBDOCK_SECRETS_DIR/pass.txt"'

    ran = jobdock(
        "run",
        "--secret",
        "cli-db=PASS",
        "--secret-file",
        "cli-db=pass.txt",
        "--",
        "sh",
        "-c",
        script,
        env=env,
    )
    assert (ran.returncode, ran.stdout) == (0, "***\n***"), ran.stderr

    bad = jobdock("run", "--secret", "no-equals-sign", "--", "true", env=env)
    assert bad.returncode == 2 and "NAME=VALUE" not in bad.stdout
    assert len(bad.stderr.strip().splitlines()) == 1


def test_a_job_cannot_reference_another_users_secret(users: Users) -> None:
    with users.client("alice") as alice:
        alice.set_secret("apikey", b"alices-key")
    with users.client("bob") as bob:
        spec = {"command": ["true"], "secrets": [{"name": "apikey", "env": "KEY"}]}
        for path in ("/v1/jobs", "/v1/run"):
            response = users.http("bob", "POST", path, json=spec)
            assert response.status_code == 422
            error = response.json()["error"]
            assert error["code"] == "unknown_secret" and error["field"] == "secrets.0.name"
            assert "'apikey'" in error["message"]
        with pytest.raises(ApiError) as raised:
            bob.delete_secret("apikey")
        assert raised.value.status == 404
        assert bob.secrets() == []


def test_the_audit_log_says_who_submitted_and_who_stopped(users: Users) -> None:
    with users.client("alice") as alice, users.client("root") as root:
        job = alice.submit({"command": ["sleep", "60"], "kill_grace": 1})
        root.cancel(job.id)
        entries = [(e.actor, e.action, e.target) for e in root.audit(limit=1000).entries]
        assert ("alice", "submit", job.id) in entries
        assert ("root", "cancel", job.id) in entries
    response = users.http("bob", "GET", "/v1/audit")
    assert response.status_code == 403 and response.json()["error"]["code"] == "forbidden"


def test_an_idempotency_key_is_per_user(users: Users) -> None:
    spec = {"command": ["true"], "idempotency_key": "deploy-7"}

    first = users.http("alice", "POST", "/v1/jobs", json=spec)
    again = users.http("alice", "POST", "/v1/jobs", json=spec)
    bobs = users.http("bob", "POST", "/v1/jobs", json=spec)

    assert (first.status_code, again.status_code, bobs.status_code) == (201, 200, 201)
    assert again.json()["id"] == first.json()["id"]
    assert bobs.json()["id"] != first.json()["id"], "never another user's job"
    assert bobs.json()["owner"] == "bob"


def test_a_schedule_and_its_jobs_belong_to_the_user_who_added_it(users: Users) -> None:
    name = f"alices-{time.time_ns()}"
    with users.client("alice") as alice, users.client("bob") as bob, users.client("root") as root:
        alice.add_schedule(
            {"name": name, "cron": "* * * * * *", "overlap": "forbid", "job": {"command": ["true"]}}
        )
        try:
            jobs = eventually(
                lambda: alice.list(labels={"jobdock.schedule": name}).jobs,
                timeout=30,
                what="a job of alice's schedule",
            )
            assert {job.owner for job in jobs} == {"alice"}
            assert name not in [s.name for s in bob.schedules()]
            for method, path in (
                ("GET", ""),
                ("DELETE", ""),
                ("POST", "/pause"),
                ("POST", "/resume"),
            ):
                response = users.http("bob", method, f"/v1/schedules/{name}{path}")
                assert response.status_code == 404, (method, path)
            assert [s.owner for s in root.schedules() if s.name == name] == ["alice"]
        finally:
            alice.remove_schedule(name)
        entries = [(e.actor, e.action, e.target) for e in root.audit(limit=1000).entries]
        assert ("alice", "schedule.add", name) in entries
        assert ("alice", "schedule.rm", name) in entries


def test_only_admins_prune(users: Users) -> None:
    response = users.http("bob", "POST", "/v1/prune")
    assert response.status_code == 403 and response.json()["error"]["code"] == "forbidden"
    assert users.http("root", "POST", "/v1/prune").status_code == 200


def test_secrets_are_refused_without_a_secret_key(server: ServerProcess) -> None:
    response = httpx.put(f"{server.url}/v1/secrets/db", content=b"x", timeout=30)
    assert response.status_code == 501
    assert "secret_key" in response.json()["error"]["message"]


def test_without_auth_everyone_is_the_local_admin(client: Client) -> None:
    job = client.submit({"command": ["true"]})
    assert job.owner == "anonymous"
    assert client.wait(job.id, timeout=60).owner == "anonymous"


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "example.org"])
def test_serve_refuses_to_listen_beyond_loopback_without_auth(tmp_path: Path, host: str) -> None:
    done = jobdock("serve", "--host", host, "--port", str(free_port()), "--home", str(tmp_path))
    assert done.returncode == 2
    assert "refusing to listen" in done.stderr and "--insecure" in done.stderr
    assert "Traceback" not in done.stderr


def test_users_see_and_cancel_only_their_own_workflows(users: Users) -> None:
    flow = Flow("private").step("wait", ["sleep", "60"], kill_grace=1)
    with users.client("alice") as alice, users.client("bob") as bob, users.client("root") as root:
        hers = alice.submit_workflow(flow)
        assert hers.owner == "alice"
        assert alice.get(hers.steps[0].job_id or "").owner == "alice"

        for path, method in (("", "GET"), ("/cancel", "POST")):
            theirs = users.http("bob", method, f"/v1/workflows/{hers.id}{path}")
            assert theirs.status_code == 404, theirs.text
            assert theirs.json()["error"]["code"] == "not_found"
        assert bob.workflows().workflows == []
        assert [w.id for w in root.workflows().workflows] == [hers.id]

        root.cancel_workflow(hers.id)
        assert alice.wait_workflow(hers.id, timeout=60).state == "cancelled"
