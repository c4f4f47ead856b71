"""One attempt's output on its way from an agent to the server: taken from
the worker's LogWriter at once, sent in order in batches, kept while the
server cannot be reached (in memory up to a small budget, then in a spool
file on disk, up to a bound past which the job's output waits), and
resumed after a failed send from what the server has stored, so that no
byte is lost or stored twice (docs/agents.md, "Output").

Imports the errors and the records only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from jobdock.errors import FencedOff, StoreError
from jobdock.models.records import LogChunk

_log = logging.getLogger(__name__)

#: Sends a batch of chunks (``resume``: the previous send may have been stored).
Send = Callable[[list[LogChunk], bool], Awaitable[None]]

#: The most bytes one request carries.
BATCH_BYTES = 4 << 20
#: How long a flush waits before it says the output is not yet stored.
FLUSH_SECONDS = 5.0
#: Between tries of a send that failed: from the first to the longest.
FIRST_RETRY, MAX_RETRY = 0.05, 5.0


@dataclass(frozen=True, slots=True)
class _OnDisk:
    """A chunk kept in the spool file: its place there, and its fields."""

    position: int
    size: int
    chunk: LogChunk  # with empty data


class Output:
    """The output of one attempt, sent to the server by a task of its own.

    :meth:`put` returns at once while the output held is within
    ``memory_budget + disk_budget`` bytes (past it, it waits for sends);
    :meth:`flush` waits until everything is stored. Once the server
    refuses the attempt's fence, both raise FencedOff and the rest is
    dropped."""

    def __init__(
        self,
        job_id: str,
        attempt: int,
        send: Send,
        *,
        spool_dir: Path,
        memory_budget: int,
        disk_budget: int,
    ) -> None:
        self.job_id, self.attempt = job_id, attempt
        self._send = send
        self._spool_dir = spool_dir
        self._memory_budget, self._disk_budget = memory_budget, disk_budget
        self._queue: deque[LogChunk | _OnDisk] = deque()
        self._memory = 0
        self._on_disk = 0
        self._file: int | None = None
        self._end = 0
        self._more = asyncio.Event()
        self._room = asyncio.Event()
        self._closed = False
        self.fenced = False
        self._task: asyncio.Task[None] | None = None

    @property
    def held(self) -> int:
        """Bytes taken and not yet stored by the server."""
        return self._memory + self._on_disk

    async def put(self, chunks: Sequence[LogChunk]) -> None:
        """Take chunks to send (in order after those taken before)."""
        if self.fenced:
            raise FencedOff(self.job_id, self.attempt)
        if self._task is None:
            self._task = asyncio.create_task(self._sender(), name=f"jobdock-output-{self.job_id}")
        for chunk in chunks:
            size = len(chunk.data)
            if self._on_disk or self._memory + size > self._memory_budget:
                self._queue.append(self._spill(chunk))
                self._on_disk += size
            else:
                self._queue.append(chunk)
                self._memory += size
        self._more.set()
        while self.held > self._memory_budget + self._disk_budget and not self.fenced:
            self._room.clear()
            await self._room.wait()
        if self.fenced:
            raise FencedOff(self.job_id, self.attempt)

    async def flush(self, timeout: float = FLUSH_SECONDS) -> None:
        """Wait until every chunk taken is stored; FencedOff if the server
        refused, StoreError if it is not done within ``timeout`` (the sends
        go on: ask again, as the worker does with any write the store did
        not take, until it gives up at the end of its drain)."""
        self._closed = True
        self._more.set()
        if self._task is not None:
            try:
                async with asyncio.timeout(timeout):
                    await asyncio.shield(self._task)
            except TimeoutError:
                raise StoreError(
                    f"{self.held} bytes of the output of job {self.job_id} are not yet stored"
                ) from None
        if self.fenced:
            raise FencedOff(self.job_id, self.attempt)

    def drop(self) -> None:
        """The attempt was lost: send nothing more."""
        self.fenced = True
        self._queue.clear()
        self._room.set()
        self._more.set()

    async def aclose(self) -> None:
        """Stop sending and remove the spool file."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._close_file()

    # -- the spool file -----------------------------------------------------------------

    def _spill(self, chunk: LogChunk) -> _OnDisk:
        if self._file is None:
            self._spool_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd, name = tempfile.mkstemp(prefix="output-", dir=self._spool_dir)
            os.unlink(name)  # it lives as long as this descriptor
            self._file, self._end = fd, 0
        os.pwrite(self._file, chunk.data, self._end)
        kept = _OnDisk(self._end, len(chunk.data), _without_data(chunk))
        self._end += len(chunk.data)
        return kept

    def _load(self, entry: LogChunk | _OnDisk) -> LogChunk:
        if isinstance(entry, LogChunk):
            return entry
        assert self._file is not None
        data = os.pread(self._file, entry.size, entry.position)
        chunk = entry.chunk
        return LogChunk(chunk.seq, chunk.stream, chunk.offset, chunk.merged_offset, data, chunk.at)

    def _close_file(self) -> None:
        if self._file is not None:
            os.close(self._file)
            self._file = None

    # -- sending ----------------------------------------------------------------------

    def _batch(self) -> list[LogChunk]:
        batch: list[LogChunk] = []
        size = 0
        for entry in self._queue:
            length = entry.size if isinstance(entry, _OnDisk) else len(entry.data)
            if batch and size + length > BATCH_BYTES:
                break
            batch.append(self._load(entry))
            size += length
        return batch

    def _sent(self, count: int) -> None:
        for _ in range(count):
            entry = self._queue.popleft()
            if isinstance(entry, _OnDisk):
                self._on_disk -= entry.size
            else:
                self._memory -= len(entry.data)
        if not self._on_disk and self._file is not None:
            # Everything spilled is stored: the file starts over.
            os.ftruncate(self._file, 0)
            self._end = 0
        self._room.set()

    async def _sender(self) -> None:
        resume, delay, failing = False, FIRST_RETRY, False
        while not self.fenced:
            if not self._queue:
                if self._closed:
                    return
                self._more.clear()
                await self._more.wait()
                continue
            batch = self._batch()
            try:
                await self._send(batch, resume)
            except FencedOff:
                _log.warning(
                    "attempt %d of job %s lost its lease; its output is dropped",
                    self.attempt,
                    self.job_id,
                )
                self.drop()
                return
            except StoreError as exc:
                if not failing:
                    _log.warning(
                        "cannot send the output of job %s (%s); keeping it (%d bytes) and retrying",
                        self.job_id,
                        exc,
                        self.held,
                    )
                failing, resume = True, True
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_RETRY)
                continue
            if failing:
                _log.info("sending the output of job %s again", self.job_id)
            failing, resume, delay = False, False, FIRST_RETRY
            self._sent(len(batch))


def _without_data(chunk: LogChunk) -> LogChunk:
    return LogChunk(chunk.seq, chunk.stream, chunk.offset, chunk.merged_offset, b"", chunk.at)
