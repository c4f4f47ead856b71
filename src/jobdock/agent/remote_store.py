"""The worker's side of the store, over HTTP(S): what ``jobdock agent``'s
Worker runs on instead of a database (docs/agents.md).

:class:`RemoteStore` has every method of ``store.protocol.WorkerSide``,
each one call of the server's agent routes (api/agent.py), so the Worker
is the same one that runs on a store. Its differences are the network's:

- A server that cannot be reached raises StoreError, which the worker
  retries (``Worker._persist``) while its jobs run on; a refused fence
  (``fenced_off``, or the agent's token revoked) raises FencedOff.
- Output goes through an :class:`~jobdock.agent.output.Output` per
  attempt: buffered while the server is away, resumed without loss or
  duplication.
- Waiting for work is a long poll of the server (:class:`RemoteEvents`).
- The secrets of an attempt come from the server in plain text (over
  TLS); they are handed to the Worker encrypted with a key of this
  process's own, which it decrypts with (``secret_key``).

Imports the credentials, the events, the wire format, the vault and the
foundation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from jobdock.agent.output import Output
from jobdock.agent_wire import (
    CHUNKS_TYPE,
    claim_of,
    encode_chunks,
    outcome_to_json,
    reply_of,
    secrets_of,
    started_to_json,
    stdin_of,
)
from jobdock.credentials import USER_AGENT, Credentials
from jobdock.errors import (
    FencedOff,
    InvalidRequest,
    JobdockError,
    SpawnError,
    StoreError,
    Unauthenticated,
)
from jobdock.events import Events
from jobdock.models.outcome import Outcome
from jobdock.models.records import (
    Claim,
    HeartbeatReply,
    Limits,
    LogChunk,
    Started,
    StdinRead,
    WorkerInfo,
)
from jobdock.models.workflow_moves import Planner
from jobdock.vault import Vault, generate_key

_log = logging.getLogger(__name__)

#: Statuses that mean "try again": the server or a proxy is busy or away.
_RETRYABLE = frozenset({408, 425, 429, 500, 502, 503, 504})
#: The most starts and ends one request reports (api/agent.py's MAX_REPORTS).
MAX_REPORTS = 256
#: How long calls the worker does not retry itself are tried for.
_CALL_RETRY_SECONDS = 30.0


class RemoteEvents(Events):
    """The worker's wake-ups, with its wait for work a long poll of the
    server (which answers as soon as a job may be claimable). A local
    ``work_available()`` (the worker stopping) ends the wait at once."""

    def __init__(self, store: RemoteStore) -> None:
        super().__init__()
        self._store = store

    async def wait_work(self, timeout: float) -> None:
        # The worker's timeout is its poll interval: the server's wait,
        # bounded by when the next job is due, replaces it.
        poll = asyncio.ensure_future(self._store.wait_for_work())
        local = asyncio.ensure_future(self._work.wait())
        try:
            done, _ = await asyncio.wait({poll, local}, return_when=asyncio.FIRST_COMPLETED)
            if poll in done and poll.exception() is not None:
                # The server is away: do not ask again at once.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        await local
        finally:
            for task in (poll, local):
                task.cancel()
            self._work.clear()


class _Reporter:
    """Sends the starts and ends of attempts to the server together: those
    that come while a request is in flight go in the next one (as the
    store's group commit does with writes), so a busy agent pays one round
    trip for many jobs and an idle one waits for none."""

    def __init__(self, store: RemoteStore) -> None:
        self._store = store
        self._queue: list[tuple[dict[str, Any], asyncio.Future[None]]] = []
        self._task: asyncio.Task[None] | None = None

    async def report(self, job_id: str, attempt: int, **fields: Any) -> None:
        """Send one report; raises as its route would (FencedOff, StoreError, ...)."""
        done = asyncio.get_running_loop().create_future()
        self._queue.append(({"job_id": job_id, "attempt": attempt, **fields}, done))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._send(), name="jobdock-agent-reports")
        await done

    async def _send(self) -> None:
        while self._queue:
            batch, self._queue = self._queue[:MAX_REPORTS], self._queue[MAX_REPORTS:]
            try:
                found = await self._store._call(
                    "POST", "/reports", json={"reports": [report for report, _ in batch]}
                )
            except JobdockError as exc:
                for _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
                continue
            for (report, done), error in zip(batch, found["results"], strict=True):
                if done.done():
                    continue
                if error is None:
                    done.set_result(None)
                else:
                    done.set_exception(_refusal(report, error))

    async def aclose(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def _refusal(report: Mapping[str, Any], error: Mapping[str, Any]) -> JobdockError:
    """The exception of a report the server refused."""
    code, message = str(error.get("code")), str(error.get("message"))
    if code in ("fenced_off", "not_found"):
        return FencedOff(report["job_id"], report["attempt"])
    if code.startswith("invalid"):
        return InvalidRequest(f"the server refused a report: {code}: {message}")
    return StoreError(f"the server could not store a report: {message}")


class RemoteStore:
    """The worker's store, reached through a server's agent routes."""

    def __init__(
        self,
        url: str,
        credentials: Credentials,
        *,
        spool_dir: Path,
        memory_budget: int = 8 << 20,
        disk_budget: int = 256 << 20,
        timeout: float = 30.0,
    ) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.AsyncClient(
            base_url=self.url,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            headers={"user-agent": f"{USER_AGENT} agent", **credentials.headers()},
            verify=credentials.verify(self.url),
        )
        self.events: Events = RemoteEvents(self)
        #: The key the attempts' secrets are handed to the worker with
        #: (its settings' secret_key): this process's own, made at start.
        self.secret_key = generate_key()
        self._vault = Vault(self.secret_key)
        self._spool_dir = spool_dir
        self._budgets = (memory_budget, disk_budget)
        self._generation = 0
        self._max_wait = 30.0
        #: The attempt this agent runs of each job it holds.
        self._attempts: dict[str, int] = {}
        #: The owner of each job it holds: a uid is asked for with one of them.
        self._owners: dict[str, str] = {}
        self._outputs: dict[tuple[str, int], Output] = {}
        self._away = False
        #: Set once the server refuses the token (revoked, expired): the
        #: agent can do nothing more.
        self.refused = asyncio.Event()
        self._reporter = _Reporter(self)

    @property
    def shared(self) -> bool:
        """Always: other workers claim from the same server."""
        return True

    async def aclose(self) -> None:
        """Drop what is unsent and close the connections."""
        for output in list(self._outputs.values()):
            await output.aclose()
        await self._reporter.aclose()
        await self._http.aclose()

    # -- calls -----------------------------------------------------------------------------

    async def _call(
        self,
        method: str,
        path: str,
        *,
        fence: tuple[str, int] | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> Any:
        """One call of the agent routes; its JSON answer. StoreError when it
        should be tried again, FencedOff when ``fence``'s attempt is lost."""
        if timeout is not None:
            kwargs["timeout"] = timeout
        try:
            response = await self._http.request(method, f"/v1/agent{path}", **kwargs)
        except httpx.HTTPError as exc:
            self._went_away(exc)
            raise StoreError(f"the server {self.url} cannot be reached: {exc!r}") from None
        if self._away:
            self._away = False
            _log.info("the server %s answers again", self.url)
        if response.status_code < 400:
            return response.json()
        code, message = _error_of(response)
        if response.status_code == 401:
            self.refused.set()
        if fence is not None and (code == "fenced_off" or response.status_code == 401):
            raise FencedOff(*fence)
        if response.status_code in _RETRYABLE:
            raise StoreError(f"the server {self.url} answered {response.status_code}: {message}")
        if response.status_code == 401:
            raise Unauthenticated(message)
        raise InvalidRequest(f"the server refused {method} {path}: {code}: {message}")

    def _went_away(self, exc: Exception) -> None:
        if not self._away:
            self._away = True
            _log.warning("the server %s cannot be reached (%r); retrying", self.url, exc)

    async def _retried(self, method: str, path: str, **kwargs: Any) -> Any:
        """A call tried again while it fails with StoreError, for a while."""
        delay, deadline = 0.05, asyncio.get_running_loop().time() + _CALL_RETRY_SECONDS
        while True:
            try:
                return await self._call(method, path, **kwargs)
            except StoreError:
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def hello(self) -> dict[str, Any]:
        """What the server tells an agent before it starts (AgentHello)."""
        found: dict[str, Any] = await self._retried("POST", "/hello")
        self._max_wait = float(found["max_wait_seconds"])
        return found

    # -- workers and claims -------------------------------------------------------------

    async def register_worker(self, info: WorkerInfo) -> None:
        body = {
            "id": info.id,
            "host": info.host,
            "labels": info.labels,
            "concurrency": info.concurrency,
        }
        await self._retried("POST", "/workers", json=body)

    async def unregister_worker(self, worker_id: str, now: float) -> None:
        await self._call("POST", "/workers/stopped", json={"worker_id": worker_id})

    async def hand_back(self, worker_id: str) -> int:
        """Hand back at once the running attempts of ``worker_id``: its
        machine is being reclaimed. Their jobs run again elsewhere, not
        counted against their retries; answers how many there were."""
        found = await self._retried("POST", "/workers/interrupted", json={"worker_id": worker_id})
        return int(found["handed_back"])

    async def claim_jobs(
        self,
        worker_id: str,
        limit: int,
        now: float,
        lease_seconds: float,
        labels: Mapping[str, str] | None = None,
        limits: Limits | None = None,
    ) -> list[Claim]:
        # The lease and the concurrency limits are the server's.
        body = {"worker_id": worker_id, "limit": limit, "labels": dict(labels or {})}
        found = await self._call("POST", "/claim", json=body)
        self._generation = int(found["generation"])
        claims = [claim_of(item) for item in found["claims"]]
        for claim in claims:
            self._attempts[claim.job_id] = claim.attempt
            self._owners[claim.job_id] = claim.owner
        return claims

    async def wait_for_work(self) -> None:
        """Return when the server says a job may be claimable, or its wait
        ran out (at most its ``max_wait_seconds``)."""
        body = {"generation": self._generation, "seconds": self._max_wait}
        found = await self._call("POST", "/wait", json=body, timeout=self._max_wait + 10)
        self._generation = int(found["generation"])

    async def next_due(self) -> float | None:
        # The server's wait for work knows; the worker need not.
        return None

    async def heartbeat(
        self,
        worker_id: str,
        running: Mapping[str, int],
        lease_until: float,
        now: float | None = None,
    ) -> HeartbeatReply:
        body = {"worker_id": worker_id, "running": dict(running)}
        try:
            reply = reply_of(await self._call("POST", "/heartbeat", json=body))
        except Unauthenticated:
            # The token was revoked (or expired): every attempt is lost.
            _log.warning("the server no longer takes this agent's token: its jobs are lost")
            reply = HeartbeatReply(lost=frozenset(running))
        for job_id in reply.lost:
            number = running.get(job_id)
            output = self._outputs.get((job_id, number)) if number is not None else None
            if output is not None:
                output.drop()
        return reply

    # -- one attempt ----------------------------------------------------------------------

    def _path(self, job_id: str, attempt: int, what: str) -> str:
        return f"/attempts/{job_id}/{attempt}/{what}"

    async def wanted_labels(
        self, keys: Sequence[str], labels: Mapping[str, str], now: float
    ) -> set[str]:
        if not keys:
            return set()
        body = {"keys": list(keys), "labels": dict(labels)}
        found = await self._call("POST", "/wanted-labels", json=body)
        return {str(key) for key in found["keys"]}

    async def note_engine(
        self, job_id: str, attempt: int, engine_job: str, engine_state: str
    ) -> None:
        path = self._path(job_id, attempt, "engine")
        body = {"engine_job": engine_job, "engine_state": engine_state}
        await self._call("POST", path, json=body, fence=(job_id, attempt))

    async def mark_started(self, job_id: str, attempt: int, started: Started) -> None:
        await self._reporter.report(job_id, attempt, started=started_to_json(started))

    async def append_logs(self, job_id: str, attempt: int, chunks: Sequence[LogChunk]) -> None:
        output = self._outputs.get((job_id, attempt))
        if output is None:
            memory, disk = self._budgets
            output = Output(
                job_id,
                attempt,
                lambda batch, resume: self._send_chunks(job_id, attempt, batch, resume),
                spool_dir=self._spool_dir,
                memory_budget=memory,
                disk_budget=disk,
            )
            self._outputs[(job_id, attempt)] = output
        await output.put(chunks)

    async def _send_chunks(
        self, job_id: str, attempt: int, chunks: list[LogChunk], resume: bool
    ) -> None:
        await self._call(
            "POST",
            self._path(job_id, attempt, "logs"),
            content=encode_chunks(chunks),
            headers={"content-type": CHUNKS_TYPE},
            params={"resume": "true"} if resume else None,
            fence=(job_id, attempt),
        )

    async def _flush(self, job_id: str, attempt: int) -> None:
        """Wait until the attempt's output is stored (FencedOff if refused)."""
        output = self._outputs.get((job_id, attempt))
        if output is not None:
            await output.flush()

    async def _forget(self, job_id: str, attempt: int) -> None:
        output = self._outputs.pop((job_id, attempt), None)
        if output is not None:
            await output.aclose()
        if self._attempts.get(job_id) == attempt:
            del self._attempts[job_id]
            self._owners.pop(job_id, None)

    async def finish_attempt(self, job_id: str, attempt: int, outcome: Outcome) -> None:
        body = outcome_to_json(outcome)
        await self._end(
            job_id, attempt, lambda: self._reporter.report(job_id, attempt, outcome=body)
        )

    async def release_attempt(self, job_id: str, attempt: int, message: str, now: float) -> None:
        path, body = self._path(job_id, attempt, "release"), {"message": message}
        await self._end(
            job_id, attempt, lambda: self._call("POST", path, json=body, fence=(job_id, attempt))
        )

    async def _end(self, job_id: str, attempt: int, record: Callable[[], Awaitable[Any]]) -> None:
        """Store the attempt's output, then ``record`` its end: nothing is
        reported ended before its output is stored."""
        try:
            await self._flush(job_id, attempt)
            await record()
        except FencedOff:
            await self._forget(job_id, attempt)
            raise
        await self._forget(job_id, attempt)

    async def read_stdin(self, job_id: str, after: int = 0, limit: int = 4) -> StdinRead:
        attempt = self._attempts.get(job_id)
        if attempt is None:
            raise FencedOff(job_id, 0)
        found = await self._call(
            "GET",
            self._path(job_id, attempt, "stdin"),
            params={"after": after},
            fence=(job_id, attempt),
        )
        return stdin_of(found)

    async def job_secrets(self, job_id: str, names: Sequence[str]) -> dict[str, bytes]:
        attempt = self._attempts.get(job_id)
        if attempt is None:
            raise FencedOff(job_id, 0)
        try:
            found = await self._retried(
                "GET", self._path(job_id, attempt, "secrets"), fence=(job_id, attempt)
            )
        except InvalidRequest as exc:
            raise SpawnError(exc.message) from None
        except StoreError as exc:
            raise SpawnError(f"cannot read the job's secrets from the server: {exc}") from None
        values = secrets_of(found)
        # Encrypted again, with this process's key, as the worker's vault
        # expects them from a store.
        return {name: self._vault.encrypt(value) for name, value in values.items() if name in names}

    async def job_uid(self, owner: str, low: int, high: int) -> int:
        # Asked with an attempt of the owner's that this agent holds: the
        # server answers for no other owner.
        held = [job_id for job_id, whose in self._owners.items() if whose == owner]
        if not held:
            raise StoreError(
                f"cannot learn the uid of {owner}'s jobs: no attempt of theirs is held"
            )
        body = {"owner": owner, "job_id": held[0], "attempt": self._attempts[held[0]]}
        try:
            found = await self._retried("POST", "/uids", json=body)
        except JobdockError as exc:
            raise StoreError(f"cannot learn the uid of {owner}'s jobs: {exc}") from None
        return int(found["uid"])

    async def advance_workflow(self, workflow_id: str, now: float, plan: Planner) -> bool:
        # The server moves a workflow on when it records its step's end.
        return True


def _error_of(response: httpx.Response) -> tuple[str, str]:
    """The code and message of an error answer (any body)."""
    try:
        error = response.json()["error"]
        return str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        return "http_error", response.text[:200] or response.reason_phrase
