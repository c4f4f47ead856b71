"""Machine pools to watch (tests of docs/machines.md#watching-machines): a
real server with two ``command`` pools whose scripts would start nothing,
and its autoscaler standing by: the test holds the store's ``autoscaler``
lease, so that the machines recorded here through the store's own methods
stay as recorded. One of them has a real agent, with the agent token made
for it, running a job.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from agents import AgentProcess
from jobdock.auth import create_token
from jobdock.machines.lease import AUTOSCALER_LEASE
from jobdock.models.machines import MachineRecord, MachineState, PoolState
from jobdock.store.sql import SqlStore
from support import ServerProcess, jobdock, make_token

CONFIG = """\
[[pools]]
name = "gpu"
provider = "command"
labels = { pool = "gpu" }
max = 3
boot_timeout = 120
[pools.command]
start = ["false"]
stop = ["true"]

[[pools]]
name = "cpu"
provider = "command"
[pools.command]
start = ["false"]
stop = ["true"]
"""
NOW = time.time()
HOUR = 3600.0


def machine(machine_id: str, state: MachineState, requested: float, **times: Any) -> MachineRecord:
    fields: dict[str, Any] = {
        "provider_id": f"cmd-{machine_id}",
        "token_id": None,
        "jobs_done": 0,
        "booted_at": None,
        "last_busy_at": None,
        "stopping_at": None,
        "stopped_at": None,
        "error": None,
        "server": "test",
        **times,
    }
    return MachineRecord(id=machine_id, pool="gpu", state=state, requested_at=requested, **fields)


#: A machine that booted in 30 s and runs the agent below; one that failed
#: an hour ago; one stopped two days ago (past the default ``since``).
FAILED = machine(
    "m-gpu-0002", "failed", NOW - 2 * HOUR, stopped_at=NOW - HOUR, error="never registered"
)
OLD = machine(
    "m-gpu-0003",
    "stopped",
    NOW - 50 * HOUR,
    booted_at=NOW - 50 * HOUR + 20,
    stopped_at=NOW - 49 * HOUR,
    jobs_done=4,
)
POOL = PoolState("gpu", 2, NOW + HOUR, "start failed: exit 1", "start 1: 1 job waits", NOW - 5)


@dataclass
class Watched:
    server: ServerProcess
    admin: str
    user: str
    agent_secret: str
    ready_id: str
    job_id: str

    def get(self, path: str, token: str | None = None, **params: str) -> httpx.Response:
        headers = {"authorization": f"Bearer {token or self.admin}"}
        return httpx.get(self.server.url + path, params=params, headers=headers, timeout=30)

    def cli(self, *args: str, token: str | None = None) -> Any:
        env = {"JOBDOCK_URL": self.server.url, "JOBDOCK_TOKEN": token or self.admin}
        return jobdock("machines", *args, env=env)


async def _record(db: str) -> tuple[str, str]:
    """Hold the autoscaler's lease, record the machines and the pool's
    state; the secret and id of the ready machine's agent token."""
    async with SqlStore(db) as store:
        assert await store.take_lease(AUTOSCALER_LEASE, "the-test", NOW, NOW + 86400)
        made = await create_token(store, "pool-gpu", agent=True, actor="autoscaler")
        ready = machine(
            "m-gpu-0001",
            "ready",
            NOW - 100,
            booted_at=NOW - 70,
            last_busy_at=NOW - 10,
            token_id=made.info.id,
            jobs_done=1,
        )
        for record in (OLD, FAILED, ready):
            await store.add_machine(record)
        await store.record_pool(POOL)
        return made.token, ready.id


@contextlib.contextmanager
def watched_site(home: Path) -> Iterator[Watched]:
    """A started server on ``home`` with the pools of CONFIG and the
    machines above recorded, its autoscaler standing by, the ready
    machine's agent running a job of alice's (a minute's sleep)."""
    db = f"sqlite:///{home}/jobs.db"
    admin = make_token(home, "root", "--admin", "--db", db)
    user = make_token(home, "alice", "--db", db)
    secret, ready_id = asyncio.run(_record(db))
    (home / "jobdock.toml").write_text(CONFIG)
    server = ServerProcess(
        home, db=db, tokens="true", concurrency="0", config=str(home / "jobdock.toml")
    ).launch()
    agent = AgentProcess(home / "agent", server.url, secret)
    try:
        # A loaded machine (the tests share two cores) can be slow to start it.
        server.wait_healthy(timeout=90)
        agent.launch()
        answer = httpx.post(
            server.url + "/v1/jobs",
            json={"command": ["sleep", "60"]},
            headers={"authorization": f"Bearer {user}"},
            timeout=30,
        )
        assert answer.status_code == 201, answer.text
        yield Watched(server, admin, user, secret, ready_id, answer.json()["id"])
    finally:
        if agent.proc is not None:
            agent.stop()
        server.stop()
