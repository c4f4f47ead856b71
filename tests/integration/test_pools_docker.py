"""The pools autoscaler end to end with the ``docker`` provider: a real
``jobdock serve`` (tokens on, its embedded worker running nothing) whose
``docker`` pool starts machines on the tests' dockerd, each a busybox
container running the real ``jobdock agent`` (the host's Python and this
checkout's virtual environment bind-mounted read-only, host network, so the
agent reaches the server on loopback; docs/machines.md#the-docker-provider).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import engines
from agents import site_at
from jobdock import JobState
from jobdock.models.machines import MachineState
from pools import PoolRecords
from support import eventually

DOCK = {"pool": "dock"}


def docker_pool_config() -> str:
    """A config file's text: one ``docker`` pool ``dock`` of at most one
    machine, stopped 2 s after its last job."""
    lines = [
        "[[pools]]",
        'name = "dock"',
        'provider = "docker"',
        'labels = { pool = "dock" }',
        "min = 0",
        "max = 1",
        "idle_timeout = 2",
        "boot_timeout = 90",
        "[pools.docker]",
        f"image = {json.dumps(engines.BUSYBOX)}",
        'network = "host"',
        f"mounts = {json.dumps(engines.host_python_mounts())}",
        f"agent_command = {json.dumps([sys.executable, '-m', 'jobdock', 'agent'])}",
        "stop_grace = 5",
    ]
    return "\n".join(lines) + "\n"


def test_a_job_for_a_docker_pool_starts_a_container_machine_that_runs_it_then_stops(
    tmp_path: Path, dockerd: engines.Engine
) -> None:
    config = tmp_path / "jobdock.toml"
    config.write_text(docker_pool_config())
    db = f"sqlite:///{tmp_path}/jobs.db"
    records = PoolRecords(db)
    try:
        with site_at(tmp_path, db=db, config=str(config), docker_host=dockerd.url) as site:
            job_id = site.submit({"command": ["cat", "/etc/group"], "requires": DOCK})
            states: list[MachineState] = []

            def machine_ready() -> bool:
                live = records.machines()
                if live and (not states or states[-1] != live[0].state):
                    states.append(live[0].state)
                return bool(live) and live[0].state == "ready"

            eventually(machine_ready, 90, "the pool's machine to be ready")
            [machine] = records.machines()
            assert machine.provider_id in engines.machine_containers(dockerd)
            job = site.finished(job_id, timeout=60)

            assert job.state is JobState.SUCCEEDED, site.logs()
            # It ran in the machine's container: the busybox image's
            # /etc/group (tests/engines.py), not the host's.
            assert site.output(job_id) == b"root:x:0:\nnogroup:x:65534:\n"
            assert job.attempts[-1].worker is not None
            assert job.attempts[-1].worker.startswith(f"agent-{machine.token_id}-")
            # Only the states the store moved it through, in order (a poll
            # may miss "requested", which lasts one create call).
            assert states[-2:] == ["booting", "ready"]

            stopped = eventually(
                lambda: (m := records.machines(since=0)[0]).state == "stopped" and m,
                30,
                "the idle machine to stop",
            )
            assert (stopped.id, stopped.jobs_done, stopped.error) == (machine.id, 1, None)
            assert stopped.token_id is not None and records.token_revoked(stopped.token_id)
            assert engines.machine_containers(dockerd) == []
            # Scale to zero stays at zero: an observation window (not a wait
            # for a condition) in which nothing may happen; the autoscaler
            # runs about once a second, so 3 s is three rounds or more.
            time.sleep(3)
            assert records.machines() == []
            assert [m.id for m in records.machines(since=0)] == [machine.id]
            assert engines.machine_containers(dockerd) == []
    finally:
        engines.remove_machines(dockerd)
