"""Job output: from a running attempt into ordered, durable chunks, and back
out to any number of readers, each from its own offset, following live.

Chunks carry their offset in their stream and in both streams merged, so a
reader can resume anywhere. The writer awaits each commit before taking more
output, so a job that writes faster than the store can keep up is slowed down
instead of growing the server's memory.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING

from jobdock.models import Stream
from jobdock.store.protocol import LogChunk, LogRead, Store

if TYPE_CHECKING:
    from jobdock.vault import Redactor

#: Largest chunk stored; bigger pieces of output are split.
MAX_CHUNK = 1 << 20
#: Chunks read at a time; a page that is not full means the reader caught
#: up with what was stored when it read.
_PAGE = 8


class LogWriter:
    """Turns an attempt's output into stored chunks, in arrival order."""

    def __init__(
        self,
        store: Store,
        job_id: str,
        attempt: int,
        *,
        persist: Callable[[Callable[[], Awaitable[None]]], Awaitable[None]] | None = None,
        redactor: Redactor | None = None,
        limit: int | None = None,
        on_limit: Callable[[], None] | None = None,
    ) -> None:
        self._store = store
        self._redactor = redactor if redactor else None
        #: The most bytes kept (both streams); past it, output is dropped and
        #: ``on_limit`` (if given) is called once.
        self._limit = limit
        self._on_limit = on_limit
        #: Bytes dropped past the limit.
        self.dropped = 0
        self._persist = persist
        self._job_id = job_id
        self._attempt = attempt
        self._seq = 0
        self._merged = 0
        self.bytes = {Stream.STDOUT: 0, Stream.STDERR: 0}

    async def pump(self, output: AsyncIterator[list[tuple[Stream, bytes]]]) -> None:
        """Store everything ``output`` yields, each batch through ``persist``
        if given (to retry it); raises FencedOff if the attempt lost the job.
        With a ``redactor``, secret values are masked before anything is stored."""
        redactor = self._redactor
        async for batch in output:
            if redactor is not None:
                batch = [(stream, redactor.feed(stream, data)) for stream, data in batch]
            await self._store_batch(batch)
        if redactor is not None:
            await self._store_batch([(stream, redactor.flush(stream)) for stream in Stream])

    async def _store_batch(self, batch: Sequence[tuple[Stream, bytes]]) -> None:
        batch = [(stream, data) for stream, data in batch if data]
        if self._limit is not None:
            batch = self._within_limit(batch)
        if not batch:
            return
        append = partial(self._store.append_logs, self._job_id, self._attempt, self.chunks(batch))
        await (append() if self._persist is None else self._persist(append))

    def _within_limit(self, batch: list[tuple[Stream, bytes]]) -> list[tuple[Stream, bytes]]:
        assert self._limit is not None
        room = self._limit - self._merged
        kept = []
        for stream, data in batch:
            if len(data) > room:
                self.dropped += len(data) - room
                data = data[:room]
            room -= len(data)
            if data:
                kept.append((stream, data))
        if self.dropped and self._on_limit is not None:
            on_limit, self._on_limit = self._on_limit, None
            on_limit()
        return kept

    def chunks(self, batch: Sequence[tuple[Stream, bytes]]) -> list[LogChunk]:
        """Number a batch of output: neighbours of one stream are joined, then
        split at MAX_CHUNK; order across streams is kept."""
        runs: list[tuple[Stream, list[bytes]]] = []
        for stream, data in batch:
            if runs and runs[-1][0] == stream:
                runs[-1][1].append(data)
            else:
                runs.append((stream, [data]))
        chunks = []
        for stream, pieces in runs:
            data = b"".join(pieces)
            for start in range(0, len(data), MAX_CHUNK):
                piece = data if len(data) <= MAX_CHUNK else data[start : start + MAX_CHUNK]
                self._seq += 1
                chunks.append(LogChunk(self._seq, stream, self.bytes[stream], self._merged, piece))
                self.bytes[stream] += len(piece)
                self._merged += len(piece)
        return chunks


class _SharedReads:
    """One store read for every follower that wants the same page at once.

    The followers of a live job are all at its end, and each commit wakes
    them together: 200 followers of a job that writes a line every 10 ms
    made 40,000 reads a second, and every other request queued behind them
    for the store's few reader threads (/healthz p50 250 ms). A read waits
    one turn of the event loop for the followers woken with it, and a
    follower joins it only until it begins, so the read sees every change
    that any of them was not told about (each started watching before).
    """

    def __init__(self) -> None:
        self._waiting: dict[tuple[object, ...], asyncio.Task[LogRead]] = {}

    async def read(
        self, store: Store, job_id: str, attempt: int | None, stream: Stream | None, offset: int
    ) -> LogRead:
        key = (job_id, attempt, stream, offset)
        task = self._waiting.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(
                self._read(key, store, job_id, attempt, stream, offset)
            )
            self._waiting[key] = task
            # Seen, so that a failed read all of whose followers left is not
            # reported as never retrieved.
            task.add_done_callback(lambda done: done.cancelled() or done.exception())
        # Shielded: one follower going away does not cancel the others' read.
        return await asyncio.shield(task)

    async def _read(
        self,
        key: tuple[object, ...],
        store: Store,
        job_id: str,
        attempt: int | None,
        stream: Stream | None,
        offset: int,
    ) -> LogRead:
        try:
            await asyncio.sleep(0)
        finally:
            del self._waiting[key]
        return await store.read_logs(
            job_id, attempt=attempt, stream=stream, offset=offset, limit=_PAGE
        )


#: Each store's shared reads.
_SHARED: weakref.WeakKeyDictionary[Store, _SharedReads] = weakref.WeakKeyDictionary()


async def read_log(
    store: Store,
    job_id: str,
    *,
    stream: Stream | None = None,
    offset: int = 0,
    follow: bool = False,
    attempt: int | None = None,
    poll_seconds: float = 1.0,
) -> AsyncIterator[LogChunk]:
    """The output of one attempt (the latest by default) from ``offset``:
    in one stream, or both merged in order when ``stream`` is None.

    With ``follow``, waits for more until the attempt ends; a job that has
    not started yet is waited for. Following the latest attempt goes on with
    the next one (from its start) when the job is run again after losing its
    worker, until the job ends. Raises JobNotFound.
    """
    number = attempt
    followed = 0  # the last attempt followed to its end
    shared = _SHARED.setdefault(store, _SharedReads())
    while True:
        watch = store.events.watch_job(job_id) if follow else None
        try:
            read = await shared.read(store, job_id, number, stream, offset)
        except BaseException:
            if watch is not None:
                watch.cancel()
            raise
        if number is None and 0 < read.attempt <= followed:
            # Requeued, and its next attempt has not started yet.
            if watch is None or read.terminal:
                if watch is not None:
                    watch.cancel()
                return
            await watch.wait(poll_seconds)
            continue
        if read.attempt:
            number = read.attempt
        for chunk in read.chunks:
            start = chunk.offset if stream is not None else chunk.merged_offset
            data = chunk.data[offset - start :] if start < offset else chunk.data
            offset = start + len(chunk.data)
            if data:
                yield LogChunk(
                    chunk.seq,
                    chunk.stream,
                    chunk.offset + len(chunk.data) - len(data),
                    chunk.merged_offset + len(chunk.data) - len(data),
                    data,
                )
        if len(read.chunks) == _PAGE:
            # There may be more already: read on.
            if watch is not None:
                watch.cancel()
            continue
        if watch is None:
            return
        if read.done:
            watch.cancel()
            if attempt is None:
                # This attempt ended; if it lost its worker, the job runs
                # again, and may even have finished again by now: look at
                # its latest attempt before returning.
                followed, number, offset = read.attempt, None, 0
                continue
            return
        await watch.wait(poll_seconds)
