"""Benchmark of ``jobdock agent``: agents next to the embedded worker, on one
real server on SQLite (docs/agents.md).

Run it from the repository root::

    .venv/bin/python bench/agents.py [--jobs 2000] [--in-flight 16] [--log-mb 200]

Every measurement gets a fresh ``JOBDOCK_HOME`` and its own ``jobdock serve``
on a free port of 127.0.0.1 (no authentication: the agents and the client
need no token), with default lease and heartbeat (10 s and 3 s). What is
measured, in one run:

(a) end-to-end throughput of ``--jobs`` jobs running ``true``, submitted one
    per request with ``--in-flight`` requests in flight, through: the
    embedded worker (concurrency 64); one agent; two agents (each
    concurrency 64, the server's embedded worker at concurrency 0). End to
    end is jobs / (the latest ``finished_at`` - the first POST), read from
    the server's SQLite file once every job is terminal; all must succeed.
    Then, in the same run, two database workers on PostgreSQL (``jobdock
    serve --no-worker`` and two ``jobdock worker``, measured as
    bench/bench_workers.py measures them; ``--db`` names the PostgreSQL,
    else one of its own is started), the row agents are compared with.
(b) log follow: one job on an agent writes ``--log-mb`` MiB of zeros while
    a client follows it (``GET /v1/jobs/ID/logs?follow=true``); MB/s is bytes
    received over the time from submit to the end of the stream.
(c) takeover: two agents, one ``sleep`` job; the agent running it is
    killed with SIGKILL; the time from just before the kill to the
    ``started_at`` of the job's second attempt.

Problems (jobs that did not succeed, missing log bytes) are listed under the
table and make the exit status 1; a missed target does not.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

STARTUP_SECONDS = 60.0


sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_core import Report, conclude, free_port  # noqa: E402
from bench_workers import Databases, bench_throughput, wait_for  # noqa: E402


class Site:
    """A server and its agents, in a fresh home; stopped with SIGTERM."""

    def __init__(self, base: Path, concurrency: int) -> None:
        self.base = base
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "JOBDOCK_LOG_LEVEL": "warning"}
        self.db_path = base / "server" / "jobdock.db"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.agent_logs: dict[int, Path] = {}
        self.server = self._spawn(
            "server",
            ["serve", "--port", str(self.port), "--concurrency", str(concurrency)],
            JOBDOCK_HOME=str(base / "server"),
        )
        wait_for(self._healthy, STARTUP_SECONDS, "the server")

    def _spawn(self, name: str, args: list[str], **env: str) -> subprocess.Popen[bytes]:
        (self.base / name).mkdir(parents=True, exist_ok=True)
        with (self.base / name / "output.log").open("ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "jobdock", *args],
                env={**self.env, **env},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.procs.append(proc)
        return proc

    def _healthy(self) -> bool:
        try:
            return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def agent(self, concurrency: int = 64) -> subprocess.Popen[bytes]:
        name = f"agent-{len(self.procs)}"
        args = ["agent", "--server", self.url, "--concurrency", str(concurrency)]
        proc = self._spawn(name, [*args, "--log-level", "info"], JOBDOCK_HOME=str(self.base / name))
        self.agent_logs[proc.pid] = self.base / name / "output.log"
        return proc

    def worker_id(self, proc: subprocess.Popen[bytes]) -> str | None:
        """The worker id an agent started as (from its log)."""
        found = re.search(r"worker (\S+) started", self.agent_logs[proc.pid].read_text())
        return found.group(1) if found else None

    def agents_ready(self, count: int) -> None:
        def listed() -> bool:
            workers = httpx.get(f"{self.url}/v1/workers").json()["workers"]
            alive = [w for w in workers if w["id"].startswith("agent-") and w["state"] == "alive"]
            return len(alive) >= count

        wait_for(listed, STARTUP_SECONDS, f"{count} agents")

    def db(self) -> sqlite3.Connection:
        return sqlite3.connect(f"{self.db_path.as_uri()}?mode=ro", uri=True, timeout=10)

    def close(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in reversed(self.procs):
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def _post_all(port: int, count: int, in_flight: int) -> None:
    body = json.dumps({"command": ["true"]}).encode()
    request = (
        f"POST /v1/jobs HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    ).encode() + body
    left = iter(range(count))

    async def connection() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in left:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length")
            )
            await reader.readexactly(length)
        writer.close()

    await asyncio.gather(*(connection() for _ in range(in_flight)))


def throughput(site: Site, jobs: int, in_flight: int, what: str, report: Report) -> None:
    started = time.time()
    asyncio.run(_post_all(site.port, jobs, in_flight))

    def done() -> tuple[int, int, float] | None:
        with site.db() as db:
            row = db.execute(
                "SELECT count(*), sum(state = 'succeeded'), max(finished_at) FROM jobs "
                "WHERE state IN ('succeeded', 'failed', 'cancelled')"
            ).fetchone()
        return (row[0], row[1], row[2]) if row[0] >= jobs else None

    total, succeeded, last = wait_for(done, 600, f"{jobs} jobs")
    if succeeded != total:
        report.problems.append(f"{what}: {total - succeeded} of {total} jobs did not succeed")
    report.add(f"throughput, {what} (jobs/s)", f"{jobs / (last - started):.0f}")


def log_follow(site: Site, size_mb: int, report: Report) -> None:
    size = size_mb << 20
    spec = {"command": ["head", "-c", str(size), "/dev/zero"]}
    started = time.monotonic()
    job_id = httpx.post(f"{site.url}/v1/jobs", json=spec).json()["id"]
    received = 0
    with httpx.stream(
        "GET",
        f"{site.url}/v1/jobs/{job_id}/logs",
        params={"stream": "stdout", "follow": "true"},
        timeout=120,
    ) as answer:
        for piece in answer.iter_raw():
            received += len(piece)
    seconds = time.monotonic() - started
    if received != size:
        report.problems.append(f"log follow: {received} bytes of {size}")
    report.add("log follow from an agent (MB/s)", f"{size_mb / seconds:.0f}", ">= 100")


def takeover(site: Site, report: Report) -> None:
    agents = [site.agent(), site.agent()]
    site.agents_ready(2)
    job_id = httpx.post(f"{site.url}/v1/jobs", json={"command": ["sleep", "60"]}).json()["id"]

    def running_on() -> str | None:
        job = httpx.get(f"{site.url}/v1/jobs/{job_id}").json()
        return job["attempts"][-1]["worker"] if job["state"] == "running" else None

    worker = wait_for(running_on, 30, "the job to run")
    victim = next(agent for agent in agents if site.worker_id(agent) == worker)
    killed_at = time.time()
    victim.kill()

    def second_started() -> float | None:
        job = httpx.get(f"{site.url}/v1/jobs/{job_id}").json()
        attempts = job["attempts"]
        if len(attempts) >= 2 and attempts[-1]["started_at"]:
            return dt.datetime.fromisoformat(attempts[-1]["started_at"]).timestamp()
        return None

    second = wait_for(second_started, 60, "the second attempt")
    report.add("takeover after kill -9 (s)", f"{max(0.0, second - killed_at):.1f}", "< 15")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--in-flight", type=int, default=16)
    parser.add_argument("--log-mb", type=int, default=200)
    parser.add_argument(
        "--db", default=None, help="PostgreSQL for the database workers (default: its own)"
    )
    args = parser.parse_args(argv)
    report = Report()
    with tempfile.TemporaryDirectory(prefix="jobdock-bench-agents-") as tmp:
        base = Path(tmp)
        runs: list[tuple[str, int, int]] = [
            ("embedded worker", 64, 0),
            ("1 agent", 0, 1),
            ("2 agents", 0, 2),
        ]
        for what, embedded, agents in runs:
            site = Site(base / what.replace(" ", "-"), embedded)
            try:
                for _ in range(agents):
                    site.agent()
                site.agents_ready(agents)
                throughput(site, args.jobs, args.in_flight, what, report)
                if what == "1 agent":
                    log_follow(site, args.log_mb, report)
            finally:
                site.close()
        databases = Databases(args.db)
        try:
            bench_throughput(databases, 2, args.jobs, args.in_flight, report)
        finally:
            databases.close()
        site = Site(base / "takeover", 0)
        try:
            takeover(site, report)
        finally:
            site.close()
    cores = len(os.sched_getaffinity(0))
    title = (
        f"jobdock agents benchmark  ({args.jobs} jobs, {args.in_flight} in flight, "
        f"{args.log_mb} MiB log; {cores} cores)"
    )
    return conclude(title, report)


if __name__ == "__main__":
    sys.exit(main())
