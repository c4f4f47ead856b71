"""The Python client of the jobdock HTTP API.

``AsyncClient`` is the one implementation; ``Client`` runs it on an event
loop in a background thread for code (and the CLI) that is not async.
"""

from __future__ import annotations

import builtins
import contextlib
import math
import ssl
import struct
import threading
import time
import weakref
from collections.abc import AsyncGenerator, AsyncIterable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import anyio
import httpx
from anyio.from_thread import BlockingPortal
from anyio.streams.memory import MemoryObjectReceiveStream
from pydantic import ValidationError

from jobdock.errors import ApiError, ServerUnreachable
from jobdock.models import (
    AuditPage,
    Flow,
    Job,
    JobPage,
    JobSpec,
    JobState,
    PruneResult,
    RunResult,
    Schedule,
    ScheduleList,
    ScheduleSpec,
    SecretInfo,
    SecretList,
    Stream,
    WorkerList,
    WorkerRecord,
    Workflow,
    WorkflowPage,
    WorkflowSpec,
    invalid_spec,
)
from jobdock.settings import load_settings

T = TypeVar("T")
SpecLike = JobSpec | Mapping[str, Any]
WorkflowLike = WorkflowSpec | Flow | Mapping[str, Any]
#: How often waiting for a workflow asks the server.
_WORKFLOW_POLL = 0.5

_HEADER = struct.Struct(">BxxxI")
_STREAMS = {1: Stream.STDOUT, 2: Stream.STDERR}
#: The longest single wait request; longer waits are several requests.
_WAIT_SLICE = 60.0
#: How long a client's loop thread may take to start, or to stop and close.
_CLOSE_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class Credentials:
    """How a client proves who it is, and whom it trusts: an API token, a CA
    for the server's certificate, a client certificate and key (mutual TLS)."""

    token: str | None = None
    ca: Path | str | None = None
    cert: Path | str | None = None
    key: Path | str | None = None

    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"} if self.token else {}

    def verify(self) -> ssl.SSLContext | bool:
        """What httpx checks the server with: the system's CAs, or ``ca``."""
        if self.ca is None and self.cert is None:
            return True
        context = ssl.create_default_context(cafile=str(self.ca) if self.ca else None)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.cert is not None:
            context.load_cert_chain(str(self.cert), str(self.key) if self.key else None)
        return context


def _as_spec(spec: SpecLike) -> JobSpec:
    if isinstance(spec, JobSpec):
        return spec
    try:
        return JobSpec.model_validate(spec)
    except ValidationError as exc:
        raise invalid_spec(exc) from None


def _from_environment(url: str | None, credentials: Credentials | None) -> tuple[str, Credentials]:
    """The server and credentials given, else those the CLI would use (env
    JOBDOCK_URL, _TOKEN, _CA, _CERT, _KEY or the JOBDOCK_CONFIG file)."""
    if url is not None and credentials is not None:
        return url, credentials
    settings = load_settings(url=url)
    if credentials is None:
        token = settings.token.get_secret_value() if settings.token else None
        credentials = Credentials(token=token, ca=settings.ca, cert=settings.cert, key=settings.key)
    return settings.url, credentials


class AsyncClient:
    """An asyncio client of one jobdock server (``url`` and ``credentials``
    not given: as the CLI's environment says)."""

    def __init__(
        self,
        url: str | None = None,
        *,
        timeout: float = 30.0,
        credentials: Credentials | None = None,
    ) -> None:
        url, credentials = _from_environment(url, credentials)
        self.url = url.rstrip("/")
        self.credentials = credentials
        self._http = httpx.AsyncClient(
            base_url=self.url,
            timeout=httpx.Timeout(timeout, read=None),
            headers={"user-agent": "jobdock-client", **credentials.headers()},
            verify=credentials.verify(),
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connections."""
        await self._http.aclose()

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ServerUnreachable(
                f"cannot reach the jobdock server at {self.url}: {exc}"
            ) from None
        if response.status_code >= 400:
            raise _api_error(response)
        return response

    async def health(self) -> dict[str, Any]:
        """The server's health report."""
        result: dict[str, Any] = (await self._request("GET", "/healthz")).json()
        return result

    async def submit(self, spec: SpecLike) -> Job:
        """Submit a job; returns it (state ``queued``) at once."""
        body = _as_spec(spec).model_dump(mode="json", exclude_defaults=True)
        response = await self._request("POST", "/v1/jobs", json=body)
        return Job.model_validate_json(response.content)

    async def get(self, job_id: str) -> Job:
        """The job's record with its attempts."""
        response = await self._request("GET", f"/v1/jobs/{job_id}")
        return Job.model_validate_json(response.content)

    async def list(
        self,
        *,
        states: Sequence[JobState | str] = (),
        labels: Mapping[str, str] | None = None,
        name: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
        owner: str | None = None,
    ) -> JobPage:
        """One page of jobs, newest first (``owner``: only that user's; a user
        who is not an admin sees only their own in any case)."""
        params: list[tuple[str, str | int]] = [("state", str(s)) for s in states]
        if owner is not None:
            params.append(("owner", owner))
        params += [("label", f"{k}={v}") for k, v in (labels or {}).items()]
        if name is not None:
            params.append(("name", name))
        if cursor is not None:
            params.append(("cursor", cursor))
        params.append(("limit", limit))
        response = await self._request("GET", "/v1/jobs", params=params)
        return JobPage.model_validate_json(response.content)

    async def cancel(self, job_id: str, kill: bool = False) -> Job:
        """Cancel the job, or ask its worker to stop it (``kill``: with
        SIGKILL at once, without its grace); raises ApiError (409) if it has
        already finished."""
        params = {"kill": "true"} if kill else None
        response = await self._request("POST", f"/v1/jobs/{job_id}/cancel", params=params)
        return Job.model_validate_json(response.content)

    async def wait(self, job_id: str, timeout: float | None = None) -> Job:
        """Wait until the job finishes (or ``timeout`` seconds pass) and return it."""
        remaining = math.inf if timeout is None else timeout
        while True:
            step = min(remaining, _WAIT_SLICE)
            response = await self._request(
                "GET", f"/v1/jobs/{job_id}/wait", params={"timeout": step}
            )
            job = Job.model_validate_json(response.content)
            remaining -= step
            if job.terminal or remaining <= 0:
                return job

    async def logs(
        self,
        job_id: str,
        *,
        stream: Stream | None = None,
        follow: bool = False,
        offset: int = 0,
        attempt: int | None = None,
    ) -> AsyncGenerator[tuple[Stream, bytes], None]:
        """The job's output as (stream, bytes) pieces in order: one stream, or
        both when ``stream`` is None. With ``follow`` it ends when the job's
        attempt ends."""
        params: dict[str, Any] = {
            "stream": stream.value if stream else "both",
            "follow": follow,
            "offset": offset,
            "format": "multiplexed",
        }
        if attempt is not None:
            params["attempt"] = attempt
        try:
            async with self._http.stream(
                "GET", f"/v1/jobs/{job_id}/logs", params=params
            ) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise _api_error(response)
                buffer = bytearray()
                async for data in response.aiter_raw():
                    buffer += data
                    while len(buffer) >= _HEADER.size:
                        number, size = _HEADER.unpack_from(buffer)
                        if len(buffer) < _HEADER.size + size:
                            break
                        yield _STREAMS[number], bytes(buffer[_HEADER.size : _HEADER.size + size])
                        del buffer[: _HEADER.size + size]
        except httpx.TransportError as exc:
            raise ServerUnreachable(f"lost the jobdock server at {self.url}: {exc}") from None

    async def send_stdin(self, job_id: str, data: AsyncIterable[bytes], eof: bool = True) -> int:
        """Stream ``data`` into the stdin of a job submitted with ``stdin_stream``
        as it comes, then close it (``eof``); returns how many bytes it holds."""
        path, params = f"/v1/jobs/{job_id}/stdin", {"eof": "true" if eof else "false"}
        response = await self._request("POST", path, content=data, params=params)
        return int(response.json()["bytes"])

    async def workers(self) -> builtins.list[WorkerRecord]:
        """The workers known to the server's store."""
        response = await self._request("GET", "/v1/workers")
        return WorkerList.model_validate_json(response.content).workers

    async def run(self, spec: SpecLike) -> RunResult:
        """Run a job to its end and return it with its output."""
        body = _as_spec(spec).model_dump(mode="json", exclude_defaults=True)
        response = await self._request("POST", "/v1/run", json=body)
        return RunResult.model_validate_json(response.content)

    async def set_secret(self, name: str, value: bytes) -> None:
        """Create or replace one of your secrets."""
        await self._request(
            "PUT",
            f"/v1/secrets/{name}",
            content=value,
            headers={"content-type": "application/octet-stream"},
        )

    async def secrets(self) -> builtins.list[SecretInfo]:
        """Your secrets' names and times (never their values)."""
        response = await self._request("GET", "/v1/secrets")
        return SecretList.model_validate_json(response.content).secrets

    async def delete_secret(self, name: str) -> None:
        """Delete one of your secrets."""
        await self._request("DELETE", f"/v1/secrets/{name}")

    async def audit(self, *, limit: int = 50, cursor: str | None = None) -> AuditPage:
        """One page of the audit log, newest first (admins only)."""
        params: dict[str, Any] = {"limit": limit}
        if cursor is not None:
            params["cursor"] = cursor
        response = await self._request("GET", "/v1/audit", params=params)
        return AuditPage.model_validate_json(response.content)

    # -- schedules and retention (docs/scheduling.md) --

    async def add_schedule(self, spec: ScheduleSpec | Mapping[str, Any]) -> Schedule:
        """Add a cron schedule."""
        if not isinstance(spec, ScheduleSpec):
            try:
                spec = ScheduleSpec.model_validate(spec)
            except ValidationError as exc:
                raise invalid_spec(exc) from None
        body = spec.model_dump(mode="json", exclude_defaults=True)
        response = await self._request("POST", "/v1/schedules", json=body)
        return Schedule.model_validate_json(response.content)

    async def schedules(self) -> builtins.list[Schedule]:
        """Every schedule, by name."""
        response = await self._request("GET", "/v1/schedules")
        return ScheduleList.model_validate_json(response.content).schedules

    async def dispatch(self, template: str, body: Any = None) -> Job:
        """Submit the job the server's dispatch template makes of ``body``."""
        response = await self._request("POST", f"/v1/dispatch/{template}", json=body)
        return Job.model_validate_json(response.content)

    async def templates(self) -> builtins.list[str]:
        """The names of the server's dispatch templates."""
        response = await self._request("GET", "/v1/templates")
        return [item["name"] for item in response.json()["templates"]]

    async def test_template(
        self,
        name: str,
        body: Any = None,
        *,
        path: str | None = None,
        query: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """The spec the template would make of a request (after the
        server's policy), without submitting it."""
        request = {"body": body, "path": path, "query": dict(query or {})}
        request["headers"] = dict(headers or {})
        response = await self._request("POST", f"/v1/templates/{name}/test", json=request)
        spec: dict[str, Any] = response.json()["spec"]
        return spec

    async def remove_schedule(self, name: str, owner: str | None = None) -> None:
        """Remove your schedule ``name`` (an admin: ``owner``'s); its jobs stay."""
        await self._request("DELETE", f"/v1/schedules/{name}", params=_owner(owner))

    async def pause_schedule(
        self, name: str, paused: bool = True, owner: str | None = None
    ) -> Schedule:
        """Pause your schedule ``name`` (an admin: ``owner``'s), or resume it
        with ``paused=False``."""
        action = "pause" if paused else "resume"
        response = await self._request(
            "POST", f"/v1/schedules/{name}/{action}", params=_owner(owner)
        )
        return Schedule.model_validate_json(response.content)

    async def prune(self, older_than: str | None = None) -> int:
        """Delete finished jobs past their retention (or finished longer than
        ``older_than`` ago, e.g. '1d'); returns how many."""
        params = {} if older_than is None else {"older_than": older_than}
        response = await self._request("POST", "/v1/prune", params=params)
        return PruneResult.model_validate_json(response.content).deleted

    # -- workflows (docs/workflows.md) --

    async def submit_workflow(
        self, workflow: WorkflowLike, params: Mapping[str, Any] | None = None
    ) -> Workflow:
        """Submit a workflow (a document, a :class:`Flow` or a mapping), with
        ``params`` given values; returns it with its first steps started."""
        spec = _as_workflow(workflow)
        if params:
            spec = spec.with_params(params)
        body = spec.model_dump(mode="json", exclude_defaults=True)
        response = await self._request("POST", "/v1/workflows", json=body)
        return Workflow.model_validate_json(response.content)

    async def workflow(self, workflow_id: str) -> Workflow:
        """The workflow with its steps."""
        response = await self._request("GET", f"/v1/workflows/{workflow_id}")
        return Workflow.model_validate_json(response.content)

    async def workflows(
        self, *, states: Sequence[str] = (), limit: int = 50, cursor: str | None = None
    ) -> WorkflowPage:
        """One page of your workflows, newest first."""
        params: list[tuple[str, str | int]] = [("state", str(s)) for s in states]
        params.append(("limit", limit))
        if cursor is not None:
            params.append(("cursor", cursor))
        response = await self._request("GET", "/v1/workflows", params=params)
        return WorkflowPage.model_validate_json(response.content)

    async def cancel_workflow(self, workflow_id: str) -> Workflow:
        """Cancel a workflow: its running steps stop, its completed ones are reverted."""
        response = await self._request("POST", f"/v1/workflows/{workflow_id}/cancel")
        return Workflow.model_validate_json(response.content)

    async def wait_workflow(self, workflow_id: str, timeout: float | None = None) -> Workflow:
        """Wait until the workflow finishes (or ``timeout`` seconds pass) and return it."""
        deadline = math.inf if timeout is None else time.monotonic() + timeout
        while True:
            workflow = await self.workflow(workflow_id)
            if workflow.terminal or time.monotonic() >= deadline:
                return workflow
            await anyio.sleep(min(_WORKFLOW_POLL, max(0.0, deadline - time.monotonic())))


def _owner(owner: str | None) -> dict[str, str] | None:
    """The query naming a schedule's owner, where one is given (admins)."""
    return None if owner is None else {"owner": owner}


def _as_workflow(workflow: WorkflowLike) -> WorkflowSpec:
    if isinstance(workflow, WorkflowSpec):
        return workflow
    if isinstance(workflow, Flow):
        return workflow.spec()
    try:
        return WorkflowSpec.model_validate(workflow)
    except ValidationError as exc:
        raise invalid_spec(exc) from None


def _api_error(response: httpx.Response) -> ApiError:
    try:
        error = response.json()["error"]
        return ApiError(response.status_code, str(error["code"]), str(error["message"]))
    except (ValueError, KeyError, TypeError):
        text = response.text.strip()[:200] or response.reason_phrase
        return ApiError(response.status_code, "http_error", f"HTTP {response.status_code}: {text}")


class Client:
    """A blocking client of one jobdock server; each call runs the matching
    :class:`AsyncClient` method on a private (daemon) event loop thread."""

    def __init__(
        self,
        url: str | None = None,
        *,
        timeout: float = 30.0,
        credentials: Credentials | None = None,
    ) -> None:
        self.aio = AsyncClient(url, timeout=timeout, credentials=credentials)
        self.url = self.aio.url
        self.credentials = self.aio.credentials
        self._portal, thread = _start_loop_thread()
        # Runs once: at close(), when the client is collected, or at exit.
        self._finalizer = weakref.finalize(self, _stop_loop_thread, self._portal, self.aio, thread)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections and stop the loop thread."""
        self._finalizer()

    def health(self) -> dict[str, Any]:
        """The server's health report."""
        return self._portal.call(self.aio.health)

    def submit(self, spec: SpecLike) -> Job:
        """Submit a job; returns it (state ``queued``) at once."""
        return self._portal.call(self.aio.submit, spec)

    def get(self, job_id: str) -> Job:
        """The job's record with its attempts."""
        return self._portal.call(self.aio.get, job_id)

    def list(self, **filters: Any) -> JobPage:
        """One page of jobs, newest first (filters as in AsyncClient.list)."""
        return self._portal.call(lambda: self.aio.list(**filters))

    def cancel(self, job_id: str, kill: bool = False) -> Job:
        """Cancel the job, or ask its worker to stop it (``kill``: at once)."""
        return self._portal.call(self.aio.cancel, job_id, kill)

    def wait(self, job_id: str, timeout: float | None = None) -> Job:
        """Wait until the job finishes (or ``timeout`` seconds pass)."""
        return self._portal.call(self.aio.wait, job_id, timeout)

    def run(self, spec: SpecLike) -> RunResult:
        """Run a job to its end and return it with its output."""
        return self._portal.call(self.aio.run, spec)

    def send_stdin(self, job_id: str, data: Iterable[bytes], eof: bool = True) -> int:
        """As AsyncClient.send_stdin; ``data`` is read on this thread, a piece at a time."""
        send, receive = anyio.create_memory_object_stream[bytes](1)
        sent = self._portal.start_task_soon(_send_from, self.aio, job_id, receive, eof)
        try:
            with contextlib.suppress(anyio.BrokenResourceError):  # the request ended early
                for piece in data:
                    self._portal.call(send.send, piece)
        except BaseException:
            sent.cancel()
            raise
        self._portal.call(send.aclose)
        return sent.result()

    def workers(self) -> builtins.list[WorkerRecord]:
        """The workers known to the server's store."""
        return self._portal.call(self.aio.workers)

    def set_secret(self, name: str, value: bytes) -> None:
        """Create or replace one of your secrets."""
        self._portal.call(self.aio.set_secret, name, value)

    def secrets(self) -> builtins.list[SecretInfo]:
        """Your secrets' names and times (never their values)."""
        return self._portal.call(self.aio.secrets)

    def delete_secret(self, name: str) -> None:
        """Delete one of your secrets."""
        self._portal.call(self.aio.delete_secret, name)

    def audit(self, **options: Any) -> AuditPage:
        """One page of the audit log (options as in AsyncClient.audit)."""
        return self._portal.call(lambda: self.aio.audit(**options))

    def add_schedule(self, spec: ScheduleSpec | Mapping[str, Any]) -> Schedule:
        """Add a cron schedule."""
        schedule: Schedule = self._portal.call(self.aio.add_schedule, spec)
        return schedule

    def schedules(self) -> builtins.list[Schedule]:
        """Every schedule, by name."""
        return self._portal.call(self.aio.schedules)

    def dispatch(self, template: str, body: Any = None) -> Job:
        """Submit the job the server's dispatch template makes of ``body``."""
        job: Job = self._portal.call(self.aio.dispatch, template, body)
        return job

    def templates(self) -> builtins.list[str]:
        """The names of the server's dispatch templates."""
        return self._portal.call(self.aio.templates)

    def test_template(self, name: str, body: Any = None, **request: Any) -> dict[str, Any]:
        """The spec the template would make of a request, without submitting it."""
        return self._portal.call(partial(self.aio.test_template, name, body, **request))

    def remove_schedule(self, name: str, owner: str | None = None) -> None:
        """Remove your schedule (an admin: ``owner``'s); its jobs stay."""
        self._portal.call(self.aio.remove_schedule, name, owner)

    def pause_schedule(self, name: str, paused: bool = True, owner: str | None = None) -> Schedule:
        """Pause a schedule, or resume it with ``paused=False``."""
        return self._portal.call(self.aio.pause_schedule, name, paused, owner)

    def prune(self, older_than: str | None = None) -> int:
        """Delete finished jobs past their retention; returns how many."""
        return self._portal.call(self.aio.prune, older_than)

    def submit_workflow(
        self, workflow: WorkflowLike, params: Mapping[str, Any] | None = None
    ) -> Workflow:
        """Submit a workflow with ``params`` given values."""
        submitted: Workflow = self._portal.call(self.aio.submit_workflow, workflow, params)
        return submitted

    def workflow(self, workflow_id: str) -> Workflow:
        """The workflow with its steps."""
        return self._portal.call(self.aio.workflow, workflow_id)

    def workflows(self, **options: Any) -> WorkflowPage:
        """One page of your workflows (options as in AsyncClient.workflows)."""
        return self._portal.call(lambda: self.aio.workflows(**options))

    def cancel_workflow(self, workflow_id: str) -> Workflow:
        """Cancel a workflow."""
        return self._portal.call(self.aio.cancel_workflow, workflow_id)

    def wait_workflow(self, workflow_id: str, timeout: float | None = None) -> Workflow:
        """Wait until the workflow finishes (or ``timeout`` seconds pass)."""
        return self._portal.call(self.aio.wait_workflow, workflow_id, timeout)

    def logs(self, job_id: str, **options: Any) -> Iterator[tuple[Stream, bytes]]:
        """The job's output as (stream, bytes) pieces (options as in AsyncClient.logs)."""
        pieces = self.aio.logs(job_id, **options)
        try:
            while True:
                try:
                    yield self._portal.call(pieces.__anext__)
                except StopAsyncIteration:
                    return
        finally:
            self._portal.call(pieces.aclose)


async def _send_from(
    aio: AsyncClient, job_id: str, data: MemoryObjectReceiveStream[bytes], eof: bool
) -> int:
    async with data:  # closed when the request ends: the sender stops then
        return await aio.send_stdin(job_id, data, eof)


def _start_loop_thread() -> tuple[BlockingPortal, threading.Thread]:
    """A portal into an event loop on a new thread, a daemon: the interpreter
    never waits for it at exit (for anyio's own portal thread it does)."""
    started: Future[BlockingPortal] = Future()

    async def serve() -> None:
        async with BlockingPortal() as portal:
            started.set_result(portal)
            await portal.sleep_until_stopped()

    thread = threading.Thread(target=anyio.run, args=(serve,), name="jobdock-client", daemon=True)
    thread.start()
    return started.result(_CLOSE_TIMEOUT), thread


def _stop_loop_thread(portal: BlockingPortal, aio: AsyncClient, thread: threading.Thread) -> None:
    """Close the connections and stop the loop; never wait forever (runs at exit too)."""
    with contextlib.suppress(RuntimeError):  # the loop has already stopped
        try:
            portal.start_task_soon(aio.aclose).result(_CLOSE_TIMEOUT)
        finally:
            portal.start_task_soon(portal.stop, True).result(_CLOSE_TIMEOUT)
    thread.join(_CLOSE_TIMEOUT)
