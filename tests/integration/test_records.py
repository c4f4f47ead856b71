"""No one record or value harms anyone else (issue 15), on a real server.

Bad values are refused at submit with a 4xx naming the field, on every
endpoint that takes a job spec; and a record in the store that no longer
loads (written by hand here, as an older jobdock or a bug could have) is
failed and skipped by every reader instead of failing them all.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from jobdock import Client
from pg import PostgresServer
from support import ServerProcess, eventually

# -- bad values: 4xx naming the field, on every endpoint --------------------------------

#: (name, the job spec fields, the field the error must name).
BAD_SPECS: list[tuple[str, dict[str, Any], str]] = [
    ("image-newline", {"image": "busybox\n"}, "image"),
    ("user-newline", {"image": "busybox", "user": "root\n"}, "user"),
    ("label-newline", {"labels": {"team\n": "a"}}, "labels"),
    ("env-newline", {"env": {"PATH\n": "/bin"}}, "env"),
    ("cache-newline", {"image": "busybox", "caches": [{"name": "c\n", "path": "/c"}]}, "caches"),
    ("secret-newline", {"secrets": [{"name": "pw\n", "env": "PW"}]}, "secrets"),
    ("cwd-nul", {"cwd": "/tmp\u0000x"}, "cwd"),
    (
        "rootfs-nul",
        {"isolation": {"filesystem": {"rootfs": "/srv\u0000x"}}},
        "isolation.filesystem.rootfs",
    ),
    ("name-nul", {"name": "a\u0000b"}, "name"),
    ("label-value-nul", {"labels": {"team": "a\u0000"}}, "labels"),
    ("cpus-huge", {"resources": {"cpus": 1e308}}, "resources.cpus"),
    ("memory-huge", {"resources": {"memory": "99999999999999999999t"}}, "resources.memory"),
    ("memory-object", {"resources": {"memory": {}}}, "resources.memory"),
    ("pids-huge", {"resources": {"pids": 10**30}}, "resources.pids"),
    ("io-huge", {"resources": {"io_read_bps": 10**30}}, "resources.io_read_bps"),
    ("backoff-huge", {"retry": {"backoff": {"initial": 1e308, "max": 1e308}}}, "retry.backoff"),
    ("attempts-huge", {"retry": {"max_attempts": 10**30}}, "retry.max_attempts"),
    ("concurrency-limit-huge", {"concurrency_limit": 10**30}, "concurrency_limit"),
    ("priority-huge", {"priority": 10**30}, "priority"),
    ("timeout-list", {"timeout": []}, "timeout"),
    ("timeout-object", {"timeout": {}}, "timeout"),
    ("timeout-huge", {"timeout": 1e308}, "timeout"),
    ("timeout-huge-int", {"timeout": 10**400}, "timeout"),
    ("kill-grace-null", {"kill_grace": None}, "kill_grace"),
    ("kill-grace-list", {"kill_grace": []}, "kill_grace"),
    ("kill-grace-huge", {"kill_grace": 1e9}, "kill_grace"),
    ("queue-timeout-huge", {"queue_timeout": "99999999999d"}, "queue_timeout"),
    ("total-timeout-object", {"total_timeout": {}}, "total_timeout"),
    ("keep-for-huge", {"keep_for": 1e308}, "keep_for"),
    ("output-limit-object", {"output_limit": {}}, "output_limit"),
    ("output-limit-null-list", {"output_limit": [None]}, "output_limit"),
    ("output-limit-huge", {"output_limit": 1e300}, "output_limit"),
]


def _job(fields: dict[str, Any]) -> dict[str, Any]:
    return {"command": ["true"], **fields}


#: endpoint -> (how a job spec is put in its body, the prefix of the field).
ENDPOINTS = {
    "jobs": (lambda spec: spec, ""),
    "run": (lambda spec: spec, ""),
    "schedules": (lambda spec: {"name": "bad", "cron": "* * * * *", "job": spec}, "job."),
    "workflows": (
        lambda spec: {"name": "bad", "steps": [{"name": "a", "job": spec}]},
        "steps.0.job.",
    ),
}


def assert_refused(response: httpx.Response, field: str) -> None:
    """A 4xx in the one error format, naming ``field`` (or a part within it)."""
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    error = response.json()["error"]
    assert error.get("field", "").startswith(field), error
    assert field in error["message"], error


@pytest.mark.parametrize("endpoint", sorted(ENDPOINTS))
@pytest.mark.parametrize(
    ("fields", "field"), [c[1:] for c in BAD_SPECS], ids=[c[0] for c in BAD_SPECS]
)
def test_a_bad_value_is_refused_naming_its_field(
    server: ServerProcess, endpoint: str, fields: dict[str, Any], field: str
) -> None:
    wrap, prefix = ENDPOINTS[endpoint]

    response = httpx.post(f"{server.url}/v1/{endpoint}", json=wrap(_job(fields)), timeout=30)

    assert_refused(response, prefix + field)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"cron": "0 0 30 2 *"}, "cron"),
        ({"cron": "0 0 31 4,6,9,11 *"}, "cron"),
        ({"tz": "A" * 10_000}, "tz"),
        ({"tz": "Nowhere/" + "x" * 40}, "tz"),
        ({"cron": "* " * 5000}, "cron"),
        ({"name": "nightly\n"}, "name"),
    ],
    ids=["february-30", "april-31", "tz-10000", "tz-unknown", "cron-long", "name-newline"],
)
def test_a_schedule_that_cannot_fire_is_refused_naming_its_field(
    server: ServerProcess, body: dict[str, Any], field: str
) -> None:
    schedule = {"name": "nightly", "cron": "0 3 * * *", "job": {"command": ["true"]}, **body}

    response = httpx.post(f"{server.url}/v1/schedules", json=schedule, timeout=30)

    assert_refused(response, field)
    if field == "cron" and "30 2" in body["cron"]:
        assert "never fires" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"expires": 1e308}, "expires"),
        ({"expires": []}, "expires"),
        ({"expires": {}}, "expires"),
        ({"expires": "99999999999999d"}, "expires"),
        ({"user": "bob\n"}, "user"),
    ],
    ids=["expires-huge", "expires-list", "expires-object", "expires-days", "user-newline"],
)
def test_a_bad_token_request_is_refused_naming_its_field(
    server: ServerProcess, body: dict[str, Any], field: str
) -> None:
    response = httpx.post(f"{server.url}/v1/tokens", json={"user": "bob", **body}, timeout=30)

    assert_refused(response, field)


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/v1/jobs?cursor=" + "9" * 30, "cursor"),
        ("/v1/workflows?cursor=" + "9" * 30, "cursor"),
        ("/v1/audit?cursor=" + "9" * 30, "cursor"),
        ("/v1/jobs/0123456789abcdef/logs?offset=" + "9" * 30, "offset"),
        ("/v1/jobs/0123456789abcdef/logs?offset=" + str(2**63), "offset"),
        ("/v1/jobs/0123456789abcdef/logs?attempt=" + "9" * 30, "attempt"),
    ],
    ids=[
        "jobs-cursor",
        "workflows-cursor",
        "audit-cursor",
        "logs-offset",
        "logs-offset-2^63",
        "logs-attempt",
    ],
)
def test_a_query_number_out_of_range_is_refused_naming_it(
    server: ServerProcess, path: str, field: str
) -> None:
    response = httpx.get(f"{server.url}{path}", timeout=30)

    assert_refused(response, field)


def test_a_huge_log_offset_within_range_reads_nothing(server: ServerProcess) -> None:
    job = httpx.post(f"{server.url}/v1/run", json={"command": ["echo", "hi"]}, timeout=60).json()

    response = httpx.get(f"{server.url}/v1/jobs/{job['job']['id']}/logs?offset={2**62}", timeout=30)

    assert response.status_code == 200 and response.content == b""


# -- records that no longer load ----------------------------------------------------------


class Store:
    """The server's SQLite file, written to as a hand (or an older jobdock) would."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def execute(self, sql: str, *params: Any) -> None:
        with sqlite3.connect(self.path, timeout=30) as conn:
            conn.execute(sql, params)


@pytest.fixture(scope="module")
def records_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server of this module's own: its store gets records that do not load."""
    server = ServerProcess(tmp_path_factory.mktemp("records"))
    server.launch().wait_healthy(timeout=120)
    yield server
    server.stop()


@pytest.fixture
def store(records_server: ServerProcess) -> Store:
    return Store(records_server.home / "jobdock.db")


def submit(server: ServerProcess, **fields: Any) -> dict[str, Any]:
    response = httpx.post(f"{server.url}/v1/jobs", json=_job(fields), timeout=30)
    assert response.status_code == 201, response.text
    job: dict[str, Any] = response.json()
    return job


def get_job(server: ServerProcess, job_id: str) -> dict[str, Any]:
    response = httpx.get(f"{server.url}/v1/jobs/{job_id}", timeout=30)
    assert response.status_code == 200, response.text
    job: dict[str, Any] = response.json()
    return job


def later() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))


#: Specs that passed an older jobdock's checks and fail today's.
POISON = {
    "image-newline": '{"image": "busybox\\n:latest"}',
    "cwd-nul": '{"command": ["true"], "cwd": "/tmp\\u0000x"}',
    "cpus-huge": '{"command": ["true"], "resources": {"cpus": 1e308}}',
    "not-json": "{",
}


@pytest.mark.parametrize("spec", sorted(POISON))
def test_a_job_whose_record_does_not_load_is_failed_and_blocks_no_one(
    records_server: ServerProcess, store: Store, spec: str
) -> None:
    server = records_server
    bad = submit(server, run_at=later())
    store.execute("UPDATE jobs SET spec = ? WHERE id = ?", POISON[spec], bad["id"])

    # While it waits (and is the newest job), every reader still answers.
    assert get_job(server, bad["id"])["id"] == bad["id"]
    listed = httpx.get(f"{server.url}/v1/jobs", timeout=30)
    assert listed.status_code == 200 and listed.json()["jobs"][0]["id"] == bad["id"]
    assert httpx.get(f"{server.url}/healthz", timeout=30).status_code == 200

    # Due now: the claim fails it, saying why, and goes on to other jobs.
    store.execute("UPDATE jobs SET not_before = 0 WHERE id = ?", bad["id"])
    good = submit(server, command=["echo", "still works"])
    failed = eventually(
        lambda: (job := get_job(server, bad["id"]))["state"] == "failed" and job,
        timeout=20,
        what="the unloadable job to fail",
    )
    assert failed["reason"] == "invalid_record"
    assert "cannot be loaded" in failed["message"]
    done = eventually(
        lambda: (job := get_job(server, good["id"]))["state"] == "succeeded" and job,
        timeout=20,
        what="the next job to run",
    )
    assert done["exit_code"] == 0


def test_a_job_whose_record_does_not_load_can_still_be_cancelled(
    records_server: ServerProcess, store: Store
) -> None:
    server = records_server
    bad = submit(server, run_at=later())
    store.execute("UPDATE jobs SET spec = ? WHERE id = ?", POISON["image-newline"], bad["id"])

    # The Python client (and so the CLI) reads it too.
    with Client(server.url) as client:
        assert bad["id"] in [job.id for job in client.list().jobs]
        assert "cannot be loaded" in (client.get(bad["id"]).message or "")

    response = httpx.post(f"{server.url}/v1/jobs/{bad['id']}/cancel", timeout=30)

    assert response.status_code == 200, response.text
    assert get_job(server, bad["id"])["state"] == "cancelled"


def test_a_schedule_whose_record_does_not_load_is_paused_and_the_others_fire(
    records_server: ServerProcess, store: Store
) -> None:
    server = records_server
    for name in ("broken-every-second", "fine-every-second"):
        schedule = {"name": name, "cron": "* * * * * *", "job": {"command": ["true"]}}
        response = httpx.post(f"{server.url}/v1/schedules", json=schedule, timeout=30)
        assert response.status_code == 201, response.text
    store.execute(
        "UPDATE schedules SET spec = ? WHERE name = ?",
        POISON["image-newline"],
        "broken-every-second",
    )

    def fired() -> bool:
        jobs = httpx.get(
            f"{server.url}/v1/jobs",
            params={"label": "jobdock.schedule=fine-every-second"},
            timeout=30,
        ).json()["jobs"]
        return len(jobs) >= 2

    eventually(fired, timeout=20, what="the good schedule to go on firing")
    listed = httpx.get(f"{server.url}/v1/schedules", timeout=30)
    assert listed.status_code == 200, listed.text
    broken = {s["name"]: s for s in listed.json()["schedules"]}["broken-every-second"]
    assert broken["paused"] is True
    with Client(server.url) as client:
        assert "broken-every-second" in [schedule.name for schedule in client.schedules()]
    response = httpx.delete(f"{server.url}/v1/schedules/broken-every-second", timeout=30)
    assert response.status_code == 204
    httpx.delete(f"{server.url}/v1/schedules/fine-every-second", timeout=30)


# -- cancel always ends a job ---------------------------------------------------------------


def test_cancel_ends_a_running_job_that_its_worker_does_not_run(
    records_server: ServerProcess, store: Store
) -> None:
    server = records_server
    # A job no worker can claim, then made to look claimed by the live
    # worker (as a failed attempt task left it): the worker does not run it.
    job = submit(server, requires={"jobdock.test/nowhere": "yes"})
    [worker] = [
        w
        for w in httpx.get(f"{server.url}/v1/workers", timeout=30).json()["workers"]
        if w["state"] == "alive"
    ]
    store.execute(
        "UPDATE jobs SET state = 'running', attempt = 1, worker_id = ?, lease_expires_at = ?"
        " WHERE id = ?",
        worker["id"],
        time.time() + 2,
        job["id"],
    )
    store.execute(
        "INSERT INTO attempts (job_id, number, worker_id, host, stdout_bytes, stderr_bytes)"
        " VALUES (?, 1, ?, 'here', 0, 0)",
        job["id"],
        worker["id"],
    )

    response = httpx.post(f"{server.url}/v1/jobs/{job['id']}/cancel", timeout=30)
    assert response.status_code == 202, response.text

    ended = eventually(
        lambda: (got := get_job(server, job["id"]))["state"] != "running" and got,
        timeout=20,
        what="the cancelled job to end",
    )
    assert ended["state"] == "cancelled"


# -- on PostgreSQL ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pg_url_of_module(postgres: PostgresServer) -> Iterator[str]:
    """A new PostgreSQL database for this module's tests."""
    name = postgres.create_database()
    yield postgres.url(name)
    postgres.drop_database(name)


@pytest.fixture(scope="module")
def pg_server(
    tmp_path_factory: pytest.TempPathFactory, pg_url_of_module: str
) -> Iterator[ServerProcess]:
    """A server on that database, with no worker."""
    home = tmp_path_factory.mktemp("records-pg")
    server = ServerProcess(home, args=["--no-worker"], db=pg_url_of_module)
    server.launch().wait_healthy(timeout=120)
    yield server
    server.stop()


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/v1/jobs/ab%00cd", "path"),
        ("/v1/jobs/ab%00cd/cancel", "path"),
        ("/v1/schedules/a%00b", "path"),
        ("/v1/jobs?name=a%00b", "name"),
        ("/v1/jobs?owner=%00", "owner"),
        ("/v1/jobs?label=team%3Da%00", "label"),
    ],
)
def test_a_nul_byte_in_a_path_or_query_is_refused_naming_it(
    pg_server: ServerProcess, path: str, field: str
) -> None:
    method = "POST" if path.endswith("/cancel") else "GET"

    response = httpx.request(method, f"{pg_server.url}{path}", timeout=30)

    assert_refused(response, field)


def test_a_job_record_that_does_not_load_breaks_no_reader_on_postgresql(
    pg_server: ServerProcess, pg_url_of_module: str
) -> None:
    import psycopg

    bad = submit(pg_server)
    with psycopg.connect(
        pg_url_of_module.replace("postgresql+psycopg://", "postgresql://")
    ) as conn:
        conn.execute(
            "UPDATE jobs SET spec = %s WHERE id = %s", (POISON["image-newline"], bad["id"])
        )

    assert get_job(pg_server, bad["id"])["message"].startswith("the stored job cannot be loaded")
    assert httpx.get(f"{pg_server.url}/v1/jobs", timeout=30).status_code == 200
    assert httpx.get(f"{pg_server.url}/healthz", timeout=30).status_code == 200
    cancel = httpx.post(f"{pg_server.url}/v1/jobs/{bad['id']}/cancel", timeout=30)
    assert cancel.status_code == 200 and cancel.json()["state"] == "cancelled"
