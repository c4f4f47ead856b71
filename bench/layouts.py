"""How jobdock's process layouts on one machine compare, side by side.

Run it from the repository root::

    .venv/bin/python bench/layouts.py [--jobs 1500] [--latency-jobs 200] [--rounds 2]
                                      [--layouts embedded,split]

Layouts, each on a fresh SQLite store in a fresh ``JOBDOCK_HOME``:

- ``embedded``: ``jobdock serve`` (API and worker in one process);
- ``split``: ``jobdock serve --no-worker`` and one ``jobdock worker`` on the
  same SQLite file (two processes, two cores);
- ``processes``: ``jobdock serve --worker-processes 1`` (the same two
  processes, the worker started and watched by the server).

For each: ``--jobs`` ``true`` jobs are submitted one ``POST /v1/jobs`` at a
time over one keep-alive connection (as ../shared/bench-peers does), and
end to end is jobs / (the last ``finished_at`` - the first POST); then
``--latency-jobs`` jobs one at a time, 5 ms apart, each waited for, and
submit -> start is ``started_at`` minus the client's clock before its POST.
Layouts alternate round by round, so that a machine's drift hits all alike.
CPU per job is each process's own user+system time over the throughput
phase (the jobs' ``true`` processes not included; embedded: all of it in
the API's process).
Prints one table; a job that did not succeed is listed under it and makes
the exit status 1.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: Each layout: the server's arguments, its separate `jobdock worker`s and
#: its worker processes.
LAYOUTS = {
    "embedded": (["serve"], 0, 0),
    "split": (["serve", "--no-worker"], 1, 0),
    "processes": (["serve", "--worker-processes", "1"], 0, 1),
    "processes-2": (["serve", "--worker-processes", "2"], 0, 2),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Layout:
    def __init__(self, name: str, base: Path) -> None:
        self.name = name
        self.home = base / name
        self.home.mkdir(parents=True)
        self.db = self.home / "jobdock.db"
        self.port = free_port()
        self.procs: list[subprocess.Popen[bytes]] = []

    def env(self, home: Path) -> dict[str, str]:
        return {
            **os.environ,
            "JOBDOCK_HOME": str(home),
            "JOBDOCK_DB": f"sqlite:///{self.db}",
            "JOBDOCK_PORT": str(self.port),
            "JOBDOCK_LOG_LEVEL": "warning",
        }

    def start(self) -> None:
        args, workers, children = LAYOUTS[self.name]
        log = open(self.home / "out.log", "ab")  # noqa: SIM115
        jobdock = [sys.executable, "-m", "jobdock"]
        self.procs.append(
            subprocess.Popen([*jobdock, *args], env=self.env(self.home), stdout=log, stderr=log)
        )
        self.wait_healthy()
        for n in range(workers):
            home = self.home / f"worker-{n}"
            self.procs.append(
                subprocess.Popen([*jobdock, "worker"], env=self.env(home), stdout=log, stderr=log)
            )
        self.wait_workers(max(workers, children, 1))

    def wait_healthy(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise SystemExit(f"{self.name}: the server did not come up")

    def wait_workers(self, count: int) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            alive = self.query("SELECT count(*) FROM workers WHERE stopped_at IS NULL")
            if alive and alive[0][0] >= count:
                return
            time.sleep(0.05)
        raise SystemExit(f"{self.name}: its worker did not register")

    def query(self, sql: str, args: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        try:
            conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=30)
        except sqlite3.OperationalError:
            return []
        try:
            return conn.execute(sql, args).fetchall()
        except sqlite3.OperationalError:
            return []
        finally:
            conn.close()

    def worker_pids(self) -> list[int]:
        """The processes that run the worker, other than the API's."""
        server, *workers = self.procs
        if workers:
            return [w.pid for w in workers]
        try:
            children = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text()
        except FileNotFoundError:
            return []
        return [int(pid) for pid in children.split()]

    def cpu(self) -> tuple[float, float]:
        """CPU seconds so far of the API's process and of the worker's others."""
        return cpu_seconds(self.procs[0].pid), sum(map(cpu_seconds, self.worker_pids()))

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()


def cpu_seconds(pid: int) -> float:
    """User and system CPU of one process (not of its children)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def submit(conn: http.client.HTTPConnection, name: str) -> str:
    body = json.dumps({"command": ["true"], "name": name})
    conn.request("POST", "/v1/jobs", body, {"Content-Type": "application/json"})
    response = conn.getresponse()
    data = response.read()
    if response.status != 201:
        raise SystemExit(f"submit answered {response.status}: {data[:200]!r}")
    return str(json.loads(data)["id"])


def wait_done(layout: Layout, ids: list[str], timeout: float = 300) -> list[tuple[object, ...]]:
    marks = json.dumps(ids)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = layout.query(
            "SELECT id, state, started_at, finished_at FROM jobs"
            " WHERE id IN (SELECT value FROM json_each(?))"
            " AND state IN ('succeeded', 'failed', 'cancelled')",
            (marks,),
        )
        if len(rows) == len(ids):
            return rows
        time.sleep(0.02)
    raise SystemExit(f"{layout.name}: jobs did not finish within {timeout:g} s")


def run_one(name: str, base: Path, jobs: int, latency_jobs: int) -> dict[str, float]:
    layout = Layout(name, base)
    layout.start()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", layout.port, timeout=60)
        for n in range(50):  # warm up
            submit(conn, f"warm-{n}")
        cpu_before = layout.cpu()
        first = time.time()
        ids = [submit(conn, f"job-{n}") for n in range(jobs)]
        submitted = time.time()
        rows = wait_done(layout, ids)
        bad = [r for r in rows if r[1] != "succeeded"]
        if bad:
            raise SystemExit(f"{name}: {len(bad)} jobs did not succeed: {bad[:3]}")
        last = max(float(r[3]) for r in rows)  # type: ignore[arg-type]
        api_cpu, worker_cpu = (b - a for a, b in zip(cpu_before, layout.cpu(), strict=True))
        gaps = []
        for n in range(latency_jobs):
            before = time.time()
            job_id = submit(conn, f"lat-{n}")
            [row] = wait_done(layout, [job_id])
            gaps.append((float(row[2]) - before) * 1000)  # type: ignore[arg-type]
            time.sleep(0.005)
        gaps.sort()
        return {
            "e2e": jobs / (last - first),
            "submit": jobs / (submitted - first),
            "p50": statistics.median(gaps),
            "p99": gaps[min(len(gaps) - 1, int(len(gaps) * 0.99))],
            "api_cpu": api_cpu * 1000 / jobs,
            "worker_cpu": worker_cpu * 1000 / jobs,
        }
    finally:
        layout.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1500)
    parser.add_argument("--latency-jobs", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--layouts", default="embedded,split")
    args = parser.parse_args()
    names = [n for n in args.layouts.split(",") if n]
    for name in names:
        if name not in LAYOUTS:
            raise SystemExit(f"unknown layout {name!r} (known: {', '.join(LAYOUTS)})")
    results: dict[str, list[dict[str, float]]] = {n: [] for n in names}
    with tempfile.TemporaryDirectory(prefix="jobdock-layouts-") as tmp:
        for round_ in range(args.rounds):
            for name in names:
                base = Path(tmp) / f"round-{round_}"
                base.mkdir(exist_ok=True)
                results[name].append(run_one(name, base, args.jobs, args.latency_jobs))
    print(
        "| layout | e2e jobs/s | submits/s while running | p50 ms | p99 ms"
        " | API process CPU ms/job | worker processes CPU ms/job |"
        f"  ({args.jobs} jobs, {args.rounds} rounds)"
    )
    print("|---|---|---|---|---|---|---|")
    keys = ("e2e", "submit", "p50", "p99", "api_cpu", "worker_cpu")
    for name, runs in results.items():
        cells = [
            " / ".join(
                f"{r[key]:,.0f}" if key in ("e2e", "submit") else f"{r[key]:.2f}" for r in runs
            )
            for key in keys
        ]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
