"""docker-job's API (docs/machines.md#docker-jobs-api) as its users'
scripts call it, on a real ``jobdock serve`` with tokens on and the
suite's dockerd: docker-job's own examples, its 400 messages, the status
in its words, the server's pool for such jobs, and tenants kept apart."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

import engines
from support import ServerProcess, eventually, make_token

#: An image whose own command prints a variable docker-job's env_vars set.
PRINTS_ENV = "localhost/dockerjob-env:1"
#: The labels of the pool docker-job's jobs are sent to.
POOL_LABELS = {"pool": "spot-builders", "arch": "amd64"}
#: docker-job's example: curl -X POST -d '{...}' (curl's -d says it is a form).
FORM = {"content-type": "application/x-www-form-urlencoded"}

POOLS_TOML = """
dockerjob_pool = "spot-builders"
labels = { pool = "spot-builders", arch = "amd64" }

[[pools]]
name = "spot-builders"
provider = "command"
labels = { pool = "spot-builders", arch = "amd64" }
max = 0
[pools.command]
start = ["false"]
stop = ["true"]
"""


class User:
    """A user of the server, calling it as docker-job's scripts would."""

    def __init__(self, url: str, token: str) -> None:
        self.http = httpx.Client(
            base_url=url, headers={"authorization": f"Bearer {token}"}, timeout=30
        )

    def schedule(self, body: object, **kw: object) -> httpx.Response:
        import json

        return self.http.post("/schedule", content=json.dumps(body), headers=FORM)

    def status(self, job_id: str) -> httpx.Response:
        return self.http.get(f"/status/{job_id}")


@pytest.fixture(scope="module")
def server(
    dockerd: engines.Engine, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """A server whose embedded worker offers the docker-job pool's labels."""
    dockerd.import_image(
        PRINTS_ENV, engines.busybox_rootfs(), None, ["sh", "-c", "echo KEY=$KEY; exit $CODE"]
    )
    home = tmp_path_factory.mktemp("dockerjob")
    config = home / "jobdock.toml"
    config.write_text(POOLS_TOML)
    started = ServerProcess(
        home,
        docker_host=dockerd.url,
        namespace=engines.NAMESPACE,
        tokens="true",
        config=str(config),
    ).start()
    yield started
    started.stop()


@pytest.fixture(scope="module")
def alice(server: ServerProcess) -> User:
    return User(server.url, make_token(server.home, "alice"))


@pytest.fixture(scope="module")
def bob(server: ServerProcess) -> User:
    return User(server.url, make_token(server.home, "bob"))


def _ruby(moment: datetime) -> str:
    """As docker-job's users write times (Ruby's Time#to_s)."""
    return moment.strftime("%Y-%m-%d %H:%M:%S %z")


def _ahead(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


def test_docker_jobs_example_schedules_an_image_that_runs_when_due_and_is_done(
    alice: User,
) -> None:
    due = _ahead(62)
    body = {"docker_image": PRINTS_ENV, "scheduled_for": _ruby(due), "env_vars": {"KEY": "VALUE"}}

    answer = alice.schedule(body)

    assert answer.status_code == 200, answer.text
    job = answer.json()
    assert job["docker_image"] == PRINTS_ENV
    assert job["env_vars"] == {"KEY": "VALUE"}
    assert job["status"] == "SCHEDULED"
    assert job["spot_instance_request_id"] is None
    assert abs(datetime.fromisoformat(job["scheduled_for"]) - due) < timedelta(seconds=1)
    assert alice.status(job["id"]).text == "SCHEDULED"
    listed = [j for j in alice.http.get("/list").json() if j["id"] == job["id"]]
    assert listed and listed[0]["schedule_for"] == job["scheduled_for"]
    assert listed[0]["status"] == "SCHEDULED"

    eventually(lambda: alice.status(job["id"]).text == "DONE", 100, "the job to be DONE")
    assert time.time() >= due.timestamp() - 1
    record = alice.http.get(f"/v1/jobs/{job['id']}").json()
    assert record["spec"]["requires"]["pool"] == "spot-builders"
    assert alice.http.get(f"/v1/jobs/{job['id']}/logs").text == "KEY=VALUE\n"


def test_the_status_is_said_in_docker_jobs_words(alice: User) -> None:
    def submit(spec: dict[str, object]) -> str:
        answer = alice.http.post("/v1/jobs", json=spec)
        assert answer.status_code == 201, answer.text
        return str(answer.json()["id"])

    later = submit({"command": ["true"], "run_at": _ahead(3600).isoformat()})
    running = submit({"command": ["sleep", "60"]})
    done = submit({"command": ["true"]})
    failed = submit({"command": ["false"]})
    image_failed = submit({"image": PRINTS_ENV, "env": {"CODE": "3"}, "pull": "never"})

    assert alice.status(later).text == "SCHEDULED"
    eventually(lambda: alice.status(running).text == "RUNNING", 30, "RUNNING")
    eventually(lambda: alice.status(done).text == "DONE", 30, "DONE")
    eventually(lambda: alice.status(failed).text == "FAILED", 30, "FAILED")
    eventually(lambda: alice.status(image_failed).text == "FAILED", 30, "FAILED (image)")
    assert alice.http.post(f"/v1/jobs/{running}/cancel").status_code < 300
    eventually(lambda: alice.status(running).text == "FAILED", 30, "a cancelled job FAILED")
    assert alice.status(done).headers["content-type"].startswith("text/plain")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"scheduled_for": "10:00"}, "docker_image field cannot be empty"),
        ({"docker_image": "", "scheduled_for": "10:00"}, "docker_image field cannot be empty"),
        ({"docker_image": "redis"}, "scheduled_for field cannot be empty"),
        ({"docker_image": "redis", "scheduled_for": ""}, "scheduled_for field cannot be empty"),
        ({}, "docker_image field cannot be empty"),
    ],
)
def test_a_missing_field_gets_docker_jobs_400(
    alice: User, body: dict[str, str], message: str
) -> None:
    answer = alice.schedule(body)

    assert answer.status_code == 400
    assert answer.json()["message"] == message
    assert answer.json()["error"] == {
        "code": "invalid_request",
        "message": message,
        "field": message.split()[0],
    }


@pytest.mark.parametrize("seconds", [30, -10, -86400])
def test_a_time_less_than_a_minute_ahead_gets_docker_jobs_400(alice: User, seconds: int) -> None:
    before = datetime.now(UTC).replace(microsecond=0)

    answer = alice.schedule({"docker_image": "redis", "scheduled_for": _ruby(_ahead(seconds))})

    assert answer.status_code == 400
    message = answer.json()["message"]
    assert message.startswith("scheduled_for field must be greater than ")
    said = datetime.strptime(message.rsplit(" than ", 1)[1], "%Y-%m-%d %H:%M:%S %z")
    assert before <= said <= datetime.now(UTC)
    assert answer.json()["error"]["code"] == "invalid_request"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"docker_image": "redis", "scheduled_for": "next tuesday"}, "scheduled_for"),
        ({"docker_image": "redis", "scheduled_for": "x" * 65}, "scheduled_for"),
        ({"docker_image": "a" * 513, "scheduled_for": "2099-01-01T00:00:00Z"}, "docker_image"),
        ({"docker_image": "Not An Image!", "scheduled_for": "2099-01-01T00:00:00Z"}, "image"),
        (
            {"docker_image": "redis", "scheduled_for": "2099-01-01", "env_vars": {"K": {"a": 1}}},
            "env_vars.K",
        ),
        (
            {"docker_image": "redis", "scheduled_for": "2099-01-01", "env_vars": {"1BAD": "x"}},
            "env",
        ),
        (
            {
                "docker_image": "redis",
                "scheduled_for": "2099-01-01",
                "env_vars": {f"K{n}": "v" for n in range(1001)},
            },
            "env_vars",
        ),
        ({"docker_image": ["redis"], "scheduled_for": "2099-01-01"}, "docker_image"),
        (["docker_image"], "body"),
    ],
)
def test_bad_input_is_a_400_naming_the_field_never_a_500(
    alice: User, body: object, field: str
) -> None:
    answer = alice.schedule(body)

    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["field"] == field
    assert answer.json()["message"] == answer.json()["error"]["message"]


def test_a_body_that_is_not_json_is_a_400(alice: User) -> None:
    answer = alice.http.post("/schedule", content=b"docker_image=redis", headers=FORM)

    assert answer.status_code == 400
    assert "not valid JSON" in answer.json()["message"]


def test_env_var_values_are_taken_as_text(alice: User) -> None:
    body = {
        "docker_image": PRINTS_ENV,
        "scheduled_for": "2099-01-01T00:00:00Z",
        "env_vars": {"N": 3, "ON": True, "NONE": None, "F": 1.5},
    }

    answer = alice.schedule(body)

    assert answer.status_code == 200, answer.text
    assert answer.json()["env_vars"] == {"N": "3", "ON": "true", "NONE": "", "F": "1.5"}
    assert answer.json()["scheduled_for"] == "2099-01-01T00:00:00Z"


def test_a_user_sees_only_their_own_jobs(alice: User, bob: User) -> None:
    body = {"docker_image": PRINTS_ENV, "scheduled_for": "2099-06-01T10:00:00Z"}
    mine = alice.schedule(body).json()["id"]
    theirs = bob.schedule(body).json()["id"]

    assert mine in {j["id"] for j in alice.http.get("/list").json()}
    assert mine not in {j["id"] for j in bob.http.get("/list").json()}
    assert theirs in {j["id"] for j in bob.http.get("/list").json()}
    for job_id in (mine, "0" * 26):
        answer = bob.status(job_id)
        assert answer.status_code == 404
        assert answer.json()["message"] == f"Job id {job_id} was not found"
        assert answer.json()["error"]["code"] == "not_found"
    long = bob.status("x" * 5000)
    assert long.status_code in (404, 414) and "x" * 201 not in long.text


def test_the_list_holds_only_jobs_scheduled_through_docker_jobs_api(alice: User) -> None:
    other = alice.http.post("/v1/jobs", json={"command": ["true"]}).json()["id"]
    first = alice.schedule({"docker_image": PRINTS_ENV, "scheduled_for": "2099-01-01"}).json()
    second = alice.schedule({"docker_image": PRINTS_ENV, "scheduled_for": "2099-01-02"}).json()

    listed = [j["id"] for j in alice.http.get("/list").json()]

    assert other not in listed
    assert listed.index(second["id"]) < listed.index(first["id"])


def test_without_credentials_the_api_is_refused(server: ServerProcess) -> None:
    for answer in (
        httpx.get(f"{server.url}/list"),
        httpx.post(f"{server.url}/schedule", json={"docker_image": "redis"}),
    ):
        assert answer.status_code == 401
        assert answer.json()["error"]["code"] == "unauthenticated"


def test_without_a_pool_the_jobs_run_on_any_worker_and_the_api_can_be_off(
    tmp_path: Path,
) -> None:
    plain = ServerProcess(tmp_path / "plain").start()
    off = ServerProcess(tmp_path / "off", dockerjob_api="false").start()
    try:
        body = {"docker_image": PRINTS_ENV, "scheduled_for": "2099-01-01T00:00:00Z"}
        made = httpx.post(f"{plain.url}/schedule", json=body)
        assert made.status_code == 200, made.text
        spec = httpx.get(f"{plain.url}/v1/jobs/{made.json()['id']}").json()["spec"]
        assert "pool" not in spec.get("requires", {})
        for answer in (
            httpx.post(f"{off.url}/schedule", json=body),
            httpx.get(f"{off.url}/list"),
            httpx.get(f"{off.url}/status/{made.json()['id']}"),
        ):
            assert answer.status_code == 404
            assert answer.json()["error"]["code"] == "not_found"
    finally:
        plain.stop()
        off.stop()
