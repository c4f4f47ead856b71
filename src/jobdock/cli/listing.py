"""The records ``jobdock ps``, ``workers`` and ``machines`` list, fetched
as the server's JSON and read into small dataclasses (``machines``' as the
JSON itself).

These commands start without :class:`jobdock.Client` and its models:
loading pydantic and the models takes longer than all the rest of ``ps``
(issue 21 wants ``ps`` under 0.3 s; ``bench/cli_startup.py`` measures it).
They ask the routes the client asks, with the same credentials, and fail
with the same errors (:func:`jobdock.client_errors.error_of`). ``-o json``
prints each record as the server sent it.

Imports httpx, the client's credentials and errors, and the states.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Any

import httpx

from jobdock.client_config import ClientConfig
from jobdock.client_errors import error_of, unreachable
from jobdock.credentials import USER_AGENT, Credentials
from jobdock.models.states import JobState, Reason

#: The most jobs one request asks for (the server's own bound).
_PAGE = 500
_Params = list[tuple[str, str | int | float | bool | None]]


def _moment(value: Any) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


@dataclass(frozen=True, slots=True)
class ListedJob:
    """A job as ``ps`` shows it: the fields of :class:`jobdock.models.Job`
    that its columns need, and the whole ``record``."""

    record: dict[str, Any] = field(repr=False)
    id: str
    name: str | None
    owner: str
    state: JobState
    labels: dict[str, str]
    image: str | None
    command: list[str]
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    next_attempt_at: datetime | None
    exit_code: int | None
    reason: Reason | None
    attempt: int
    cancel_requested: bool

    @property
    def terminal(self) -> bool:
        return self.state.terminal

    @classmethod
    def of(cls, record: dict[str, Any]) -> ListedJob:
        """The job in the server's JSON ``record``."""
        spec = record.get("spec") or {}
        reason = record.get("reason")
        return cls(
            record=record,
            id=record["id"],
            name=record.get("name"),
            owner=record.get("owner", ""),
            state=JobState(record["state"]),
            labels=record.get("labels") or {},
            image=spec.get("image"),
            command=list(spec.get("command") or []),
            created_at=datetime.fromisoformat(record["created_at"]),
            started_at=_moment(record.get("started_at")),
            finished_at=_moment(record.get("finished_at")),
            next_attempt_at=_moment(record.get("next_attempt_at")),
            exit_code=record.get("exit_code"),
            reason=None if reason is None else Reason(reason),
            attempt=record.get("attempt", 0),
            cancel_requested=bool(record.get("cancel_requested")),
        )


@dataclass(frozen=True, slots=True)
class ListedWorker:
    """A worker as ``workers`` shows it (the fields of
    :class:`jobdock.models.WorkerRecord`), and the whole ``record``."""

    record: dict[str, Any] = field(repr=False)
    id: str
    host: str
    labels: dict[str, str]
    concurrency: int
    busy: int
    started_at: datetime
    heartbeat_at: datetime
    stopped_at: datetime | None
    state: str
    running: list[str]

    @classmethod
    def of(cls, record: dict[str, Any]) -> ListedWorker:
        """The worker in the server's JSON ``record``."""
        return cls(
            record=record,
            id=record["id"],
            host=record.get("host", ""),
            labels=record.get("labels") or {},
            concurrency=record.get("concurrency", 0),
            busy=record.get("busy", 0),
            started_at=datetime.fromisoformat(record["started_at"]),
            heartbeat_at=datetime.fromisoformat(record["heartbeat_at"]),
            stopped_at=_moment(record.get("stopped_at")),
            state=record.get("state", ""),
            running=list(record.get("running") or []),
        )


class Lister:
    """A connection to the server for listings; a context manager."""

    def __init__(self, config: ClientConfig, credentials: Credentials) -> None:
        self.url = config.url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.url,
            timeout=30.0,
            headers={"user-agent": USER_AGENT, **credentials.headers()},
            verify=credentials.verify(self.url),
        )

    def __enter__(self) -> Lister:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._http.close()

    def jobs(
        self, states: list[str], labels: Mapping[str, str], name: str | None, last: int
    ) -> list[ListedJob]:
        """Up to ``last`` jobs, newest first, page by page (``GET /v1/jobs``)."""
        found: list[ListedJob] = []
        cursor: str | None = None
        while len(found) < last:
            params: _Params = [("state", s) for s in states]
            params += [("label", f"{key}={value}") for key, value in labels.items()]
            if name is not None:
                params.append(("name", name))
            if cursor is not None:
                params.append(("cursor", cursor))
            params.append(("limit", min(_PAGE, last - len(found))))
            page = self._get("/v1/jobs", params)
            found += [ListedJob.of(record) for record in page["jobs"]]
            cursor = page.get("next_cursor")
            if cursor is None:
                break
        return found

    def workers(self) -> list[ListedWorker]:
        """The workers known to the server's store (``GET /v1/workers``)."""
        return [ListedWorker.of(record) for record in self._get("/v1/workers", [])["workers"]]

    def machines(self, pool: str | None, since: str | None) -> dict[str, Any]:
        """The server's machine pools and machines as its JSON
        (``GET /v1/machines``; admins only)."""
        params: _Params = [("pool", pool), ("since", since)]
        found: dict[str, Any] = self._get("/v1/machines", [p for p in params if p[1] is not None])
        return found

    def _get(self, path: str, params: _Params) -> Any:
        try:
            response = self._http.get(path, params=params)
        except httpx.TransportError as exc:
            raise unreachable(self.url, exc) from None
        if response.status_code >= 400:
            raise error_of(response)
        return response.json()
