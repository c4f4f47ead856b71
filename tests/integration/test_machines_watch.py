"""Watching machine pools on a real server (docs/machines.md#watching-machines):
``GET /v1/machines``, ``jobdock machines``, the machine metrics on
``/metrics`` and the dashboard's page.

The server has two ``command`` pools whose scripts would start nothing, and
its autoscaler stands by: the test holds the store's ``autoscaler`` lease,
so that the machines it records through the store's own methods stay as
recorded. One of them has a real agent, with the agent token made for it,
running a job.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from agents import AgentProcess
from jobdock.auth import create_token
from jobdock.machines.lease import AUTOSCALER_LEASE
from jobdock.models.machines import MachineRecord, PoolState
from jobdock.store.sql import SqlStore
from support import ServerProcess, eventually, jobdock, make_token

CONFIG = """\
[[pools]]
name = "gpu"
provider = "command"
labels = { pool = "gpu" }
max = 3
boot_timeout = 120
[pools.command]
start = ["false"]
stop = ["true"]

[[pools]]
name = "cpu"
provider = "command"
[pools.command]
start = ["false"]
stop = ["true"]
"""
NOW = time.time()
HOUR = 3600.0


def machine(machine_id: str, state: str, requested: float, **times: Any) -> MachineRecord:
    fields: dict[str, Any] = {
        "provider_id": f"cmd-{machine_id}",
        "token_id": None,
        "jobs_done": 0,
        "booted_at": None,
        "last_busy_at": None,
        "stopping_at": None,
        "stopped_at": None,
        "error": None,
        "server": "test",
        **times,
    }
    return MachineRecord(id=machine_id, pool="gpu", state=state, requested_at=requested, **fields)  # type: ignore[arg-type]


#: A machine that booted in 30 s and runs the agent below; one that failed
#: an hour ago; one stopped two days ago (past the default ``since``).
FAILED = machine(
    "m-gpu-0002", "failed", NOW - 2 * HOUR, stopped_at=NOW - HOUR, error="never registered"
)
OLD = machine(
    "m-gpu-0003",
    "stopped",
    NOW - 50 * HOUR,
    booted_at=NOW - 50 * HOUR + 20,
    stopped_at=NOW - 49 * HOUR,
    jobs_done=4,
)
POOL = PoolState("gpu", 2, NOW + HOUR, "start failed: exit 1", "start 1: 1 job waits", NOW - 5)


@dataclass
class Watched:
    server: ServerProcess
    admin: str
    user: str
    agent_secret: str
    ready_id: str
    job_id: str

    def get(self, path: str, token: str | None = None, **params: str) -> httpx.Response:
        headers = {"authorization": f"Bearer {token or self.admin}"}
        return httpx.get(self.server.url + path, params=params, headers=headers, timeout=30)

    def cli(self, *args: str, token: str | None = None) -> Any:
        env = {"JOBDOCK_URL": self.server.url, "JOBDOCK_TOKEN": token or self.admin}
        return jobdock("machines", *args, env=env)


async def _record(db: str) -> tuple[str, str]:
    """Hold the autoscaler's lease, record the machines and the pool's
    state; the secret and id of the ready machine's agent token."""
    async with SqlStore(db) as store:
        assert await store.take_lease(AUTOSCALER_LEASE, "the-test", NOW, NOW + 86400)
        made = await create_token(store, "pool-gpu", agent=True, actor="autoscaler")
        ready = machine(
            "m-gpu-0001",
            "ready",
            NOW - 100,
            booted_at=NOW - 70,
            last_busy_at=NOW - 10,
            token_id=made.info.id,
            jobs_done=1,
        )
        for record in (OLD, FAILED, ready):
            await store.add_machine(record)
        await store.record_pool(POOL)
        return made.token, ready.id


@pytest.fixture(scope="module")
def watched(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Watched]:
    home = tmp_path_factory.mktemp("watch")
    db = f"sqlite:///{home}/jobs.db"
    admin = make_token(home, "root", "--admin", "--db", db)
    user = make_token(home, "alice", "--db", db)
    secret, ready_id = asyncio.run(_record(db))
    (home / "jobdock.toml").write_text(CONFIG)
    server = ServerProcess(
        home, db=db, tokens="true", concurrency="0", config=str(home / "jobdock.toml")
    ).start()
    agent = AgentProcess(home / "agent", server.url, secret).launch()
    try:
        answer = httpx.post(
            server.url + "/v1/jobs",
            json={"command": ["sleep", "60"]},
            headers={"authorization": f"Bearer {user}"},
            timeout=30,
        )
        assert answer.status_code == 201, answer.text
        yield Watched(server, admin, user, secret, ready_id, answer.json()["id"])
    finally:
        agent.stop()
        server.stop()


def running_on_ready(watched: Watched) -> dict[str, Any]:
    """The listing, once the agent of the ready machine runs the job."""

    def listed() -> dict[str, Any] | None:
        found: dict[str, Any] = watched.get("/v1/machines").json()
        ready = next(m for m in found["machines"] if m["id"] == watched.ready_id)
        return found if ready["jobs"] == [watched.job_id] else None

    return eventually(listed, 30, "the ready machine's agent to run the job")


def test_the_listing_shows_pools_and_machines_with_their_jobs_and_times(
    watched: Watched,
) -> None:
    found = running_on_ready(watched)

    gpu, cpu = found["pools"]
    assert (gpu["name"], gpu["provider"], gpu["labels"], gpu["max"]) == (
        "gpu",
        "command",
        {"pool": "gpu"},
        3,
    )
    assert gpu["live"] == {"requested": 0, "booting": 0, "ready": 1, "draining": 0}
    assert (gpu["failures"], gpu["last_error"], gpu["last_decision"]) == (
        2,
        "start failed: exit 1",
        "start 1: 1 job waits",
    )
    assert gpu["backoff_until"] is not None and gpu["decided_at"] is not None
    assert cpu["name"] == "cpu" and cpu["live"]["ready"] == 0 and cpu["failures"] == 0
    ids = [m["id"] for m in found["machines"]]
    assert ids == ["m-gpu-0001", "m-gpu-0002"]  # newest first; the old one is past 24h
    ready, failed = found["machines"]
    assert ready["state"] == "ready" and ready["boot_seconds"] == pytest.approx(30, abs=0.01)
    assert ready["machine_seconds"] >= 100 and ready["stopped_at"] is None
    assert failed["error"] == "never registered" and failed["boot_seconds"] is None
    assert failed["machine_seconds"] == pytest.approx(HOUR, abs=0.01)
    assert failed["jobs"] == []


def test_since_reaches_further_back_and_pool_narrows_the_listing(watched: Watched) -> None:
    ids = [m["id"] for m in watched.get("/v1/machines", since="3d").json()["machines"]]
    assert ids == ["m-gpu-0001", "m-gpu-0002", "m-gpu-0003"]
    ids = [m["id"] for m in watched.get("/v1/machines", since="30m").json()["machines"]]
    assert ids == ["m-gpu-0001"]
    cpu = watched.get("/v1/machines", pool="cpu").json()
    assert [p["name"] for p in cpu["pools"]] == ["cpu"] and cpu["machines"] == []


def test_the_agent_token_is_never_shown(watched: Watched) -> None:
    running_on_ready(watched)
    text = watched.get("/v1/machines").text
    assert watched.agent_secret not in text
    assert "token" not in text


@pytest.mark.parametrize(
    ("params", "status", "code", "says"),
    [
        ({"pool": "tpu"}, 404, "not_found", "'tpu'"),
        ({"since": "yesterday"}, 422, "invalid_request", "since"),
        ({"since": "400d"}, 422, "invalid_request", "366d"),
        ({"since": "-1h"}, 422, "invalid_request", "since"),
    ],
)
def test_a_bad_query_is_refused_with_the_error_body(
    watched: Watched, params: dict[str, str], status: int, code: str, says: str
) -> None:
    answer = watched.get("/v1/machines", **params)
    assert answer.status_code == status
    error = answer.json()["error"]
    assert error["code"] == code and says in error["message"]


def test_only_admins_see_machines(watched: Watched) -> None:
    answer = watched.get("/v1/machines", token=watched.user)
    assert answer.status_code == 403
    assert answer.json()["error"]["code"] == "forbidden"
    assert httpx.get(watched.server.url + "/v1/machines", timeout=30).status_code == 401


def metric_samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_count_machines_by_pool_and_state_boot_times_and_machine_seconds(
    watched: Watched,
) -> None:
    running_on_ready(watched)
    found = metric_samples(watched.get("/metrics").text)

    def value(name: str, **labels: str) -> float | None:
        return found.get((name, frozenset(labels.items())))

    assert value("jobdock_machines", pool="gpu", state="ready") == 1
    assert value("jobdock_machines", pool="gpu", state="failed") == 1
    assert value("jobdock_machines", pool="gpu", state="stopped") == 1
    assert value("jobdock_machines", pool="gpu", state="booting") == 0
    assert value("jobdock_machines", pool="cpu", state="ready") == 0
    pools = {dict(labels)["pool"] for name, labels in found if name == "jobdock_machines"}
    assert pools == {"gpu", "cpu"}
    # Two booted: in 20 s (the old one) and in 30 s.
    assert value("jobdock_machine_boot_seconds_count", pool="gpu") == 2
    assert value("jobdock_machine_boot_seconds_sum", pool="gpu") == pytest.approx(50, abs=0.01)
    assert value("jobdock_machine_boot_seconds_bucket", pool="gpu", le="20.0") == 1
    assert value("jobdock_machine_boot_seconds_bucket", pool="gpu", le="30.0") == 2
    assert value("jobdock_machine_boot_seconds_count", pool="cpu") == 0
    held = value("jobdock_machine_seconds_total", pool="gpu")
    assert held is not None and held >= HOUR + HOUR + 100
    assert value("jobdock_machine_seconds_total", pool="cpu") == 0


def test_jobdock_machines_prints_the_pools_then_the_machines(watched: Watched) -> None:
    running_on_ready(watched)
    done = watched.cli()
    assert done.returncode == 0, done.stderr
    pools, machines = done.stdout.split("\n\n")
    header, gpu, cpu = (line.split("\t") for line in pools.splitlines())
    assert header[:3] == ["POOL", "PROVIDER", "LIVE/MIN/MAX"]
    assert gpu[:4] == ["gpu", "command", "1/0/3", "1 ready"]
    assert gpu[4].endswith("(2 failed)") and gpu[6] == "start failed: exit 1"
    assert cpu[:3] == ["cpu", "command", "0/0/1"]
    rows = [line.split("\t") for line in machines.splitlines()]
    assert rows[0] == [
        "MACHINE",
        "POOL",
        "STATE",
        "AGE",
        "JOBS",
        "BOOT",
        "MACHINE TIME",
        "ERROR",
    ]
    ready, failed = rows[1:]
    assert ready[:3] == ["m-gpu-0001", "gpu", "ready"]
    assert ready[4] == watched.job_id and ready[5] == "30s"
    assert failed[2] == "failed" and failed[6] == "60m" and failed[7] == "never registered"


def test_jobdock_machines_json_is_the_apis_answer(watched: Watched) -> None:
    done = watched.cli("-o", "json", "--pool", "gpu", "--since", "3d")
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert [p["name"] for p in found["pools"]] == ["gpu"]
    assert [m["id"] for m in found["machines"]] == ["m-gpu-0001", "m-gpu-0002", "m-gpu-0003"]


@pytest.mark.parametrize(
    ("args", "as_user", "says"),
    [
        (("--pool", "tpu"), False, "no machine pool named 'tpu'"),
        (("--since", "soon"), False, "since"),
        ((), True, "administrator"),
    ],
)
def test_jobdock_machines_fails_with_one_line(
    watched: Watched, args: tuple[str, ...], as_user: bool, says: str
) -> None:
    done = watched.cli(*args, token=watched.user if as_user else None)
    assert done.returncode != 0
    assert done.stdout == ""
    [line] = done.stderr.splitlines()
    assert line.startswith("jobdock: ") and says in line


def test_the_dashboard_serves_the_machines_page(watched: Watched) -> None:
    page = httpx.get(watched.server.url + "/ui/machines", timeout=30)
    assert page.status_code == 200 and "/ui/static/app.js" in page.text
    script = httpx.get(watched.server.url + "/ui/static/machines.js", timeout=30)
    assert script.status_code == 200 and "/v1/machines" in script.text
