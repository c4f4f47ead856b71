"""Job output: from a running attempt into ordered, durable chunks, and back
out to any number of readers, each from its own offset, following live.

Chunks carry their offset in their stream and in both streams merged, so a
reader can resume anywhere. The writer awaits each commit before taking more
output, so a job that writes faster than the store can keep up is slowed down
instead of growing the server's memory. The followers of one live job share
their reads (the store's, see store/shared_reads.py).
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING

from jobdock.events import JobWatch
from jobdock.models import Stream, parse_duration
from jobdock.models.records import LogChunk, LogRead
from jobdock.store.protocol import LogAppender, LogStore

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
        store: LogAppender,
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
        chunks = self.chunks(batch, time.time())
        append = partial(self._store.append_logs, self._job_id, self._attempt, chunks)
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

    def chunks(
        self, batch: Sequence[tuple[Stream, bytes]], at: float | None = None
    ) -> list[LogChunk]:
        """Number a batch of output that arrived at ``at`` (default: now):
        neighbours of one stream are joined, then split at MAX_CHUNK; order
        across streams is kept."""
        at = time.time() if at is None else at
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
                chunks.append(
                    LogChunk(self._seq, stream, self.bytes[stream], self._merged, piece, at)
                )
                self.bytes[stream] += len(piece)
                self._merged += len(piece)
        return chunks


async def read_log(
    store: LogStore,
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
    while True:
        read, watch = await _read_page(store, job_id, number, stream, offset, follow)
        if number is None and 0 < read.attempt <= followed:
            # Requeued, and its next attempt has not started yet.
            if watch is None or read.terminal:
                _stop(watch)
                return
            await watch.wait(poll_seconds)
            continue
        if read.attempt:
            number = read.attempt
        chunks, offset = _past(read.chunks, stream, offset)
        for chunk in chunks:
            yield chunk
        if len(read.chunks) == _PAGE:
            # There may be more already: read on.
            _stop(watch)
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


async def _read_page(
    store: LogStore,
    job_id: str,
    attempt: int | None,
    stream: Stream | None,
    offset: int,
    follow: bool,
) -> tuple[LogRead, JobWatch | None]:
    """A page of the log past ``offset``; when following, with a watch on
    the job started before the read (so no change after it is missed)."""
    watch = store.events.watch_job(job_id) if follow else None
    try:
        read = await store.read_logs(
            job_id, attempt=attempt, stream=stream, offset=offset, limit=_PAGE
        )
    except BaseException:
        _stop(watch)
        raise
    return read, watch


def _past(
    chunks: Sequence[LogChunk], stream: Stream | None, offset: int
) -> tuple[list[LogChunk], int]:
    """The parts of ``chunks`` past ``offset`` (in ``stream``, or merged),
    and the offset after them."""
    kept = []
    for chunk in chunks:
        start = chunk.offset if stream is not None else chunk.merged_offset
        data = chunk.data[offset - start :] if start < offset else chunk.data
        offset = start + len(chunk.data)
        if data:
            kept.append(
                LogChunk(
                    chunk.seq,
                    chunk.stream,
                    chunk.offset + len(chunk.data) - len(data),
                    chunk.merged_offset + len(chunk.data) - len(data),
                    data,
                    chunk.at,
                )
            )
    return kept, offset


def _stop(watch: JobWatch | None) -> None:
    if watch is not None:
        watch.cancel()


# -- views: the last lines, what arrived since, arrival times ---------------------

#: The latest time ``since`` takes (the end of year 9999).
_LAST_TIME = 253402300799.0
_NUMBER = re.compile(r"\d+(\.\d+)?")


def since_time(value: str, now: float) -> float:
    """Seconds since the epoch from what ``since`` was given: seconds since
    the epoch (``1767225600``), a duration before ``now`` (``10m``, ``2h``)
    or an RFC 3339 time with its offset. Raises ValueError naming the problem."""
    text = value.strip()
    if _NUMBER.fullmatch(text):
        seconds = float(text)
        if seconds > _LAST_TIME:
            raise ValueError(f"{value!r} is later than the year 9999")
        return seconds
    if "T" in text.upper() and "-" in text:
        try:
            when = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"{value!r} is not an RFC 3339 time") from None
        if when.tzinfo is None:
            raise ValueError(f"{value!r} has no offset (add Z or +HH:MM)")
        return when.timestamp()
    try:
        return max(0.0, now - parse_duration(text))
    except ValueError:
        raise ValueError(
            f"{value!r} is not seconds since the epoch, a duration like 10m or an RFC 3339 time"
        ) from None


async def tail_offset(
    store: LogStore, job_id: str, *, attempt: int, stream: Stream | None, lines: int
) -> int:
    """The offset (in ``stream``, or merged) where the last ``lines`` lines of
    an attempt's output begin; an unfinished last line counts as one."""
    before = 1 << 62
    first = True
    wanted = lines
    while True:
        page = await store.read_logs_back(
            job_id, attempt=attempt, stream=stream, before=before, limit=_PAGE
        )
        for chunk in page:
            start = chunk.offset if stream is not None else chunk.merged_offset
            end = len(chunk.data)
            if first:
                if wanted == 0:
                    return start + end
                first = False
                end -= chunk.data.endswith(b"\n")  # the last line's own end
            while (newline := chunk.data.rfind(b"\n", 0, end)) >= 0:
                wanted -= 1
                if wanted == 0:
                    return start + newline + 1
                end = newline
            before = start
        if len(page) < _PAGE:
            return 0


def timestamp_of(at: float | None) -> bytes:
    """An arrival time as ``docker logs -t`` shows it: RFC 3339 in UTC with
    microseconds (``2026-12-02T01:30:00.123456Z``); nothing when not known."""
    if at is None:
        return b""
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ ").encode()


class Timestamps:
    """Prefixes each line of a log with the arrival time of the chunk it
    begins in, one stream's lines apart from the other's."""

    def __init__(self) -> None:
        self._at_line_start = {Stream.STDOUT: True, Stream.STDERR: True}

    def stamp(self, chunk: LogChunk) -> bytes:
        """The chunk's bytes with a time before each line that begins in it."""
        prefix, data = timestamp_of(chunk.at), chunk.data
        if not prefix:
            return data
        stamped = data.replace(b"\n", b"\n" + prefix)
        if data.endswith(b"\n"):
            stamped = stamped[: -len(prefix)]
        if self._at_line_start[chunk.stream]:
            stamped = prefix + stamped
        self._at_line_start[chunk.stream] = data.endswith(b"\n")
        return stamped
