"""What isolation costs: submit -> started latency and throughput of ``true``
jobs, plain next to isolated and limited, in one run.

Run it from the repository root (as root, on a host with cgroups and bwrap)::

    .venv/bin/python bench/bench_isolation.py [--latency-jobs 300] [--jobs 1000]

Two servers are started one after the other with fresh homes (see
bench_core.py for how each number is measured):

- plain: ``JOBDOCK_CGROUPS=off``; jobs ``{"command": ["true"]}``.
- isolated: cgroups on; jobs ask for namespaces (``isolation: true``: PID,
  mount, UTS, IPC and network namespaces by bwrap) and limits on cpu,
  memory and processes, so each job also gets its own cgroup.

The latency runs alternate between the two servers in rounds, so that load
from the rest of the machine falls on both alike. The table shows each
metric for both and, for the latency p50, the difference (target: under 3 ms).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from bench_core import (
    TRUE_SPEC,
    Report,
    Server,
    bench_latency,
    bench_throughput,
    conclude,
    percentile,
)

ISOLATED_SPEC: dict[str, object] = {
    "command": ["true"],
    "isolation": True,
    "resources": {"cpus": 1, "memory": "256m", "pids": 64},
}
MODES = {
    "plain": ({"JOBDOCK_CGROUPS": "off"}, TRUE_SPEC),
    "isolated": ({}, ISOLATED_SPEC),
}
ROUNDS = 3


def _value(report: Report, metric: str) -> float:
    return float(next(row.value for row in report.rows if row.metric == metric))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--latency-jobs", type=int, default=300, help="per mode [300]")
    parser.add_argument("--jobs", type=int, default=1000, help="throughput jobs per mode [1000]")
    parser.add_argument("--concurrency-clients", type=int, default=16)
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("bench_isolation: needs root (cgroups and namespaces)", file=sys.stderr)
        return 1
    report = Report()
    p50s: dict[str, list[float]] = {mode: [] for mode in MODES}
    with tempfile.TemporaryDirectory(prefix="jobdock-bench-iso-") as tmp:
        servers = {mode: Server(Path(tmp) / mode, env) for mode, (env, _) in MODES.items()}
        for server in servers.values():
            server.home.mkdir()
            server.__enter__()
        try:
            per_round = max(1, args.latency_jobs // ROUNDS)
            for _ in range(ROUNDS):
                for mode, (_, spec) in MODES.items():
                    part = Report()
                    bench_latency(servers[mode], per_round, part, spec)
                    p50s[mode].append(_value(part, "submit -> started p50 (ms)"))
                    report.problems += [f"{mode}: {p}" for p in part.problems]
            for mode, (_, spec) in MODES.items():
                part = Report()
                bench_throughput(servers[mode], args.jobs, args.concurrency_clients, part, spec)
                for row in part.rows:
                    report.add(f"[{mode}] {row.metric}", row.value)
                report.problems += [f"{mode}: {p}" for p in part.problems]
        finally:
            for server in servers.values():
                server.stop()
    plain, isolated = (percentile(p50s[mode], 0.5) for mode in MODES)
    rows = report.rows
    report.rows = []
    report.add("[plain] submit -> started p50 (ms)", f"{plain:.2f}")
    report.add("[isolated] submit -> started p50 (ms)", f"{isolated:.2f}")
    report.add("isolation adds at p50 (ms)", f"{isolated - plain:.2f}", "< 3")
    report.rows += rows
    title = f"jobdock isolation benchmark ({os.cpu_count()} cores; p50 = median of {ROUNDS} rounds)"
    return conclude(title, report)


if __name__ == "__main__":
    sys.exit(main())
