"""Core benchmark of a real jobdock server: latency, throughput and log streaming.

Run it from the repository root::

    .venv/bin/python bench/bench_core.py [--latency-jobs 500] [--jobs 2000]
                                         [--log-mb 200] [--concurrency-clients 16]
                                         [--tokens]

It starts its own server (``python -m jobdock serve``) on a free port of
127.0.0.1 with a fresh ``JOBDOCK_HOME`` (so a fresh SQLite store in WAL mode,
at the synchronous level of ``JOBDOCK_SQLITE_SYNCHRONOUS``, default NORMAL),
talks to it only over HTTP, reads its SQLite file read-only to learn exact
times and to detect completion cheaply, and stops it with SIGTERM at the end.
It then prints one plain-text table. What is measured:

(a) submit -> started latency: ``--latency-jobs`` jobs running ``true`` are
    submitted one at a time (``POST /v1/jobs`` on a keep-alive connection),
    each waited for (``GET /v1/jobs/{id}/wait``) before the next is sent. The
    latency of a job is its ``started_at`` (recorded by the worker just after
    the process was spawned) minus the client's ``time.time()`` just before
    the POST. Reported as p50, p90, p99 and max, with the p50 of the POST's
    own round trip beside them.
(b) throughput: ``--jobs`` ``true`` jobs are submitted by
    ``--concurrency-clients`` concurrent requests in flight (single-job
    submits over keep-alive connections of a lean client). The submit phase runs from the
    first POST to the last answer; end to end runs from the first POST to the
    latest ``finished_at`` of those jobs, once the store (polled every 20 ms)
    records every one of them terminal. All must have succeeded. The CPU
    used meanwhile by the server process (not its jobs), by this client and
    by the whole machine shows which side was the bottleneck.
(c) baseline: ``subprocess.run(["true"])`` in a loop, ``--jobs`` times, in this
    process: the cost of running the processes alone.
(d) log follow: one job writes ``--log-mb`` MiB of zeros to stdout while one
    client follows it (``GET /v1/jobs/{id}/logs?stream=stdout&follow=true``).
    MB/s is bytes received over the time from submit to the end of the stream
    (MB = 2**20 bytes, as in ``--log-mb``). The server's RSS is sampled every
    50 ms: before the submit, its peak while the job runs, and after the job
    (0.5 s after it is recorded finished).

Correctness problems (jobs that did not succeed, missing log bytes, server
errors on its output, an unclean shutdown) are listed under the table and
make the exit status 1; missed targets do not.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import httpx

TRUE_SPEC: dict[str, object] = {"command": ["true"]}
TERMINAL = ("succeeded", "failed", "cancelled")
MIB = 1024 * 1024
STARTUP_SECONDS = 30.0
STOP_SECONDS = 20.0


# -- a lean HTTP client ---------------------------------------------------------------
#
# httpx costs this 2-core machine about as much CPU per request as the server
# spends on a whole job, so the submits of (a) and (b) go through this
# minimal HTTP/1.1 keep-alive client instead: a load generator should cost
# less than what it measures. It speaks plain HTTP to the real API.


#: Headers every request sends: {"authorization": "Bearer ..."} with --tokens.
AUTH: dict[str, str] = {}


def _request(method: str, path: str, port: int, body: bytes = b"") -> bytes:
    auth = "".join(f"{name}: {value}\r\n" for name, value in AUTH.items())
    head = (
        f"{method} {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n{auth}"
        f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def _parse_head(head: bytes) -> tuple[int, int]:
    """Status and content length of a response head (without the blank line)."""
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return status, length


class LeanHttp:
    """Blocking keep-alive requests on one connection."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._sock = socket.create_connection(("127.0.0.1", port))
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buffer = b""

    def close(self) -> None:
        self._sock.close()

    def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        self._sock.sendall(_request(method, path, self.port, body))
        while b"\r\n\r\n" not in self._buffer:
            self._buffer += self._recv()
        head, _, rest = self._buffer.partition(b"\r\n\r\n")
        status, length = _parse_head(head)
        while len(rest) < length:
            rest += self._recv()
        self._buffer = rest[length:]
        return status, rest[:length]

    def _recv(self) -> bytes:
        data = self._sock.recv(65536)
        if not data:
            raise ConnectionError("the server closed the connection")
        return data


async def lean_post(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[int, bytes]:
    """One request on an asyncio connection; the status and body of the answer."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status, length = _parse_head(head[:-4])
    return status, await reader.readexactly(length)


# -- the server ------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Server:
    """A ``jobdock serve`` subprocess with its own home directory and port."""

    def __init__(
        self, home: Path, env: dict[str, str] | None = None, args: tuple[str, ...] = ()
    ) -> None:
        self.home = home
        #: More environment for the server: JOBDOCK_* settings, DOCKER_HOST.
        self.extra_env = env or {}
        #: More of the command line (``--no-worker``).
        self.args = args
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.db_path = home / "jobdock.db"
        self.output_path = home / "server-output.log"
        self.exit_code: int | None = None
        self.killed = False
        self.stop_seconds: float | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def __enter__(self) -> Server:
        env = dict(os.environ)
        env.update(
            JOBDOCK_HOME=str(self.home),
            JOBDOCK_PORT=str(self.port),
            JOBDOCK_LOG_LEVEL="warning",
        )
        env.update(self.extra_env)
        with self.output_path.open("wb") as output:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "jobdock", "serve", *self.args],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        try:
            self._wait_healthy()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _wait_healthy(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + STARTUP_SECONDS
        with httpx.Client(base_url=self.url, timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self._process.poll() is not None:
                    raise RuntimeError(
                        f"the server exited with {self._process.returncode} on start:\n"
                        + self.output()
                    )
                with contextlib.suppress(httpx.TransportError):
                    if client.get("/healthz").status_code == 200:
                        return
                time.sleep(0.05)
        raise RuntimeError(
            f"the server did not answer /healthz in {STARTUP_SECONDS:.0f} s:\n" + self.output()
        )

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not exited within STOP_SECONDS."""
        process = self._process
        if process is None or self.exit_code is not None:
            return
        if process.poll() is None:
            start = time.monotonic()
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                self.killed = True
                process.kill()
                process.wait()
            self.stop_seconds = time.monotonic() - start
        self.exit_code = process.returncode

    @property
    def stopped_cleanly(self) -> bool:
        """Exited on SIGTERM by itself: status 0, or death by the SIGTERM that
        uvicorn raises again once its graceful shutdown is over."""
        return not self.killed and self.exit_code in (0, -signal.SIGTERM)

    def output(self) -> str:
        """Everything the server wrote on stdout and stderr so far."""
        try:
            return self.output_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def rss_bytes(self) -> int:
        """The server process's resident set size (VmRSS)."""
        with open(f"/proc/{self.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS in /proc/PID/status")

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the server process itself has used."""
        with open(f"/proc/{self.pid}/stat") as stat:
            fields = stat.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def read_db(self) -> sqlite3.Connection:
        """A read-only connection to the server's SQLite store."""
        connection = sqlite3.connect(f"{self.db_path.as_uri()}?mode=ro", uri=True, timeout=10.0)
        connection.execute("PRAGMA query_only=1")
        return connection


# -- results ---------------------------------------------------------------------------


@dataclass
class Row:
    metric: str
    value: str
    target: str = ""


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def add(self, metric: str, value: str, target: str = "") -> None:
        self.rows.append(Row(metric, value, target))


def percentile(values: list[float], fraction: float) -> float:
    """The ``fraction`` quantile of ``values``, interpolating between ranks."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * fraction
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def machine_busy_seconds() -> tuple[float, float]:
    """CPU seconds of the whole machine: (busy, total), summed over cores."""
    with open("/proc/stat") as stat:
        ticks = [int(value) for value in stat.readline().split()[1:]]
    idle = ticks[3] + ticks[4]  # idle + iowait
    total = sum(ticks[:8])  # guest time is already counted in user
    hz = os.sysconf("SC_CLK_TCK")
    return (total - idle) / hz, total / hz


def max_seq(db: sqlite3.Connection) -> int:
    row = db.execute("SELECT coalesce(max(seq), 0) FROM jobs").fetchone()
    return int(row[0])


def states_after(db: sqlite3.Connection, seq: int) -> dict[str, int]:
    rows = db.execute(
        "SELECT state, count(*) FROM jobs WHERE seq > ? GROUP BY state", (seq,)
    ).fetchall()
    return {str(state): int(count) for state, count in rows}


def describe(states: dict[str, int]) -> str:
    return ", ".join(f"{state} {count}" for state, count in sorted(states.items())) or "none"


# -- (a) latency -----------------------------------------------------------------------


def bench_latency(
    server: Server, count: int, report: Report, spec: dict[str, object] = TRUE_SPEC
) -> None:
    submitted: list[tuple[str, float]] = []
    round_trips: list[float] = []
    body = json.dumps(spec).encode()
    client = LeanHttp(server.port)
    try:
        for _ in range(count):
            t0 = time.time()
            status, answer = client.request("POST", "/v1/jobs", body)
            round_trips.append((time.time() - t0) * 1000.0)
            if status != 201:
                raise RuntimeError(f"submit answered {status}: {answer[:200]!r}")
            job_id = str(json.loads(answer)["id"])
            submitted.append((job_id, t0))
            status, answer = client.request("GET", f"/v1/jobs/{job_id}/wait?timeout=10")
            if status != 200:
                raise RuntimeError(f"wait answered {status}: {answer[:200]!r}")
            job = json.loads(answer)
            if job["state"] not in TERMINAL:
                raise RuntimeError(f"latency job {job_id} still {job['state']} after 10 s")
            if job["state"] != "succeeded":
                report.problems.append(
                    f"latency job {job_id} ended {job['state']}: {job.get('message')}"
                )
    finally:
        client.close()
    with contextlib.closing(server.read_db()) as db:
        started = dict(
            db.execute(
                "SELECT id, started_at FROM jobs WHERE id IN (SELECT value FROM json_each(?))",
                (json.dumps([job_id for job_id, _ in submitted]),),
            ).fetchall()
        )
    latencies = []
    for job_id, t0 in submitted:
        started_at = started.get(job_id)
        if started_at is None:
            report.problems.append(f"latency job {job_id} has no started_at")
        else:
            latencies.append((float(started_at) - t0) * 1000.0)
    if not latencies:
        raise RuntimeError("no latency job recorded a start")
    report.add("submit -> started p50 (ms)", f"{percentile(latencies, 0.50):.2f}", "< 2")
    report.add("submit -> started p90 (ms)", f"{percentile(latencies, 0.90):.2f}")
    report.add("submit -> started p99 (ms)", f"{percentile(latencies, 0.99):.2f}")
    report.add("submit -> started max (ms)", f"{max(latencies):.2f}")
    report.add("submit POST round trip p50 (ms)", f"{percentile(round_trips, 0.50):.2f}")


# -- (b) throughput --------------------------------------------------------------------


async def submit_concurrently(
    port: int, count: int, clients: int, spec: dict[str, object] = TRUE_SPEC
) -> tuple[float, float]:
    """Submit ``count`` jobs, one per request, over ``clients`` keep-alive
    connections; the wall clock times of the first POST and of the last answer."""
    request = _request("POST", "/v1/jobs", port, json.dumps(spec).encode())
    remaining = iter(range(count))
    connections = [await asyncio.open_connection("127.0.0.1", port) for _ in range(clients)]

    async def submitter(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in remaining:
            status, answer = await lean_post(reader, writer, request)
            if status != 201:
                raise RuntimeError(f"submit answered {status}: {answer[:200]!r}")

    start = time.time()
    async with asyncio.TaskGroup() as group:
        for reader, writer in connections:
            group.create_task(submitter(reader, writer))
    end = time.time()
    for _, writer in connections:
        writer.close()
    return start, end


def bench_throughput(
    server: Server, count: int, clients: int, report: Report, spec: dict[str, object] = TRUE_SPEC
) -> None:
    with contextlib.closing(server.read_db()) as db:
        base = max_seq(db)
        server_cpu, client_cpu = server.cpu_seconds(), time.process_time()
        machine_busy, machine_total = machine_busy_seconds()
        start, submitted = asyncio.run(submit_concurrently(server.port, count, clients, spec))
        deadline = time.monotonic() + 60.0 + count / 50.0
        placeholders = ",".join("?" * len(TERMINAL))
        done_query = f"SELECT count(*) FROM jobs WHERE seq > ? AND state IN ({placeholders})"
        while True:
            done = int(db.execute(done_query, (base, *TERMINAL)).fetchone()[0])
            if done >= count:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"throughput: only {done} of {count} jobs terminal after "
                    f"{time.time() - start:.0f} s ({describe(states_after(db, base))})"
                )
            time.sleep(0.02)
        server_cpu = server.cpu_seconds() - server_cpu
        client_cpu = time.process_time() - client_cpu
        busy, total = machine_busy_seconds()
        machine = (busy - machine_busy) / max(total - machine_total, 1e-9)
        wall = time.time() - start
        states = states_after(db, base)
        row = db.execute(
            "SELECT max(finished_at), sum(CASE WHEN exit_code IS 0 THEN 0 ELSE 1 END) "
            "FROM jobs WHERE seq > ?",
            (base,),
        ).fetchone()
        end, nonzero = float(row[0]), int(row[1])
    total = sum(states.values())
    if total != count or states.get("succeeded", 0) != count:
        report.problems.append(
            f"throughput: {total} jobs stored for {count} submitted; {describe(states)}"
        )
    if nonzero:
        report.problems.append(f"throughput: {nonzero} jobs without exit code 0")
    report.add("throughput submit phase (jobs/s)", f"{count / (submitted - start):.0f}")
    report.add("throughput end-to-end (jobs/s)", f"{count / (end - start):.0f}", ">= 700")
    report.add(
        "throughput CPU server / client (% core)",
        f"{100 * server_cpu / wall:.0f} / {100 * client_cpu / wall:.0f}",
    )
    report.add("throughput machine CPU busy (%)", f"{100 * machine:.0f}")
    report.add(
        "throughput jobs succeeded", f"{states.get('succeeded', 0)}/{count}", f"{count}/{count}"
    )


# -- (c) baseline ----------------------------------------------------------------------


def bench_baseline(count: int, report: Report) -> None:
    start = time.perf_counter()
    for _ in range(count):
        subprocess.run(["true"], check=True)
    elapsed = time.perf_counter() - start
    report.add("baseline subprocess.run loop (jobs/s)", f"{count / elapsed:.0f}")


# -- (d) log follow --------------------------------------------------------------------


class RssSampler:
    """Samples the server's RSS every ``interval`` seconds in a thread."""

    def __init__(self, server: Server, interval: float = 0.05) -> None:
        self._server = server
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.peak = 0

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError, RuntimeError):
                self.peak = max(self.peak, self._server.rss_bytes())
            self._stop.wait(self._interval)

    @contextlib.contextmanager
    def running(self) -> Iterator[RssSampler]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join()


def bench_logs(server: Server, size_mb: int, report: Report) -> None:
    expected = size_mb * MIB
    spec = {"command": ["head", "-c", str(expected), "/dev/zero"]}
    before = server.rss_bytes()
    server_cpu = server.cpu_seconds()
    received = 0
    timeout = httpx.Timeout(60.0)
    with (
        RssSampler(server).running() as sampler,
        httpx.Client(base_url=server.url, timeout=timeout, headers=AUTH) as client,
    ):
        t0 = time.time()
        response = client.post("/v1/jobs", json=spec)
        response.raise_for_status()
        job_id = str(response.json()["id"])
        params = {"stream": "stdout", "follow": "true"}
        with client.stream("GET", f"/v1/jobs/{job_id}/logs", params=params) as stream:
            stream.raise_for_status()
            for chunk in stream.iter_raw():
                received += len(chunk)
        elapsed = time.time() - t0
        server_cpu = server.cpu_seconds() - server_cpu
        waited = client.get(f"/v1/jobs/{job_id}/wait", params={"timeout": 30})
        waited.raise_for_status()
        job = waited.json()
        time.sleep(0.5)
    after = server.rss_bytes()
    if job["state"] != "succeeded":
        report.problems.append(f"log job {job_id} ended {job['state']}: {job.get('message')}")
    if received != expected:
        report.problems.append(f"log follow received {received} bytes, expected {expected}")
    stored = job["attempts"][-1]["stdout_bytes"] if job.get("attempts") else None
    if stored != expected:
        report.problems.append(f"log job recorded {stored} stdout bytes, expected {expected}")
    report.add("log follow (MB/s)", f"{received / MIB / elapsed:.1f}", ">= 100")
    report.add("log follow bytes received", f"{received}", f"{expected}")
    report.add("log follow server CPU (% core)", f"{100 * server_cpu / elapsed:.0f}")
    report.add(
        "server RSS before / peak / after (MiB)",
        f"{before / MIB:.0f} / {max(sampler.peak, before) / MIB:.0f} / {after / MIB:.0f}",
    )


# -- main ------------------------------------------------------------------------------


def print_table(title: str, report: Report) -> None:
    width = max(len("metric"), *(len(row.metric) for row in report.rows)) + 3
    value_width = max(len("value"), *(len(row.value) for row in report.rows)) + 3
    print(title)
    print(f"{'metric':<{width}}{'value':<{value_width}}target")
    for row in report.rows:
        print(f"{row.metric:<{width}}{row.value:<{value_width}}{row.target}".rstrip())


def server_complaints(output: str) -> list[str]:
    """Lines of the server's output worth reporting (it runs at log level
    warning, so it should print nothing but uvicorn's shutdown notes)."""
    quiet = (
        "Shutting down",
        "Waiting for application shutdown",
        "Application shutdown",
        # Said when asked for (JOBDOCK_JOBS_AS_SERVER=true with --tokens).
        "INSECURE: jobs_as_server",
    )
    lines = [line for line in output.splitlines() if line.strip()]
    return [line for line in lines if not any(note in line for note in quiet)]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--latency-jobs", type=int, default=500, help="jobs for (a) [500]")
    parser.add_argument("--jobs", type=int, default=2000, help="jobs for (b) and (c) [2000]")
    parser.add_argument("--log-mb", type=int, default=200, help="MiB of output for (d) [200]")
    parser.add_argument(
        "--concurrency-clients", type=int, default=16, help="requests in flight in (b) [16]"
    )
    parser.add_argument(
        "--tokens",
        action="store_true",
        help="serve with API tokens (as root: jobs run as their owner's own uid; "
        "JOBDOCK_JOBS_AS_SERVER=true: as the server)",
    )
    args = parser.parse_args(argv)
    for name in ("latency_jobs", "jobs", "log_mb", "concurrency_clients"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    synchronous = os.environ.get("JOBDOCK_SQLITE_SYNCHRONOUS", "NORMAL").upper()
    cores = len(os.sched_getaffinity(0))
    report = Report()
    with (
        tempfile.TemporaryDirectory(prefix="jobdock-bench-") as home,
        tempfile.TemporaryDirectory(prefix="jobdock-bench-homes-") as job_homes,
    ):
        # Process jobs only: no container engine to look for (and warn about).
        env = {"JOBDOCK_CONTAINERS": "false"}
        if args.tokens:
            env |= {"JOBDOCK_TOKENS": "true", "JOBDOCK_JOB_HOMES": job_homes}
            Path(job_homes).chmod(0o711)
            AUTH["authorization"] = f"Bearer {make_token(Path(home))}"
        server = Server(Path(home), env)
        try:
            with server:
                with contextlib.closing(server.read_db()) as db:
                    journal = str(db.execute("PRAGMA journal_mode").fetchone()[0]).upper()
                bench_latency(server, args.latency_jobs, report)
                bench_throughput(server, args.jobs, args.concurrency_clients, report)
                bench_baseline(args.jobs, report)
                bench_logs(server, args.log_mb, report)
        except Exception:
            output = server.output()
            if output:
                print("server output:\n" + output, file=sys.stderr)
            raise
        if server.stop_seconds is not None:
            report.add("server stop on SIGTERM (s)", f"{server.stop_seconds:.2f}")
        if server.killed:
            report.problems.append(f"the server ignored SIGTERM for {STOP_SECONDS:.0f} s")
        elif not server.stopped_cleanly:
            report.problems.append(f"the server exited with {server.exit_code} on SIGTERM")
        complaints = server_complaints(server.output())
        if complaints:
            report.problems.append(
                f"the server printed {len(complaints)} lines:\n    "
                + "\n    ".join(complaints[:40])
            )
    auth = "tokens" if args.tokens else "none"
    title = (
        f"jobdock core benchmark  (store: SQLite {journal}, synchronous={synchronous}; "
        f"auth: {auth}; {cores} cores)"
    )
    return conclude(title, report)


def make_token(home: Path) -> str:
    """A token for the benchmark's requests, made on the store of ``home``."""
    made = subprocess.run(
        [sys.executable, "-m", "jobdock", "tokens", "create", "bench", "--home", str(home)],
        capture_output=True,
        text=True,
        check=True,
    )
    return made.stdout.strip()


def conclude(title: str, report: Report) -> int:
    """Print the table and any problems; the exit status (1 if problems)."""
    print_table(title, report)
    if report.problems:
        print("\nproblems:")
        for problem in report.problems:
            print(f"  - {problem}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
