"""GET /metrics (docs/metrics.md) against a real server: values match what
was done, survive a restart, promtool accepts them, and who may read them."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from test_auth import make_token

from jobdock import Client
from support import ServerProcess, jobdock


def scrape(server: ServerProcess, **headers: str) -> str:
    response = httpx.get(server.url + "/metrics", headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    return response.text


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(text: str, name: str, **labels: str) -> float:
    return samples(text).get((name, frozenset(labels.items())), 0.0)


def promtool_check(text: str) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is required (Debian's prometheus package; scripts/test installs it)")
    done = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr


def run_five_jobs_two_failing(server: ServerProcess) -> None:
    with Client(server.url) as client:
        jobs = [
            client.submit({"command": [command], "labels": {"team": "a"}})
            for command in ("true", "true", "false", "true", "false")
        ]
        for job in jobs:
            client.wait(job.id, timeout=60)


def test_metrics_count_what_was_done_across_a_restart(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, metrics_job_labels='["team"]').start()
    try:
        run_five_jobs_two_failing(server)
        text = scrape(server)
        promtool_check(text)
        team = {"runtime": "process", "label_team": "a"}
        assert value(text, "jobdock_jobs_submitted_total", **team) == 5
        assert value(text, "jobdock_jobs_started_total", **team) == 5
        finished = "jobdock_jobs_finished_total"
        assert value(text, finished, state="succeeded", reason="exited", **team) == 3
        assert value(text, finished, state="failed", reason="exited", **team) == 2
        assert value(text, "jobdock_jobs", state="failed", **team) == 2
        assert value(text, "jobdock_jobs", state="running", **team) == 0
        assert value(text, "jobdock_attempts_total", reason="exited") == 5
        assert value(text, "jobdock_job_retries_total") == 0
        assert value(text, "jobdock_job_queue_wait_seconds_count") == 5
        assert value(text, "jobdock_job_run_duration_seconds_count") == 5
        assert value(text, "jobdock_workers", state="alive") == 1
        submits = value(
            text, "jobdock_http_requests_total", method="POST", route="/v1/jobs", status="201"
        )
        assert submits == 5
        assert (
            value(
                text, "jobdock_http_request_duration_seconds_count", method="POST", route="/v1/jobs"
            )
            == 5
        )

        openmetrics = httpx.get(
            server.url + "/metrics",
            headers={"accept": "application/openmetrics-text; version=1.0.0"},
            timeout=30,
        )
        assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")
        assert openmetrics.text.endswith("# EOF\n")

        server.stop()
        server.start()
        text = scrape(server)
        promtool_check(text)
        assert value(text, "jobdock_jobs_submitted_total", **team) == 5
        assert value(text, finished, state="failed", reason="exited", **team) == 2
    finally:
        server.stop()


def test_pruning_jobs_lowers_the_jobs_gauge_and_no_counter(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, metrics_job_labels='["team"]').start()
    try:
        run_five_jobs_two_failing(server)
        before = samples(scrape(server))

        pruned = jobdock("prune", "--older-than", "0s", "--url", server.url)
        assert pruned.returncode == 0, pruned.stderr
        assert pruned.stdout.startswith("deleted 5 ")
        text = scrape(server)
        promtool_check(text)

        after = samples(text)
        team = {"runtime": "process", "label_team": "a"}
        assert value(text, "jobdock_jobs", state="succeeded", **team) == 0
        assert value(text, "jobdock_jobs", state="failed", **team) == 0
        job_counters = {
            key: count
            for key, count in before.items()
            if key[0].startswith(("jobdock_job", "jobdock_attempts"))
            and key[0] != "jobdock_jobs"
            and not key[0].endswith("_created")
        }
        assert (
            value(text, "jobdock_jobs_finished_total", state="failed", reason="exited", **team) == 2
        )
        assert job_counters == {key: after.get(key) for key in job_counters}
    finally:
        server.stop()


def test_with_tokens_metrics_answer_admins_and_the_metrics_token(tmp_path: Path) -> None:
    alice = make_token(tmp_path, "alice")
    root = make_token(tmp_path, "root", "--admin")
    server = ServerProcess(tmp_path, args=("--tokens",), metrics_token="scrape-me").start()
    try:
        get = lambda token: httpx.get(  # noqa: E731
            server.url + "/metrics",
            headers={"authorization": f"Bearer {token}"} if token else {},
            timeout=30,
        )
        assert get(None).status_code == 401
        assert get("wrong").status_code == 401
        assert get(alice).status_code == 403
        assert get(root).status_code == 200
        assert get("scrape-me").status_code == 200
        # The metrics token is no API token.
        assert (
            httpx.get(
                server.url + "/v1/jobs", headers={"authorization": "Bearer scrape-me"}, timeout=30
            ).status_code
            == 401
        )
    finally:
        server.stop()
