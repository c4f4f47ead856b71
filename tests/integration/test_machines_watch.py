"""Watching machine pools on a real server (docs/machines.md#watching-machines):
``GET /v1/machines``, ``jobdock machines``, the machine metrics on
``/metrics`` and the dashboard's page, with the machines of
tests/watched_machines.py (its autoscaler stands by; a real agent runs a job
on the ready machine).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from support import eventually
from watched_machines import HOUR, Watched, watched_site


@pytest.fixture(scope="module")
def watched(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Watched]:
    with watched_site(tmp_path_factory.mktemp("watch")) as site:
        yield site


def running_on_ready(watched: Watched) -> dict[str, Any]:
    """The listing, once the agent of the ready machine runs the job."""

    def listed() -> dict[str, Any] | None:
        found: dict[str, Any] = watched.get("/v1/machines").json()
        ready = next(m for m in found["machines"] if m["id"] == watched.ready_id)
        return found if ready["jobs"] == [watched.job_id] else None

    return eventually(listed, 60, "the ready machine's agent to run the job")


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
