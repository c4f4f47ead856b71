"""Abuse benchmark of a real jobdock server: does it stay responsive while
clients try to take its CPU, memory and connections?

Run it from the repository root::

    .venv/bin/python bench/bench_abuse.py [--seconds 15]

It starts its own server (``python -m jobdock serve``, as bench_core.py does:
a free port of 127.0.0.1, a fresh ``JOBDOCK_HOME``, process jobs only) and
measures the latency of ``GET /healthz`` (one keep-alive connection, a
request every 20 ms, from a thread of this process) at rest and during each
of these phases, ``--seconds`` long, the abuse coming from a child process
(so that its threads do not take the prober's interpreter lock):

(a) bodies: four clients each send a 100 MiB body (a job spec whose
    ``stdin_base64`` is 100 MiB) to ``POST /v1/jobs`` at once, as fast as
    loopback takes it, until the server answers.
(b) followers: one job writes a line every 10 ms while 200 clients follow
    it (``GET /v1/jobs/{id}/logs?follow=true``).
(c) slowloris: 50 connections send a request head a byte a second.
(d) YAML bomb: one client posts a billion-laughs workflow (under 500 bytes,
    9**9 strings once its aliases are expanded) to ``/v1/workflows`` again
    and again, waiting for each answer. It comes last: a server without
    bounds is busy with one for a minute and takes gigabytes.

For each phase the table gives /healthz p50 / p99 / max, how many probes
were answered, the server's peak RSS (sampled every 50 ms) and CPU, and
what the abusers got. A phase's probes that waited past its end count with
the time they waited. Problems (a probe that failed, an abuser that got
something unexpected) are listed under the table; missed targets are not
problems.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import multiprocessing
import os
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from bench_core import MIB, Report, RssSampler, Server, conclude, percentile

BODY_BYTES = 100 * MIB
BOMB = (
    "name: laughs\nsteps: [{name: s, job: {command: [echo]}}]\nparams:\n"
    '  a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n'
    + "".join(
        f"  {name}: &{name} [{', '.join([f'*{previous}'] * 9)}]\n"
        for previous, name in zip("abcdefgh", "bcdefghi", strict=True)
    )
).encode()
FOLLOWERS = 200
SLOW_CONNECTIONS = 50


# -- the prober (this process) ---------------------------------------------------------


class Prober:
    """``GET /healthz`` every 20 ms on a keep-alive connection, in a thread."""

    def __init__(self, port: int, timeout: float) -> None:
        self.port = port
        self.timeout = timeout
        self.samples: list[float] = []
        self.failures: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Prober:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        sock: socket.socket | None = None
        request = f"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1:{self.port}\r\n\r\n".encode()
        while not self._stop.is_set():
            start = time.perf_counter()
            try:
                if sock is None:
                    sock = socket.create_connection(("127.0.0.1", self.port), self.timeout)
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.sendall(request)
                answer = b""
                while b'"ok"' not in answer:
                    data = sock.recv(65536)
                    if not data:
                        raise ConnectionError("closed")
                    answer += data
                if not answer.startswith(b"HTTP/1.1 200"):
                    self.failures[answer.split(b"\r\n")[0].decode()] += 1
            except OSError as exc:
                self.failures[type(exc).__name__] += 1
                if sock is not None:
                    sock.close()
                sock = None
            self.samples.append(time.perf_counter() - start)
            self._stop.wait(0.02)
        if sock is not None:
            sock.close()


# -- the abusers (a child process) -----------------------------------------------------


async def _read_answer(reader: asyncio.StreamReader) -> str:
    """The status line of the server's answer, or how the connection ended."""
    try:
        line = await reader.readline()
    except (ConnectionError, OSError) as exc:
        return type(exc).__name__
    return line.decode(errors="replace").strip() or "closed"


async def big_body(port: int) -> tuple[str, int, float]:
    """Send one 100 MiB submit; its answer, the bytes sent, the seconds taken."""
    start = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    prefix = b'{"command": ["true"], "stdin_base64": "'
    suffix = b'"}'
    head = (
        f"POST /v1/jobs HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
        f"content-length: {BODY_BYTES}\r\n\r\n"
    ).encode()
    chunk = base64.b64encode(b"\0" * (3 * MIB // 4))  # 1 MiB of base64
    answer = asyncio.ensure_future(_read_answer(reader))
    sent = 0
    try:
        writer.write(head + prefix)
        sent = len(prefix)
        while sent < BODY_BYTES and not answer.done():
            piece = chunk[: BODY_BYTES - len(suffix) - sent]
            writer.write(piece if piece else suffix)
            sent += len(piece) if piece else len(suffix)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    status = await answer
    writer.close()
    return status, sent, time.monotonic() - start


async def follower(port: int, job_id: str) -> int:
    """Follow the job's output to its end; the bytes received."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"GET /v1/jobs/{job_id}/logs?follow=true HTTP/1.1\r\nhost: 127.0.0.1\r\n"
        "connection: close\r\n\r\n".encode()
    )
    received = 0
    while data := await reader.read(65536):
        received += len(data)
    writer.close()
    return received


async def slow_head(port: int, until: float) -> tuple[bool, float]:
    """A request head a byte a second until ``until``; whether the server
    closed the connection first, and after how long."""
    start = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n" + b"x-slow: " + b"a" * 1000
    closed = asyncio.ensure_future(reader.read())
    for byte in head:
        if closed.done() or time.monotonic() >= until:
            break
        with contextlib.suppress(ConnectionError, OSError):
            writer.write(bytes([byte]))
        await asyncio.wait([closed], timeout=1.0)
    by_server = closed.done()
    closed.cancel()
    writer.close()
    return by_server, time.monotonic() - start


async def bomber(port: int, until: float) -> list[tuple[str, float]]:
    """Post the bomb again and again until ``until``: each answer and its time."""
    results = []
    while time.monotonic() < until:
        start = time.monotonic()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            f"POST /v1/workflows HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/yaml\r\n"
            f"content-length: {len(BOMB)}\r\n\r\n".encode()
            + BOMB
        )
        try:
            status = await asyncio.wait_for(_read_answer(reader), until - time.monotonic() + 0.1)
        except TimeoutError:
            status = "no answer by the end of the phase"
        writer.close()
        results.append((status, time.monotonic() - start))
    return results


async def abuse(phase: str, port: int, seconds: float, job_id: str) -> dict[str, Any]:
    until = time.monotonic() + seconds
    if phase == "bodies":
        results = await asyncio.gather(*(big_body(port) for _ in range(4)))
        await asyncio.sleep(max(until - time.monotonic(), 0))
        return {"bodies": results}
    if phase == "followers":
        received = await asyncio.gather(*(follower(port, job_id) for _ in range(FOLLOWERS)))
        return {"received": received}
    if phase == "slowloris":
        closes = await asyncio.gather(*(slow_head(port, until) for _ in range(SLOW_CONNECTIONS)))
        return {"closes": closes}
    if phase == "bomb":
        return {"answers": await bomber(port, until)}
    raise ValueError(phase)


def _abuser(phase: str, port: int, seconds: float, job_id: str, queue: Any) -> None:
    try:
        queue.put(asyncio.run(abuse(phase, port, seconds, job_id)))
    except Exception as exc:
        queue.put({"error": repr(exc)})


# -- the phases ------------------------------------------------------------------------


def describe(phase: str, result: dict[str, Any], report: Report) -> str:
    """One line on what the abusers got; unexpected outcomes become problems."""
    if "error" in result:
        report.problems.append(f"{phase}: the abuser failed: {result['error']}")
        return "abuser failed"
    if phase == "bodies":
        answers = Counter(status for status, _, _ in result["bodies"])
        most_sent = max(sent for _, sent, _ in result["bodies"]) / MIB
        slowest = max(took for _, _, took in result["bodies"])
        return f"{dict(answers)}; at most {most_sent:.1f} MiB sent; answered within {slowest:.2f} s"
    if phase == "followers":
        received = result["received"]
        if min(received) != max(received):
            report.problems.append(f"followers got {min(received)}..{max(received)} bytes")
        return f"{len(received)} followers got {min(received) / 1024:.0f} KiB each"
    if phase == "slowloris":
        closes = [took for by_server, took in result["closes"] if by_server]
        kept = len(result["closes"]) - len(closes)
        when = f", after {min(closes):.1f}-{max(closes):.1f} s" if closes else ""
        return f"{len(closes)} closed by the server{when}; {kept} still open at the end"
    answers = Counter(status for status, _ in result["answers"])
    slowest = max(took for _, took in result["answers"])
    return f"{sum(answers.values())} posts: {dict(answers)}; slowest {slowest:.2f} s"


def follow_job(server: Server, seconds: float) -> str:
    lines = int(seconds * 100)
    script = f'i=0; while [ $i -lt {lines} ]; do echo "line $i of the followed job"; i=$((i+1)); sleep 0.01; done'
    response = httpx.post(f"{server.url}/v1/jobs", json={"command": ["sh", "-c", script]})
    response.raise_for_status()
    return str(response.json()["id"])


def run_phase(server: Server, phase: str, seconds: float, report: Report) -> None:
    job_id = follow_job(server, seconds) if phase == "followers" else ""
    cpu = server.cpu_seconds()
    start = time.monotonic()
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    with RssSampler(server).running() as rss, Prober(server.port, timeout=60) as prober:
        if phase == "rest":
            time.sleep(seconds)
            result: dict[str, Any] = {}
        else:
            child = context.Process(
                target=_abuser, args=(phase, server.port, seconds, job_id, queue)
            )
            child.start()
            result = queue.get(timeout=seconds + 600)
            child.join()
    elapsed = time.monotonic() - start
    cpu = server.cpu_seconds() - cpu
    samples = [sample * 1000 for sample in prober.samples] or [float("nan")]
    report.add(
        f"{phase}: /healthz p50 / p99 / max (ms)",
        f"{percentile(samples, 0.5):.1f} / {percentile(samples, 0.99):.1f} / {max(samples):.0f}",
        "p99 < 100",
    )
    report.add(
        f"{phase}: probes answered, server RSS peak (MiB), CPU (% core)",
        f"{len(prober.samples)}, {rss.peak / MIB:.0f}, {100 * cpu / elapsed:.0f}",
    )
    if prober.failures:
        report.problems.append(f"{phase}: /healthz failed: {dict(prober.failures)}")
    if phase != "rest":
        report.add(f"{phase}: abusers got", describe(phase, result, report))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=15.0, help="length of a phase [15]")
    parser.add_argument(
        "--phases",
        default="rest,bodies,followers,slowloris,bomb",
        help="which phases, in order [rest,bodies,followers,slowloris,bomb]",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = Report()
    with tempfile.TemporaryDirectory(prefix="jobdock-bench-") as home:
        server = Server(Path(home), {"JOBDOCK_CONTAINERS": "false"})
        try:
            with server:
                for phase in args.phases.split(","):
                    run_phase(server, phase, args.seconds, report)
        except Exception:
            print("server output:\n" + server.output(), file=sys.stderr)
            raise
        if server.killed:
            report.problems.append("the server did not stop on SIGTERM: killed")
    cores = len(os.sched_getaffinity(0))
    title = f"jobdock abuse benchmark  ({args.seconds:g} s a phase; {cores} cores)"
    return conclude(title, report)


if __name__ == "__main__":
    sys.exit(main())
