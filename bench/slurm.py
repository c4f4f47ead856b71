"""Submit-to-start and end-to-end time of a ``true`` job through jobdock's
Slurm runtime, next to ``sbatch --wait`` of the same kind of script, in the
same run, on the same cluster.

    .venv/bin/python bench/slurm.py [--runs 20] [--poll 0.25]

With ``SLURM_CONF`` set it uses that cluster; otherwise it starts the tests'
one-node cluster (tests/slurm.py: munged, slurmctld, slurmd on private
ports) and stops it at the end. The two ways alternate (which goes first too), one job at a time,
each on an idle node.

- start (script): when the batch script began (the mtime of a file it
  writes first), minus the time just before the submit.
- start (seen): when the submitter learnt it runs: for jobdock, when
  ``until_running`` returned (what the worker records as started_at); for
  ``sbatch --wait``, nothing tells it (no row).
- end-to-end: from just before the submit to when the submitter knows the
  job's outcome (jobdock: ``wait()`` returned with all output read;
  sbatch: ``--wait`` returned).

Target: jobdock adds under 10% to Slurm's own time (end-to-end p50).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from jobdock.models import JobSpec
from jobdock.runtimes.base import AttemptInfo
from jobdock.runtimes.slurm import SlurmOptions, SlurmRuntime

ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin"}


def sbatch_wait(work: Path, n: int) -> tuple[float, float]:
    marker = work / f"sbatch-{n}.started"
    script = work / f"sbatch-{n}.sh"
    script.write_text(f"#!/bin/sh\n: >{marker}\ntrue\n")
    t0 = time.time()
    subprocess.run(
        ["sbatch", "--wait", "--quiet", f"--output={work}/sbatch-{n}.log", str(script)],
        check=True,
    )
    end = time.time()
    return marker.stat().st_mtime - t0, end - t0


async def through_runtime(runtime: SlurmRuntime, n: int) -> tuple[float, float, float]:
    t0 = time.time()
    execution = await runtime.start(JobSpec(command=["true"]), b"", ENV, AttemptInfo(f"b{n}", 1))

    async def note(_: str, __: str) -> None:
        return None

    await execution.until_running(note)
    seen = time.time()
    marker = runtime.options.directory / f"b{n}" / "started"
    started = marker.stat().st_mtime
    async for _ in execution.output():
        pass
    status = await execution.wait()
    end = time.time()
    await execution.close()
    assert status.exit_code == 0, status
    return started - t0, seen - t0, end - t0


def wait_idle() -> None:
    """Until the cluster has no job (not even one completing)."""
    while subprocess.run(["squeue", "-h"], capture_output=True, text=True, check=True).stdout:
        time.sleep(0.05)


def p50(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:.0f}"


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--poll", type=float, default=0.25, help="slurm_poll_seconds")
    args = parser.parse_args()
    cluster = None
    if "SLURM_CONF" not in os.environ:
        import slurm  # tests/slurm.py

        cluster = slurm.SlurmCluster().start()
        os.environ["SLURM_CONF"] = str(cluster.conf)
    try:
        with tempfile.TemporaryDirectory(prefix="jdbench-") as tmp:
            work = Path(tmp)
            options = SlurmOptions(
                work / "jobdock", poll_seconds=args.poll, conf=os.environ["SLURM_CONF"]
            )
            runtime = SlurmRuntime(options)
            slurm_runs, jobdock_runs = [], []
            for n in range(args.runs):
                # Each job on an idle node; which goes first alternates.
                for way in ("sbatch", "jobdock") if n % 2 else ("jobdock", "sbatch"):
                    wait_idle()
                    if way == "sbatch":
                        slurm_runs.append(sbatch_wait(work, n))
                    else:
                        jobdock_runs.append(await through_runtime(runtime, n))
            runtime.close()
    finally:
        if cluster is not None:
            cluster.stop()
    s_start = [r[0] for r in slurm_runs]
    s_end = [r[1] for r in slurm_runs]
    j_start, j_seen, j_end = ([r[i] for r in jobdock_runs] for i in range(3))
    print(f"{args.runs} `true` jobs each way, one at a time; p50 in ms (poll {args.poll}s)")
    print(f"{'':28} {'sbatch --wait':>14} {'jobdock slurm':>14}")
    print(f"{'submit -> start (script)':28} {p50(s_start):>14} {p50(j_start):>14}")
    print(f"{'submit -> start (seen)':28} {'-':>14} {p50(j_seen):>14}")
    print(f"{'end-to-end':28} {p50(s_end):>14} {p50(j_end):>14}")
    added = statistics.median(j_end) / statistics.median(s_end) - 1
    print(f"jobdock adds {added * 100:+.0f}% end-to-end (target: under +10%)")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
