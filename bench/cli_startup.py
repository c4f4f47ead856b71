"""How long the ``jobdock`` command takes to start: ``jobdock ps`` against a
real server, run again and again, next to a bare interpreter.

Run it from the repository root::

    .venv/bin/python bench/cli_startup.py [--runs 20]

It starts its own server (``python -m jobdock serve``, as bench_core.py does:
a free port of 127.0.0.1, a fresh ``JOBDOCK_HOME``), submits a few jobs so
that ``ps -a`` has rows to print, then runs each command below ``--runs``
times, one after the other, from the virtual environment's ``jobdock``
script (as a user's shell would), and prints one table:

- ``python -c pass``: the interpreter alone, the floor under any command.
- ``python -c 'import jobdock.cli'``: what importing the command tree costs.
- ``jobdock --version``: start-up and one line, no server.
- ``jobdock ps`` and ``jobdock ps -a``: a request to the server and a table.

Wall time (p50 / p90 / max) is what a user waits; CPU (user + system, p50)
is the work done, which a busy machine inflates less than wall time. The
machine's CPU use over the runs is given too: on a shared machine the wall
times are only comparable at similar load. The target (0.3 s for ``ps``) is
issue 21's.

The commands run with Python's bytecode cache on (in a temporary
``PYTHONPYCACHEPREFIX``, even where ``PYTHONDONTWRITEBYTECODE`` is set), after
one run each that is not counted: as an installed jobdock runs. Run it with
another checkout's interpreter (``/path/to/other/.venv/bin/python
bench/cli_startup.py``) to measure that checkout's CLI; a command it lacks
is listed under the table.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_core import Report, Server, machine_busy_seconds, percentile, print_table

ROOT = Path(__file__).resolve().parents[1]
JOBDOCK = Path(sys.executable).parent / "jobdock"
TARGET_PS_SECONDS = 0.3


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def time_command(
    argv: list[str], runs: int, env: dict[str, str]
) -> tuple[list[float], list[float]]:
    """Wall and CPU seconds of ``runs`` runs of ``argv``; each must succeed."""
    walls, cpus = [], []
    for _ in range(runs):
        cpu = _children_cpu()
        start = time.perf_counter()
        done = subprocess.run(argv, env=env, capture_output=True, check=False)
        walls.append(time.perf_counter() - start)
        cpus.append(_children_cpu() - cpu)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr!r}")
    return walls, cpus


def add_rows(
    report: Report, label: str, walls: list[float], cpus: list[float], target: str
) -> None:
    p50, p90 = percentile(walls, 0.5), percentile(walls, 0.9)
    report.add(f"{label} wall p50/p90/max (s)", f"{p50:.3f} / {p90:.3f} / {max(walls):.3f}", target)
    report.add(f"{label} CPU p50 (s)", f"{percentile(cpus, 0.5):.3f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="runs of each command")
    args = parser.parse_args(argv)
    report = Report()
    with tempfile.TemporaryDirectory(prefix="jobdock-bench-") as home, Server(Path(home)) as server:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env.update(JOBDOCK_URL=server.url, PYTHONPYCACHEPREFIX=str(Path(home) / "pycache"))
        for _ in range(3):
            subprocess.run(
                [str(JOBDOCK), "run", "-d", "--", "true"], env=env, check=True, capture_output=True
            )
        commands = [
            ("python -c pass", [sys.executable, "-c", "pass"], ""),
            ("import jobdock.cli", [sys.executable, "-c", "import jobdock.cli"], ""),
            ("jobdock --version", [str(JOBDOCK), "--version"], ""),
            ("jobdock ps", [str(JOBDOCK), "ps"], f"< {TARGET_PS_SECONDS} p50"),
            ("jobdock ps -a", [str(JOBDOCK), "ps", "-a"], f"< {TARGET_PS_SECONDS} p50"),
        ]
        busy_before, total_before = machine_busy_seconds()
        for label, command, target in commands:
            try:
                walls, cpus = time_command(command, args.runs, env)
            except RuntimeError as exc:
                report.problems.append(str(exc))
                continue
            add_rows(report, label, walls, cpus, target)
        busy_after, total_after = machine_busy_seconds()
    busy = 100 * (busy_after - busy_before) / max(total_after - total_before, 1e-9)
    report.add("machine CPU busy over the runs (%)", f"{busy:.0f}")
    print_table(f"jobdock CLI start-up, {args.runs} runs each ({os.cpu_count()} cores)", report)
    for problem in report.problems:
        print(f"problem: {problem}")
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
