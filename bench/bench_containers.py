"""Container benchmark: what jobdock adds on top of the engine for an image job.

Run it from the repository root (as root, with Debian's docker.io and
busybox-static installed, as scripts/test installs them)::

    .venv/bin/python bench/bench_containers.py [--runs 40]

It starts a private dockerd (tests/engines.py: its own data root, no
iptables, no bridge), imports a busybox image into it, and starts
``jobdock serve`` on that daemon. Then, ``--runs`` times, interleaved so
that a busy moment of the machine hits all three alike, it runs the image's
``true``:

(a) jobdock: ``POST /v1/jobs`` of ``{"image": ..., "command": ["true"]}``,
    then ``GET /v1/jobs/{id}/wait``. *submit -> started* is the job's
    ``started_at`` (recorded after the engine's start returned) minus the
    client's time before the POST; *end to end* runs until the wait answers
    (the result is recorded; the container is removed just after).
(b) ``docker run --rm IMAGE true`` through the same daemon: the CLI's create,
    attach, start, wait and remove, timed around the subprocess.
(c) the Engine API alone, in this process: create, attach, start, wait for
    the end, inspect and remove; the least any client of the engine pays.

The overhead is jobdock's p50 end to end over (b)'s p50 (target: under 15%),
and over (c)'s p50 for the record.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from bench_core import Report, Server, conclude, percentile, server_complaints

import engines
from jobdock.runtimes.engine import Engine, EngineAddress

WARMUP = 3


def jobdock_run(client: httpx.Client) -> tuple[float, float]:
    """(submit -> started, end to end) of one ``true`` image job, seconds."""
    before = time.time()
    job = client.post("/v1/jobs", json={"image": engines.BUSYBOX, "command": ["true"]}).json()
    done = client.get(f"/v1/jobs/{job['id']}/wait", params={"timeout": 60}).json()
    after = time.time()
    if done["state"] != "succeeded":
        raise RuntimeError(f"job {job['id']} ended {done['state']}: {done.get('message')}")
    started = datetime.fromisoformat(done["started_at"]).timestamp()
    return started - before, after - before


def docker_run(docker: str, url: str) -> float:
    before = time.perf_counter()
    subprocess.run(
        [docker, "-H", url, "run", "--rm", engines.BUSYBOX, "true"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - before


async def engine_run(engine: Engine) -> float:
    before = time.perf_counter()
    config = {"Image": engines.BUSYBOX, "Cmd": ["true"], "AttachStdout": True}
    container = await engine.create(config)
    stream = await engine.attach(container, stdin=False)
    await engine.start(container)
    while await stream.read() is not None:
        pass
    await engine.wait(container)
    await engine.inspect(container)
    await engine.remove(container)
    stream.close()
    return time.perf_counter() - before


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=40, help="runs of each kind [40]")
    args = parser.parse_args(argv)
    docker = shutil.which("docker")
    if docker is None:
        print("bench_containers: no docker CLI (apt-get install docker.io)", file=sys.stderr)
        return 2
    report = Report()
    dockerd = engines.Dockerd().start()
    loop = asyncio.new_event_loop()
    engine = Engine(EngineAddress(dockerd.url))
    try:
        with tempfile.TemporaryDirectory(prefix="jobdock-bench-") as home:
            server = Server(Path(home), {"JOBDOCK_DOCKER_HOST": dockerd.url})
            with server, httpx.Client(base_url=server.url, timeout=90) as client:
                started, jobdock, cli, api = [], [], [], []
                for run in range(WARMUP + args.runs):
                    latency, total = jobdock_run(client)
                    cli_total = docker_run(docker, dockerd.url)
                    api_total = loop.run_until_complete(engine_run(engine))
                    if run >= WARMUP:
                        started.append(latency)
                        jobdock.append(total)
                        cli.append(cli_total)
                        api.append(api_total)
            complaints = server_complaints(server.output())
            if complaints:
                report.problems.append("the server printed:\n    " + "\n    ".join(complaints))
    finally:
        loop.run_until_complete(engine.close())
        loop.close()
        dockerd.remove()

    def ms(values: list[float]) -> str:
        return f"{percentile(values, 0.5) * 1000:.1f} / {percentile(values, 0.9) * 1000:.1f}"

    overhead = percentile(jobdock, 0.5) / percentile(cli, 0.5) - 1
    report.add("jobdock submit -> container started, p50 / p90 (ms)", ms(started))
    report.add("jobdock `true` image job end to end, p50 / p90 (ms)", ms(jobdock))
    report.add("docker run --rm IMAGE true, p50 / p90 (ms)", ms(cli))
    report.add("Engine API create..remove in-process, p50 / p90 (ms)", ms(api))
    report.add("jobdock overhead over docker run (p50)", f"{overhead:+.1%}", "< 15%")
    over_api = percentile(jobdock, 0.5) / percentile(api, 0.5) - 1
    report.add("jobdock overhead over the bare Engine API (p50)", f"{over_api:+.1%}")
    if overhead >= 0.15:
        report.problems.append(f"jobdock's overhead over docker run is {overhead:.1%}")
    return conclude(f"jobdock container benchmark ({args.runs} runs each, interleaved)", report)


if __name__ == "__main__":
    sys.exit(main())
