"""How fast the Python client submits, against a bare HTTP connection.

Starts its own ``python -m jobdock serve --no-worker`` (as bench_core.py
does: a fresh temporary home with a new SQLite store, a free port of
127.0.0.1, SIGTERM at the end), then submits ``--jobs`` ``true`` jobs one
after the other, in each of three ways:

- (a) ``http.client``: one kept-alive ``http.client.HTTPConnection``, the
  spec's JSON encoded once: what the server allows one sequential caller;
- (b) ``jobdock.Client.submit``, one call per job, as the CLI, workflows
  and users submit;
- (c) ``jobdock.Client.submit_many``, in batches of ``--batch``.

The three take turns for ``--rounds`` rounds (so that a store growing or
the machine getting busier weighs on each alike); the table gives each
way's median submits/s over its rounds and its ratio to (a). The target of
issue 17: (b) within 20 % of (a). Every submit must be answered 201 (else
the exit status is 1).

    .venv/bin/python bench/client_submit.py [--jobs 2000] [--rounds 3] [--batch 100]
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench_core import Report, Server, conclude, server_complaints

from jobdock import Client

SPEC = {"command": ["true"]}

#: (b) within 20 % of (a): issue 17's target.
TARGET_RATIO = 0.8


def bare(server: Server, count: int) -> None:
    """(a): one kept-alive http.client connection."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port)
    body = json.dumps(SPEC).encode()
    headers = {"content-type": "application/json"}
    try:
        for _ in range(count):
            connection.request("POST", "/v1/jobs", body, headers)
            response = connection.getresponse()
            response.read()
            if response.status != 201:
                raise RuntimeError(f"a bare submit answered {response.status}")
    finally:
        connection.close()


def one_by_one(client: Client, count: int) -> None:
    """(b): Client.submit per job."""
    for _ in range(count):
        client.submit(SPEC)


def batched(client: Client, count: int, size: int) -> None:
    """(c): Client.submit_many, ``size`` at a time."""
    for start in range(0, count, size):
        handles = client.submit_many([SPEC] * min(size, count - start))
        if len(handles) != min(size, count - start):
            raise RuntimeError("submit_many answered fewer jobs than it sent")


def rate(run: Callable[[], None], count: int) -> float:
    start = time.perf_counter()
    run()
    return count / (time.perf_counter() - start)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--jobs", type=int, default=2000, help="submits per way and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=100, help="submit_many's batch size")
    args = parser.parse_args(argv)
    if not (1 <= args.jobs <= 1_000_000 and 1 <= args.rounds <= 100 and 1 <= args.batch <= 1000):
        parser.error("--jobs 1..1000000, --rounds 1..100, --batch 1..1000")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = Report()
    rates: dict[str, list[float]] = {"a": [], "b": [], "c": []}
    with tempfile.TemporaryDirectory(prefix="jobdock-client-bench-") as home:
        with Server(Path(home), args=("--no-worker",)) as server, Client(server.url) as client:
            client.submit(SPEC)  # warm: the first request opens the connection
            for _ in range(args.rounds):
                rates["a"].append(rate(lambda: bare(server, args.jobs), args.jobs))
                rates["b"].append(rate(lambda: one_by_one(client, args.jobs), args.jobs))
                rates["c"].append(rate(lambda: batched(client, args.jobs, args.batch), args.jobs))
        report.problems += [f"server: {line}" for line in server_complaints(server.output())]
    medians = {way: statistics.median(found) for way, found in rates.items()}
    names = {
        "a": "(a) bare http.client, kept alive",
        "b": "(b) jobdock.Client.submit",
        "c": f"(c) jobdock.Client.submit_many, batches of {args.batch}",
    }
    for way, name in names.items():
        report.add(f"{name} (submits/s)", f"{medians[way]:,.0f}")
    for way in ("b", "c"):
        target = f">= {TARGET_RATIO:.2f}" if way == "b" else ""
        report.add(f"{names[way][:3]} / (a)", f"{medians[way] / medians['a']:.2f}", target)
    title = f"client submits: {args.jobs} jobs per way, median of {args.rounds} rounds"
    return conclude(title, report)


if __name__ == "__main__":
    sys.exit(main())
