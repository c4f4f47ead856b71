"""What the agent tests share: ``jobdock agent`` in a subprocess, a server
with agents in mind, and reading jobs as a user would."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx

from jobdock import Job, JobState, Reason
from jobdock.models import ACTIVE_STATES
from support import ServerProcess, WorkerProcess, eventually, make_token, stop_all


class AgentProcess(WorkerProcess):
    """``jobdock agent --server URL --token T`` in a subprocess, with
    FAST_SETTINGS (the server's lease and heartbeat win), its own home and
    its output in ``log_path``."""

    def __init__(
        self, home: Path, url: str, token: str | None, *, args: Sequence[str] = (), **kw: Any
    ) -> None:
        super().__init__(home, url, args=args, **kw)
        self.url, self.token = url, token
        self.log_path = home / "agent.log"

    def command(self) -> list[str]:
        token = ["--token", self.token] if self.token else []
        return [sys.executable, "-m", "jobdock", "agent", "--server", self.url, *token, *self.args]


class Site:
    """A server with agent tokens and the agents of one test; ``close()``
    ends them all."""

    def __init__(self, base: Path, server: ServerProcess, db: str | None = None) -> None:
        self.base = base
        self.server = server
        self.agents: list[AgentProcess] = []
        store = ("--db", db) if db else ()
        self.user_token = make_token(server.home, "alice", *store)
        self.agent_token = make_token(server.home, "box", "--agent", *store)
        self.http = httpx.Client(
            base_url=server.url, headers={"authorization": f"Bearer {self.user_token}"}, timeout=30
        )

    def agent(
        self, *, token: str | None = None, url: str | None = None, **options: Any
    ) -> AgentProcess:
        """An agent with the site's agent token (or ``token``) of the site's
        server (or the one at ``url``), launched."""
        proc = AgentProcess(
            self.base / f"agent-{len(self.agents)}",
            url or self.server.url,
            token or self.agent_token,
            **options,
        )
        self.agents.append(proc)
        return proc.launch()

    def submit(self, spec: dict[str, Any]) -> str:
        response = self.http.post("/v1/jobs", json=spec)
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    def job(self, job_id: str) -> Job:
        response = self.http.get(f"/v1/jobs/{job_id}")
        assert response.status_code == 200, response.text
        return Job.model_validate_json(response.content)

    def finished(self, job_id: str, timeout: float = 30) -> Job:
        return eventually(
            lambda: (job := self.job(job_id)).terminal and job, timeout, f"job {job_id} to end"
        )

    def submit_many(self, specs: Sequence[dict[str, Any]]) -> list[str]:
        return [self.submit(spec) for spec in specs]

    def all_finished(self, ids: Sequence[str], timeout: float) -> dict[str, Job]:
        """The records of the jobs ``ids`` once every one has ended."""

        def none_active() -> bool:
            active = [("state", state.value) for state in ACTIVE_STATES]
            page = self.http.get("/v1/jobs", params=[*active, ("limit", "1")]).json()
            return not page["jobs"]

        eventually(none_active, timeout, f"{len(ids)} jobs to end")
        return {job_id: self.job(job_id) for job_id in ids}

    def output(self, job_id: str, stream: str = "stdout") -> bytes:
        response = self.http.get(f"/v1/jobs/{job_id}/logs", params={"stream": stream})
        assert response.status_code == 200, response.text
        return response.content

    def logs(self) -> str:
        parts = [f"--- {self.server.log_path}:\n{self.server.log()[-4000:]}"]
        parts += [f"--- {a.log_path} ({a.id}):\n{a.log()[-4000:]}" for a in self.agents]
        return "\n".join(parts)

    def close(self) -> None:
        self.http.close()
        stop_all(self.agents)


def site_of(base: Path, db: str | None = None, **settings: str) -> Iterator[Site]:
    """A started server (tokens on; its embedded worker runs no jobs, with
    concurrency 0, but its housekeeping reaps lost attempts) as a Site, for
    a fixture; closed (agents first) after the test."""
    if db is not None:
        settings["db"] = db
    server = ServerProcess(base / "server", tokens="true", concurrency="0", **settings)
    server.start()
    site = Site(base, server, db)
    try:
        yield site
    finally:
        site.close()
        server.stop()
        print(site.logs())


#: site_of as a context manager, for a test that sets the server up itself.
site_at = contextlib.contextmanager(site_of)


def ran_once(job: Job) -> bool:
    """Whether the job succeeded with exactly one attempt run to its end
    (the last), every other one lost with its agent."""
    ended = [a for a in job.attempts if a.reason is Reason.EXITED]
    others = {a.reason for a in job.attempts if a.reason is not Reason.EXITED}
    return (
        job.state is JobState.SUCCEEDED
        and len(ended) == 1
        and ended[0] is job.attempts[-1]
        and not others - {Reason.WORKER_LOST}
    )
