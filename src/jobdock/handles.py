"""Job handles: the record of a job that can also act on it.

``Client.submit`` and ``Client.get`` return a :class:`JobHandle`, which is a
:class:`~jobdock.models.Job` (every field of the record reads as before)
with ``wait()``, ``logs()``, ``cancel()`` and ``refresh()``; ``AsyncClient``
returns an :class:`AsyncJobHandle`, the same with coroutines.

Output is text: ``logs()`` yields ``(stream, str)`` pieces decoded as UTF-8
with invalid bytes replaced, exactly as ``RunResult.stdout`` and ``.stderr``
are. ``logs(text=False)`` yields the bytes as the job wrote them (what
``Client.logs`` yields). This module knows the client only through the
protocols below, so it imports nothing above the models.
"""

from __future__ import annotations

import codecs
from collections.abc import AsyncIterator, Iterator
from typing import Literal, Protocol, Self, overload

from pydantic import PrivateAttr

from jobdock.client_errors import finished
from jobdock.models import Job, Stream


class JobCalls(Protocol):
    """What a :class:`JobHandle` asks of its client (``jobdock.Client``)."""

    def get(self, job_id: str) -> Job: ...

    def wait(
        self, job_id: str, timeout: float | None = None, *, raise_on_timeout: bool = True
    ) -> Job: ...

    def cancel(self, job_id: str, kill: bool = False) -> Job: ...

    def logs(
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
    ) -> Iterator[tuple[Stream, bytes]]: ...


class AsyncJobCalls(Protocol):
    """What an :class:`AsyncJobHandle` asks of its client (``jobdock.AsyncClient``)."""

    async def get(self, job_id: str) -> Job: ...

    async def wait(
        self, job_id: str, timeout: float | None = None, *, raise_on_timeout: bool = True
    ) -> Job: ...

    async def cancel(self, job_id: str, kill: bool = False) -> Job: ...

    def logs(
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
    ) -> AsyncIterator[tuple[Stream, bytes]]: ...


class _Decoder:
    """UTF-8 per stream, a character split between two pieces kept whole,
    invalid bytes replaced (as the server decodes a RunResult's output)."""

    def __init__(self) -> None:
        self._decoders = {s: codecs.getincrementaldecoder("utf-8")("replace") for s in Stream}

    def piece(self, stream: Stream, data: bytes) -> str:
        return self._decoders[stream].decode(data)

    def rest(self) -> Iterator[tuple[Stream, str]]:
        for stream, decoder in self._decoders.items():
            tail = decoder.decode(b"", final=True)
            if tail:
                yield stream, tail


def _as_text(pieces: Iterator[tuple[Stream, bytes]]) -> Iterator[tuple[Stream, str]]:
    decoder = _Decoder()
    for stream, data in pieces:
        text = decoder.piece(stream, data)
        if text:
            yield stream, text
    yield from decoder.rest()


async def _as_text_async(
    pieces: AsyncIterator[tuple[Stream, bytes]],
) -> AsyncIterator[tuple[Stream, str]]:
    decoder = _Decoder()
    async for stream, data in pieces:
        text = decoder.piece(stream, data)
        if text:
            yield stream, text
    for stream, tail in decoder.rest():
        yield stream, tail


def _same_record(handle: Job, other: Job) -> bool:
    """A handle is its record: equal to a Job (or handle) with the same fields."""
    same: bool = handle.__dict__ == other.__dict__
    return same


def _take(handle: Job, record: Job) -> None:
    """Make ``handle``'s fields those of ``record`` (a newer read of its job)."""
    handle.__dict__.update(record.__dict__)
    handle.__pydantic_fields_set__ = set(record.model_fields_set)


class JobHandle(Job):
    """A job's record (every :class:`~jobdock.models.Job` field) bound to the
    :class:`~jobdock.Client` that read it, to wait for, follow and stop it.
    The fields are as last read: ``refresh()``, ``wait()`` and ``cancel()``
    read them again."""

    _client: JobCalls = PrivateAttr()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Job):
            return _same_record(self, other)
        return NotImplemented

    @classmethod
    def bind(cls, job: Job, client: JobCalls) -> JobHandle:
        """``job``'s record as a handle that acts through ``client``."""
        handle = cls.model_construct(job.model_fields_set, **job.__dict__)
        handle._client = client
        return handle

    @classmethod
    def read(cls, record: bytes, client: JobCalls) -> JobHandle:
        """A job's record in JSON (the server's answer) as a handle that
        acts through ``client``: parsed once, straight into the handle."""
        handle = cls.model_validate_json(record)
        handle._client = client
        return handle

    def refresh(self) -> Self:
        """Read the record again; returns the handle."""
        _take(self, self._client.get(self.id))
        return self

    def wait(self, timeout: float | None = None) -> Self:
        """Wait until the job finishes and return the handle, its fields
        those of the finished job; after ``timeout`` seconds raise
        :class:`~jobdock.WaitTimeout` (a TimeoutError; the handle then holds
        the job as it was)."""
        _take(self, self._client.wait(self.id, timeout, raise_on_timeout=False))
        finished(self, timeout)
        return self

    def cancel(self, kill: bool = False) -> Self:
        """Cancel the job, or stop it if it runs (``kill``: SIGKILL at once);
        returns the handle. Raises IllegalTransition if it has finished."""
        _take(self, self._client.cancel(self.id, kill))
        return self

    @overload
    def logs(
        self,
        *,
        stream: Stream | None = None,
        follow: bool = False,
        attempt: int | None = None,
        tail: int | None = None,
        since: str | float | None = None,
        timestamps: bool = False,
        text: Literal[True] = True,
    ) -> Iterator[tuple[Stream, str]]: ...

    @overload
    def logs(
        self,
        *,
        stream: Stream | None = None,
        follow: bool = False,
        attempt: int | None = None,
        tail: int | None = None,
        since: str | float | None = None,
        timestamps: bool = False,
        text: Literal[False],
    ) -> Iterator[tuple[Stream, bytes]]: ...

    def logs(
        self,
        *,
        stream: Stream | None = None,
        follow: bool = False,
        attempt: int | None = None,
        tail: int | None = None,
        since: str | float | None = None,
        timestamps: bool = False,
        text: bool = True,
    ) -> Iterator[tuple[Stream, str]] | Iterator[tuple[Stream, bytes]]:
        """The job's output in order as ``(stream, text)`` pieces (both
        streams, or ``stream``); ``follow``: until the job ends; ``text=False``:
        the bytes as written; ``tail``, ``since`` and ``timestamps`` as for
        :meth:`jobdock.Client.logs`."""
        pieces = self._client.logs(
            self.id,
            stream=stream,
            follow=follow,
            attempt=attempt,
            tail=tail,
            since=since,
            timestamps=timestamps,
        )
        return _as_text(pieces) if text else pieces


class AsyncJobHandle(Job):
    """A job's record bound to the :class:`~jobdock.AsyncClient` that read
    it: :class:`JobHandle`'s methods as coroutines (``logs`` an async iterator)."""

    _client: AsyncJobCalls = PrivateAttr()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Job):
            return _same_record(self, other)
        return NotImplemented

    @classmethod
    def bind(cls, job: Job, client: AsyncJobCalls) -> AsyncJobHandle:
        """``job``'s record as a handle that acts through ``client``."""
        handle = cls.model_construct(job.model_fields_set, **job.__dict__)
        handle._client = client
        return handle

    async def refresh(self) -> Self:
        """Read the record again; returns the handle."""
        _take(self, await self._client.get(self.id))
        return self

    async def wait(self, timeout: float | None = None) -> Self:
        """As :meth:`JobHandle.wait`."""
        _take(self, await self._client.wait(self.id, timeout, raise_on_timeout=False))
        finished(self, timeout)
        return self

    async def cancel(self, kill: bool = False) -> Self:
        """As :meth:`JobHandle.cancel`."""
        _take(self, await self._client.cancel(self.id, kill))
        return self

    @overload
    def logs(
        self,
        *,
        stream: Stream | None = None,
        follow: bool = False,
        attempt: int | None = None,
        tail: int | None = None,
        since: str | float | None = None,
        timestamps: bool = False,
        text: Literal[True] = True,
    ) -> AsyncIterator[tuple[Stream, str]]: ...

    @overload
    def logs(
        self,
        *,
        stream: Stream | None = None,
        follow: bool = False,
        attempt: int | None = None,
        tail: int | None = None,
        since: str | float | None = None,
        timestamps: bool = False,
        text: Literal[False],
    ) -> AsyncIterator[tuple[Stream, bytes]]: ...

    def logs(
        self,
        *,
        stream: Stream | None = None,
        follow: bool = False,
        attempt: int | None = None,
        tail: int | None = None,
        since: str | float | None = None,
        timestamps: bool = False,
        text: bool = True,
    ) -> AsyncIterator[tuple[Stream, str]] | AsyncIterator[tuple[Stream, bytes]]:
        """As :meth:`JobHandle.logs`, an async iterator."""
        pieces = self._client.logs(
            self.id,
            stream=stream,
            follow=follow,
            attempt=attempt,
            tail=tail,
            since=since,
            timestamps=timestamps,
        )
        return _as_text_async(pieces) if text else pieces
