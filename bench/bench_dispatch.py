"""Cost of dispatch templates and of a /metrics scrape, on a real server.

Run it from the repository root::

    .venv/bin/python bench/bench_dispatch.py [--requests 500] [--store-jobs 100000]

(a) It starts ``jobdock serve --no-worker`` (so nothing runs the jobs and
    the timings are the API's own) with one template, then sends
    ``--requests`` requests one at a time on a keep-alive connection to each
    of ``POST /v1/jobs`` (a spec), ``POST /v1/dispatch/echo`` (a body the
    template turns into the same spec) and ``POST /v1/templates/echo/test``
    (the template alone, nothing stored), and reports each one's round trip
    (p50, p90, p99). The difference of the first two is what a template adds
    to a submit.
(b) It then fills the store to ``--store-jobs`` finished jobs (rows written
    straight into its SQLite file, each with an attempt) and times
    ``GET /metrics`` (p50 of 20 scrapes): the aggregate queries over the
    store are the cost of a scrape.
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
from support import ServerProcess

SPEC = {"command": ["echo", "hi"], "labels": {"team": "a"}}
TEMPLATE = '{command: ["echo", .msg], labels: {team: .team}}'


def timings(client: httpx.Client, path: str, body: object, requests: int) -> list[float]:
    for _ in range(20):
        client.post(path, json=body)
    found = []
    for _ in range(requests):
        start = time.perf_counter()
        response = client.post(path, json=body)
        found.append(time.perf_counter() - start)
        assert response.status_code in (200, 201), response.text
    return found


def quantiles(values: list[float]) -> str:
    cuts = statistics.quantiles(values, n=100)
    return "  ".join(f"{cuts[i] * 1000:7.2f}" for i in (49, 89, 98))


def fill(db: Path, count: int) -> None:
    """``count`` finished jobs with one attempt each, as a worker leaves them."""
    conn = sqlite3.connect(db)
    now = time.time()
    jobs, attempts = [], []
    for n in range(count):
        job_id = f"bench{n:011d}"
        created = now - random.uniform(60, 86400)
        started = created + random.expovariate(10)
        finished = started + random.expovariate(1)
        state = "succeeded" if n % 10 else "failed"
        labels = json.dumps({"team": random.choice("abc")})
        spec = json.dumps(SPEC)
        jobs.append((job_id, state, spec, labels, created, started, finished, "exited"))
        attempts.append((job_id, started, finished, "exited"))
    conn.executemany(
        "INSERT INTO jobs (id, state, spec, labels, stdin_bytes, on_worker_lost, created_at,"
        " started_at, finished_at, reason, attempt, cancel_requested, lost_count, owner,"
        " priority, failures) VALUES (?, ?, ?, ?, 0, 'requeue', ?, ?, ?, ?, 1, 0, 0,"
        " 'anonymous', 0, 0)",
        [(j, s, sp, lb, c, st, f, r) for j, s, sp, lb, c, st, f, r in jobs],
    )
    conn.executemany(
        "INSERT INTO attempts (job_id, number, started_at, finished_at, reason,"
        " stdout_bytes, stderr_bytes) VALUES (?, 1, ?, ?, ?, 0, 0)",
        attempts,
    )
    conn.commit()
    conn.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--store-jobs", type=int, default=100_000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        templates = home / "templates"
        templates.mkdir()
        (templates / "echo.jq").write_text(TEMPLATE)
        server = ServerProcess(
            home,
            args=("--no-worker",),
            dispatch_templates_dir=str(templates),
            metrics_job_labels='["team"]',
        ).start()
        try:
            rows = []
            with httpx.Client(base_url=server.url, timeout=60) as client:
                body = {"msg": "hi", "team": "a"}
                for what, path, payload in (
                    ("POST /v1/jobs", "/v1/jobs", SPEC),
                    ("POST /v1/dispatch/echo", "/v1/dispatch/echo", body),
                    ("POST /v1/templates/echo/test", "/v1/templates/echo/test", {"body": body}),
                ):
                    rows.append((what, quantiles(timings(client, path, payload, args.requests))))
                fill(home / "jobdock.db", args.store_jobs)
                scrapes = []
                for _ in range(20):
                    start = time.perf_counter()
                    response = client.get("/metrics")
                    scrapes.append(time.perf_counter() - start)
                    assert response.status_code == 200
            scrape = statistics.median(scrapes) * 1000
        finally:
            server.stop()
    print(f"{'request':32}  {'p50 ms':>7}  {'p90 ms':>7}  {'p99 ms':>7}")
    for what, cuts in rows:
        print(f"{what:32}  {cuts}")
    print(f"GET /metrics, {args.store_jobs} jobs in the store: p50 {scrape:.1f} ms")


if __name__ == "__main__":
    main()
