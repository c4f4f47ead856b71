"""What each sandbox costs to start: ``true`` run again and again under
runc and runsc (gVisor) as containers, and under bubblewrap and ``runsc
do`` as process jobs' sandboxes, side by side (issue 19).

Run it from the repository root::

    .venv/bin/python bench/sandboxes.py [--runs 20] [--docker-host unix:///PATH --image IMAGE]

The process sandboxes run their command lines as jobdock builds them
(runtimes/isolation.py: bwrap_argv, runsc_argv). The containers are created,
started, waited for and removed through the ``docker`` command line on
``--docker-host`` (a dockerd with runsc registered as ``runsc``, e.g. the
tests' one: tests/engines.py); without it they are left out. Wall time
p50 / p90 / max, in milliseconds.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

from jobdock.models import Isolation
from jobdock.runtimes.isolation import bwrap_argv, runsc_argv


def _timed(run: Callable[[], None], runs: int) -> list[float]:
    run()  # once, not counted: caches warm, as a server's second job finds them
    took = []
    for _ in range(runs):
        start = time.perf_counter()
        run()
        took.append((time.perf_counter() - start) * 1000)
    return sorted(took)


def _command(argv: list[str], env: dict[str, str] | None = None) -> Callable[[], None]:
    def run() -> None:
        subprocess.run(argv, check=True, capture_output=True, env=env)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--docker-host", help="a dockerd with runsc registered")
    parser.add_argument("--image", default="localhost/busybox:1")
    args = parser.parse_args()
    cases: dict[str, Callable[[], None]] = {"none (spawn true)": _command(["true"])}
    bwrap, runsc = shutil.which("bwrap"), shutil.which("runsc")
    if bwrap:
        cases["bwrap (process)"] = _command(bwrap_argv(bwrap, Isolation(), "/", ["true"]))
    if runsc:
        gvisor = Isolation(sandbox="gvisor")
        cases["runsc do (process)"] = _command(runsc_argv(runsc, gvisor, "/", ["true"]))
    if args.docker_host:
        env = {**os.environ, "DOCKER_HOST": args.docker_host}
        for runtime in ("runc", "runsc"):
            argv = ["docker", "run", "--rm", "--network", "none", "--runtime", runtime]
            cases[f"{runtime} (container)"] = _command([*argv, args.image, "true"], env)
    print(f"{'sandbox':<22}{'p50 ms':>9}{'p90 ms':>9}{'max ms':>9}   ({args.runs} runs)")
    for name, run in cases.items():
        try:
            took = _timed(run, args.runs)
        except (subprocess.CalledProcessError, OSError) as exc:
            print(f"{name:<22}  failed: {exc}")
            continue
        p90 = took[min(len(took) - 1, int(len(took) * 0.9))]
        print(f"{name:<22}{statistics.median(took):>9.1f}{p90:>9.1f}{took[-1]:>9.1f}")
    if not args.docker_host:
        print("(containers left out: give --docker-host)", file=sys.stderr)


if __name__ == "__main__":
    main()
