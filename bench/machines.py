"""Benchmark of the pools autoscaler: how long a job waits when a machine
must be started for it (docs/machines.md#pools-and-the-autoscaler).

Run it from the repository root::

    .venv/bin/python bench/machines.py [--rounds 3] [--provider command|docker]

Each case gets a fresh ``JOBDOCK_HOME`` and its own ``jobdock serve`` (tokens
on, SQLite, its embedded worker at concurrency 0, default lease) on a free
port of 127.0.0.1. The pool is a ``command`` pool run by
tests/machine_script.py, whose "machines" are ``jobdock agent`` processes
on this host, so the provider's own start is a fork and exec: what a cloud
adds (minutes for an instance) is not here. Each round submits one job
running ``true`` that requires the pool's labels, and measures from the
client's time just before the POST to the job's ``started_at``:

(a) cold: no machine (``min = 0``); the time is split into decision
    (submit -> the machine's ``requested_at``: the autoscaler's round),
    provider start (-> the start script's end), agent registration (->
    ``booted_at``: the agent's worker registered) and claim (-> the job's
    ``started_at``). Between rounds the machine is left to stop
    (``idle_timeout = 1``).
(b) warm: ``min = 1``, the machine ready before the submit.
(c) a plain agent (``jobdock agent`` started by hand; no pools).

With ``--provider docker`` the pool is a ``docker`` pool on a private
dockerd the benchmark starts (tests/engines.py: busybox-static image, the
host's Python and virtual environment bind-mounted read-only, host network),
so the provider's start is an image check, a container create and start; it
ends at the engine's ``start`` event of the machine's container, and
``idle_timeout`` is 2 s.

Prints one table of medians (seconds) over ``--rounds``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "tests" / "machine_script.py"
GPU = {"pool": "gpu"}

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_core import free_port  # noqa: E402
from bench_workers import wait_for  # noqa: E402


def pool_toml(directory: Path, minimum: int, dockerd: Any = None) -> str:
    """One pool ``gpu``: a command pool, or a docker pool on ``dockerd``."""
    script = [sys.executable, str(SCRIPT)]

    def argv(*args: str) -> str:
        return json.dumps([*script, *args])

    provider, idle = ("command", 1) if dockerd is None else ("docker", 2)
    head = (
        f'[[pools]]\nname = "gpu"\nprovider = "{provider}"\nlabels = {{ pool = "gpu" }}\n'
        f"min = {minimum}\nmax = 2\nidle_timeout = {idle}\nboot_timeout = 60\n"
    )
    if dockerd is None:
        return head + (
            f"[pools.command]\nstart = {argv('start', str(directory))}\n"
            f"stop = {argv('stop', str(directory))}\n"
        )
    engines = _engines()
    return head + (
        f'[pools.docker]\nhost = "{dockerd.url}"\nimage = "{engines.BUSYBOX}"\n'
        f'network = "host"\nmounts = {json.dumps(engines.host_python_mounts())}\n'
        f"agent_command = {json.dumps([sys.executable, '-m', 'jobdock', 'agent'])}\n"
    )


def _engines() -> Any:
    """tests/engines.py: the tests' private dockerd and busybox image."""
    sys.path.insert(0, str(ROOT / "tests"))
    import engines

    return engines


class Case:
    """A server (with a pool, or none) in a directory of its own."""

    def __init__(self, base: Path, pool_min: int | None, dockerd: Any = None) -> None:
        self.base = base
        self.dockerd = dockerd
        self.home = base / "home"
        self.machines = base / "machines"
        self.machines.mkdir(parents=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "JOBDOCK_HOME": str(self.home),
            "JOBDOCK_PORT": str(self.port),
            "JOBDOCK_TOKENS": "true",
            "JOBDOCK_CONCURRENCY": "0",
            "JOBDOCK_LOG_LEVEL": "warning",
        }
        if pool_min is not None:
            config = base / "jobdock.toml"
            config.write_text(pool_toml(self.machines, pool_min, dockerd))
            self.env["JOBDOCK_CONFIG"] = str(config)
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        log = open(self.base / "server.log", "ab")  # noqa: SIM115 (the child keeps it)
        self.procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "jobdock", "serve"], env=self.env, stdout=log, stderr=log
            )
        )
        wait_for(self._healthy, 60, "the server")
        user = self.token("bench")
        self.http = httpx.Client(
            base_url=self.url, headers={"authorization": f"Bearer {user}"}, timeout=30
        )

    def _healthy(self) -> bool:
        try:
            return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def token(self, user: str, *extra: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "jobdock", "tokens", "create", user, *extra],
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout.strip()

    def plain_agent(self) -> None:
        env = {**self.env, "JOBDOCK_HOME": str(self.base / "agent")}
        token = self.token("box", "--agent")
        log = open(self.base / "agent.log", "ab")  # noqa: SIM115 (the child keeps it)
        self.procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "jobdock",
                    "agent",
                    "--server",
                    self.url,
                    "--token",
                    token,
                    "--label",
                    "pool=gpu",
                    "--concurrency",
                    "1",
                ],
                env=env,
                stdout=log,
                stderr=log,
            )
        )
        wait_for(lambda: self.http.get("/v1/workers").json()["workers"], 60, "the agent")

    def db(self) -> sqlite3.Connection:
        return sqlite3.connect(f"file:{self.home / 'jobdock.db'}?mode=ro", uri=True)

    def machines_live(self) -> list[tuple[Any, ...]]:
        with self.db() as db:
            return db.execute(
                "SELECT id, state, provider_id, requested_at, booted_at FROM machines"
                " WHERE state NOT IN ('stopped', 'failed')"
            ).fetchall()

    def run_one(self) -> tuple[float, str, float]:
        """Submit one job; (client time before the POST, its id, started_at)."""
        before = time.time()
        response = self.http.post("/v1/jobs", json={"command": ["true"], "requires": GPU})
        job_id = str(response.json()["id"])

        def started() -> float | None:
            with self.db() as db:
                row = db.execute(
                    "SELECT started_at FROM attempts WHERE job_id = ? AND started_at IS NOT NULL",
                    (job_id,),
                ).fetchone()
            return None if row is None else float(row[0])

        return before, job_id, wait_for(started, 120, f"job {job_id} to start")

    def provider_end(self, provider_id: str, since: float) -> float:
        """When the provider's start of ``provider_id`` ended: its start
        script's end, or its container's ``start`` event on the engine."""
        if self.dockerd is None:
            return self.script_end(provider_id)
        filters = json.dumps(
            {"type": ["container"], "event": ["start"], "container": [provider_id]}
        )
        params = {"since": str(int(since)), "until": str(int(time.time()) + 1), "filters": filters}
        with self.dockerd.http() as http:
            events = [
                json.loads(line) for line in http.get("/events", params=params).text.splitlines()
            ]
        return float(events[0]["timeNano"]) / 1e9

    def script_end(self, provider_id: str) -> float:
        for line in (self.machines / "events").read_text().splitlines():
            parts = line.split()
            if parts[:2] == ["start", provider_id]:
                return float(parts[2])
        raise SystemExit(f"no start of {provider_id} in the events")

    def close(self) -> None:
        for pid_file in self.machines.glob("*.pid"):
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid_file.read_text()), signal.SIGKILL)
        for proc in reversed(self.procs):
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


def cold(base: Path, rounds: int, dockerd: Any = None) -> dict[str, list[float]]:
    case = Case(base, pool_min=0, dockerd=dockerd)
    parts: dict[str, list[float]] = {k: [] for k in ("decision", "provider", "agent", "claim")}
    parts["total"] = []
    try:
        case.start()
        for _ in range(rounds):
            wait_for(lambda: not case.machines_live(), 60, "no machine")
            before, _job_id, started = case.run_one()
            with case.db() as db:
                row = db.execute(
                    "SELECT provider_id, requested_at, booted_at FROM machines"
                    " ORDER BY requested_at DESC LIMIT 1"
                ).fetchone()
            provider_id, requested, booted = row[0], float(row[1]), float(row[2] or started)
            script_end = case.provider_end(provider_id, before - 1)
            parts["decision"].append(requested - before)
            parts["provider"].append(script_end - requested)
            parts["agent"].append(booted - script_end)
            parts["claim"].append(started - booted)
            parts["total"].append(started - before)
    finally:
        case.close()
    return parts


def warm(base: Path, rounds: int, plain: bool, dockerd: Any = None) -> list[float]:
    case = Case(base, pool_min=None if plain else 1, dockerd=None if plain else dockerd)
    totals = []
    try:
        case.start()
        if plain:
            case.plain_agent()
        else:
            wait_for(
                lambda: [m for m in case.machines_live() if m[1] == "ready"], 60, "a warm machine"
            )
        for _ in range(rounds):
            before, _, started = case.run_one()
            totals.append(started - before)
    finally:
        case.close()
    return totals


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, choices=range(1, 101), metavar="N")
    parser.add_argument("--provider", choices=("command", "docker"), default="command")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="jobdock-bench-machines-"))
    dockerd = _engines().Dockerd().start() if args.provider == "docker" else None
    try:
        # Kept after a failure, for its servers' and agents' logs.
        parts = cold(base / "cold", args.rounds, dockerd)
        hot = warm(base / "warm", args.rounds, plain=False, dockerd=dockerd)
        agent = warm(base / "agent", args.rounds, plain=True)
    finally:
        if dockerd is not None:
            _engines().remove_machines(dockerd)
            dockerd.remove()
    shutil.rmtree(base, ignore_errors=True)
    med = statistics.median
    print(f"submit -> started, {args.provider} pool, median of {args.rounds} (seconds)")
    print(f"{'case':<34}{'total':>8}{'decide':>8}{'provider':>10}{'agent':>8}{'claim':>8}")
    print(
        f"{'cold: a machine started':<34}{med(parts['total']):>8.2f}{med(parts['decision']):>8.2f}"
        f"{med(parts['provider']):>10.2f}{med(parts['agent']):>8.2f}{med(parts['claim']):>8.2f}"
    )
    print(f"{'warm: min = 1, machine ready':<34}{med(hot):>8.2f}")
    print(f"{'a plain running agent':<34}{med(agent):>8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
