"""How the dashboard's job list holds up with 10,000 jobs in the store.

Run it from the repository root::

    .venv/bin/python bench/bench_dashboard.py [--jobs 10000] [--repeat 30]

It starts its own ``python -m jobdock serve --no-worker`` (so jobs stay
where they are put) on a free port of 127.0.0.1 with a fresh
``JOBDOCK_HOME`` (a new SQLite store), submits ``--jobs`` jobs over HTTP
(labels ``team=t0..t9``, one job in 1,000 also ``rare=yes``) and cancels
every fifth one, so that states differ. Then it times, ``--repeat`` times
each on a keep-alive connection, the requests the list page makes: the
dashboard's HTML, a page of 50 jobs (the first, the last, filtered by state,
by a common and by a rare label, by name) and ``/v1/me``; and, where
Debian's chromium and Playwright are installed, the time from opening
``/ui`` in headless Chromium until the first page of jobs is shown. It
prints one table of medians and 95th percentiles in milliseconds.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-background-networking"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(home: Path, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "JOBDOCK_HOME": str(home),
        "JOBDOCK_PORT": str(port),
        "JOBDOCK_LOG_LEVEL": "warning",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "jobdock", "serve", "--no-worker"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("the server did not start")


def fill(url: str, count: int) -> tuple[float, str]:
    """Submit ``count`` jobs, cancel every fifth; the seconds it took and a job's name."""

    def submit(batch: range) -> None:
        with httpx.Client(base_url=url, timeout=60) as client:
            for n in batch:
                labels = {"team": f"t{n % 10}", **({"rare": "yes"} if n % 1000 == 7 else {})}
                spec = {"command": ["echo", str(n)], "name": f"job-{n}", "labels": labels}
                job = client.post("/v1/jobs", json=spec).raise_for_status().json()
                if n % 5 == 0:
                    client.post(f"/v1/jobs/{job['id']}/cancel").raise_for_status()

    started = time.perf_counter()
    threads = 8
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(submit, [range(i, count, threads) for i in range(threads)]))
    return time.perf_counter() - started, f"job-{count // 2}"


def timed(repeat: int, call: Callable[[], object]) -> list[float]:
    call()  # warm up
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return times


def browser_times(url: str, repeat: int) -> list[float] | str:
    """Milliseconds from opening /ui until the first page of jobs is shown."""
    if not Path(CHROMIUM).exists():
        return "chromium not installed"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return "playwright not installed"
    times = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()
        for n in range(repeat + 1):
            started = time.perf_counter()
            page.goto(url + "/ui")
            page.locator("tr[data-job]").nth(49).wait_for()
            if n:  # the first load warms the browser's caches
                times.append((time.perf_counter() - started) * 1000)
        browser.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="jobdock-bench-ui-") as home:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server = start_server(Path(home), port)
        try:
            fill_seconds, name = fill(url, args.jobs)
            with httpx.Client(base_url=url, timeout=60) as client:
                last = None
                cursor = None
                while True:  # walk to the last page once, to time it
                    params = {"limit": 1000, **({"cursor": cursor} if cursor else {})}
                    page = client.get("/v1/jobs", params=params).json()
                    if not page["next_cursor"]:
                        break
                    last, cursor = cursor, page["next_cursor"]
                rows: list[tuple[str, list[float] | str]] = []
                requests = {
                    "GET /ui (the page's HTML)": ("/ui", {}),
                    "GET /v1/me": ("/v1/me", {}),
                    "jobs: first page of 50": ("/v1/jobs", {"limit": 50}),
                    "jobs: a page near the end": ("/v1/jobs", {"limit": 50, "cursor": last}),
                    "jobs: state=cancelled (1 in 5)": (
                        "/v1/jobs",
                        {"limit": 50, "state": "cancelled"},
                    ),
                    "jobs: label team=t3 (1 in 10)": (
                        "/v1/jobs",
                        {"limit": 50, "label": "team=t3"},
                    ),
                    "jobs: label rare=yes (1 in 1000)": (
                        "/v1/jobs",
                        {"limit": 50, "label": "rare=yes"},
                    ),
                    "jobs: name (one job)": ("/v1/jobs", {"limit": 50, "name": name}),
                }
                for what, (path, params) in requests.items():
                    clean = {k: v for k, v in params.items() if v is not None}
                    rows.append(
                        (
                            what,
                            timed(
                                args.repeat,
                                lambda p=path, q=clean: client.get(p, params=q).raise_for_status(),
                            ),
                        )
                    )
            rows.append(("browser: open /ui until 50 rows shown", browser_times(url, 10)))
        finally:
            server.terminate()
            server.wait(30)
    print(f"jobs in the store: {args.jobs} (filled in {fill_seconds:.1f} s); SQLite; no worker")
    print(f"{'request':<42} {'p50 ms':>8} {'p95 ms':>8} {'n':>4}")
    for what, times in rows:
        if isinstance(times, str):
            print(f"{what:<42} {'-':>8} {'-':>8}    ({times})")
            continue
        p95 = statistics.quantiles(times, n=20)[-1] if len(times) > 1 else times[0]
        print(f"{what:<42} {statistics.median(times):>8.1f} {p95:>8.1f} {len(times):>4}")


if __name__ == "__main__":
    main()
