"""The Python client of the jobdock HTTP API.

``AsyncClient`` is the one implementation; ``Client`` runs it on an event
loop in a background thread for code (and the CLI) that is not async.
"""

from __future__ import annotations

import builtins
import contextlib
import math
import time
import weakref
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from functools import partial
from typing import Any, TypeVar, Unpack
from urllib.parse import quote

import anyio
import httpx
from anyio.streams.memory import MemoryObjectReceiveStream

from jobdock.client_bodies import (
    SpecLike,
    WorkflowLike,
    as_schedule,
    as_workflow,
    batch_bodies,
    chunks,
    list_query,
    owner_query,
    spec_body,
)
from jobdock.client_errors import error_of, finished, unreachable
from jobdock.client_options import (
    ListFilters,
    LogOptions,
    PageOptions,
    TemplateRequest,
    WorkflowFilters,
)
from jobdock.client_submit import (
    JSON,
    SOCKET_OPTIONS,
    BlockingSubmits,
    pool_options,
    submit_body,
    submitted_job,
)
from jobdock.client_submit import PATH as SUBMIT_PATH
from jobdock.credentials import USER_AGENT, from_environment
from jobdock.credentials import Credentials as Credentials
from jobdock.errors import ServerUnreachable
from jobdock.handles import AsyncJobHandle, JobHandle
from jobdock.loop_thread import start_loop_thread, stop_loop_thread
from jobdock.models import (
    AuditPage,
    Job,
    JobList,
    JobPage,
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
)
from jobdock.models.frames import Unframer

T = TypeVar("T")
#: How often waiting for a workflow asks the server.
_WORKFLOW_POLL = 0.5

#: The longest single wait request; longer waits are several requests.
_WAIT_SLICE = 60.0


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
        url, credentials = from_environment(url, credentials)
        self.url = url.rstrip("/")
        self.credentials = credentials
        verify = credentials.verify(self.url)
        headers = {"user-agent": USER_AGENT, **credentials.headers()}
        #: What a blocking pool of the same server takes (Client's submits).
        self.pool_options = pool_options(self.url, verify, timeout, headers)
        transport = httpx.AsyncHTTPTransport(verify=verify, socket_options=SOCKET_OPTIONS)
        self._http = httpx.AsyncClient(**self.pool_options, transport=transport)

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
            raise unreachable(self.url, exc) from None
        if response.status_code >= 400:
            raise error_of(response)
        return response

    async def health(self) -> dict[str, Any]:
        """The server's health report."""
        result: dict[str, Any] = (await self._request("GET", "/healthz")).json()
        return result

    async def submit(self, spec: SpecLike) -> AsyncJobHandle:
        """Submit a job; returns its handle (state ``queued``) at once."""
        body = submit_body(spec)
        try:
            response = await self._http.post(SUBMIT_PATH, content=body, headers=JSON)
        except httpx.TransportError as exc:
            raise unreachable(self.url, exc) from None
        return AsyncJobHandle.bind(submitted_job(response), self)

    async def submit_many(self, specs: Iterable[SpecLike]) -> builtins.list[AsyncJobHandle]:
        """Submit jobs in order, a batch of up to 1000 per request; returns
        their handles in order. Every spec is checked before any is sent;
        each batch is created all or none (an error stops at its batch)."""
        handles = []
        for chunk in chunks(batch_bodies(specs)):
            response = await self._request("POST", "/v1/jobs/batch", json={"jobs": chunk})
            jobs = JobList.model_validate_json(response.content).jobs
            handles += [AsyncJobHandle.bind(job, self) for job in jobs]
        return handles

    async def get(self, job_id: str) -> AsyncJobHandle:
        """The job's record with its attempts, as a handle. Here and in every
        method that takes a ``job_id``, it may also be a unique prefix of the
        id (4 characters or more) or the name of one of your jobs."""
        response = await self._request("GET", f"/v1/jobs/{quote(job_id, safe='')}")
        return AsyncJobHandle.bind(Job.model_validate_json(response.content), self)

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
        params = list_query(states, labels, name, limit, cursor, owner)
        response = await self._request("GET", "/v1/jobs", params=params)
        return JobPage.model_validate_json(response.content)

    async def cancel(self, job_id: str, kill: bool = False) -> Job:
        """Cancel the job, or ask its worker to stop it (``kill``: with
        SIGKILL at once, without its grace); raises ApiError (409) if it has
        already finished."""
        params = {"kill": "true"} if kill else None
        response = await self._request(
            "POST", f"/v1/jobs/{quote(job_id, safe='')}/cancel", params=params
        )
        return Job.model_validate_json(response.content)

    async def wait(
        self, job_id: str, timeout: float | None = None, *, raise_on_timeout: bool = True
    ) -> Job:
        """Wait until the job finishes and return it; after ``timeout`` seconds
        raise WaitTimeout (a TimeoutError), or return it unfinished if not
        ``raise_on_timeout``."""
        remaining = math.inf if timeout is None else timeout
        while True:
            step = min(remaining, _WAIT_SLICE)
            response = await self._request(
                "GET", f"/v1/jobs/{quote(job_id, safe='')}/wait", params={"timeout": step}
            )
            job = Job.model_validate_json(response.content)
            job_id = job.id  # a name or prefix means this job, whatever is submitted later
            remaining -= step
            if job.terminal or remaining <= 0:
                if raise_on_timeout:
                    finished(job, timeout)
                return job

    async def logs(
        self,
        job_id: str,
        *,
        stream: Stream | None = None,
        follow: bool = False,
        offset: int = 0,
        attempt: int | None = None,
        tail: int | None = None,
        since: str | float | None = None,
        timestamps: bool = False,
    ) -> AsyncGenerator[tuple[Stream, bytes], None]:
        """The job's output as (stream, bytes) pieces in order: one stream, or
        both when ``stream`` is None; only its last ``tail`` lines, or what
        arrived ``since`` (epoch seconds, '10m' ago, RFC 3339); each line
        after its arrival time with ``timestamps``. With ``follow`` it ends
        when the job's attempt ends."""
        params: dict[str, Any] = {"stream": stream.value if stream else "both", "follow": follow}
        params |= {"offset": offset, "format": "multiplexed", "timestamps": timestamps}
        optional = {"attempt": attempt, "tail": tail, "since": since}
        params |= {key: value for key, value in optional.items() if value is not None}
        try:
            async with self._http.stream(
                "GET", f"/v1/jobs/{quote(job_id, safe='')}/logs", params=params
            ) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise error_of(response)
                frames = Unframer()
                async for data in response.aiter_raw():
                    for piece in frames.feed(data):
                        yield piece
        except httpx.TransportError as exc:
            raise ServerUnreachable(f"lost the jobdock server at {self.url}: {exc}") from None

    async def delete(self, job_id: str) -> None:
        """Delete a finished job with its logs; raises ApiError (409) if it has not."""
        await self._request("DELETE", f"/v1/jobs/{quote(job_id, safe='')}")

    async def send_stdin(self, job_id: str, data: AsyncIterable[bytes], eof: bool = True) -> int:
        """Stream ``data`` into the stdin of a job submitted with ``stdin_stream``
        as it comes, then close it (``eof``); returns how many bytes it holds."""
        path, params = (
            f"/v1/jobs/{quote(job_id, safe='')}/stdin",
            {"eof": "true" if eof else "false"},
        )
        response = await self._request("POST", path, content=data, params=params)
        return int(response.json()["bytes"])

    async def stdin(self, job_id: str) -> bytes:
        """The stdin given with the job's spec (empty: none)."""
        response = await self._request("GET", f"/v1/jobs/{quote(job_id, safe='')}/stdin")
        return response.content

    async def workers(self) -> builtins.list[WorkerRecord]:
        """The workers known to the server's store."""
        response = await self._request("GET", "/v1/workers")
        return WorkerList.model_validate_json(response.content).workers

    async def run(self, spec: SpecLike) -> RunResult:
        """Run a job to its end and return it with its output."""
        body = spec_body(spec)
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
        body = as_schedule(spec).model_dump(mode="json", exclude_defaults=True)
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
        await self._request("DELETE", f"/v1/schedules/{name}", params=owner_query(owner))

    async def pause_schedule(
        self, name: str, paused: bool = True, owner: str | None = None
    ) -> Schedule:
        """Pause your schedule ``name`` (an admin: ``owner``'s), or resume it
        with ``paused=False``."""
        action = "pause" if paused else "resume"
        response = await self._request(
            "POST", f"/v1/schedules/{name}/{action}", params=owner_query(owner)
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
        spec = as_workflow(workflow)
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

    async def wait_workflow(
        self, workflow_id: str, timeout: float | None = None, *, raise_on_timeout: bool = True
    ) -> Workflow:
        """Wait until the workflow finishes and return it; after ``timeout``
        seconds as :meth:`wait` does."""
        deadline = math.inf if timeout is None else time.monotonic() + timeout
        while True:
            workflow = await self.workflow(workflow_id)
            if workflow.terminal or time.monotonic() >= deadline:
                if raise_on_timeout:
                    finished(workflow, timeout)
                return workflow
            await anyio.sleep(min(_WORKFLOW_POLL, max(0.0, deadline - time.monotonic())))


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
        self._portal, thread = start_loop_thread()
        # Submits go on the caller's thread (client_submit.py says why).
        self._submits = BlockingSubmits(self.url, self.aio.pool_options)
        # Runs once: at close(), when the client is collected, or at exit.
        self._finalizer = weakref.finalize(
            self, stop_loop_thread, self._portal, self._submits.closing(self.aio.aclose), thread
        )

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

    def submit(self, spec: SpecLike) -> JobHandle:
        """Submit a job; returns its handle (state ``queued``) at once."""
        return JobHandle.read(self._submits.submit(spec), self)

    def submit_many(self, specs: Iterable[SpecLike]) -> builtins.list[JobHandle]:
        """Submit jobs in order, in batches of up to 1000 (see AsyncClient.submit_many)."""
        handles = self._portal.call(self.aio.submit_many, specs)
        return [JobHandle.bind(handle, self) for handle in handles]

    def get(self, job_id: str) -> JobHandle:
        """The job's record with its attempts, as a handle."""
        return JobHandle.bind(self._portal.call(self.aio.get, job_id), self)

    def list(self, **filters: Unpack[ListFilters]) -> JobPage:
        """One page of jobs, newest first (filters as in AsyncClient.list)."""
        return self._portal.call(lambda: self.aio.list(**filters))

    def cancel(self, job_id: str, kill: bool = False) -> Job:
        """Cancel the job, or ask its worker to stop it (``kill``: at once)."""
        return self._portal.call(self.aio.cancel, job_id, kill)

    def wait(
        self, job_id: str, timeout: float | None = None, *, raise_on_timeout: bool = True
    ) -> Job:
        """Wait until the job finishes; after ``timeout`` seconds raise
        WaitTimeout, or return it unfinished if not ``raise_on_timeout``."""
        return self._portal.call(
            partial(self.aio.wait, job_id, timeout, raise_on_timeout=raise_on_timeout)
        )

    def run(self, spec: SpecLike) -> RunResult:
        """Run a job to its end and return it with its output."""
        return self._portal.call(self.aio.run, spec)

    def delete(self, job_id: str) -> None:
        """Delete a finished job with its logs (409 if it has not finished)."""
        self._portal.call(self.aio.delete, job_id)

    def stdin(self, job_id: str) -> bytes:
        """As AsyncClient.stdin."""
        return self._portal.call(self.aio.stdin, job_id)

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

    def audit(self, **options: Unpack[PageOptions]) -> AuditPage:
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

    def test_template(
        self, name: str, body: Any = None, **request: Unpack[TemplateRequest]
    ) -> dict[str, Any]:
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

    def workflows(self, **options: Unpack[WorkflowFilters]) -> WorkflowPage:
        """One page of your workflows (options as in AsyncClient.workflows)."""
        return self._portal.call(lambda: self.aio.workflows(**options))

    def cancel_workflow(self, workflow_id: str) -> Workflow:
        """Cancel a workflow."""
        return self._portal.call(self.aio.cancel_workflow, workflow_id)

    def wait_workflow(
        self, workflow_id: str, timeout: float | None = None, *, raise_on_timeout: bool = True
    ) -> Workflow:
        """Wait until the workflow finishes; after ``timeout`` seconds as :meth:`wait`."""
        wait = partial(self.aio.wait_workflow, raise_on_timeout=raise_on_timeout)
        return self._portal.call(wait, workflow_id, timeout)

    def logs(self, job_id: str, **options: Unpack[LogOptions]) -> Iterator[tuple[Stream, bytes]]:
        """The job's output as (stream, bytes) pieces, as written (options as
        in AsyncClient.logs; a handle's ``logs()`` decodes them to text)."""
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
