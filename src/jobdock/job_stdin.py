"""Streamed stdin (``stdin_stream``): the input of a job sent after its
submit, as its client reads it, as ``docker run -i`` does.

- :func:`receive` stores a request's body in the store as it arrives, in
  pieces of at most :data:`PIECE` bytes: while one piece is being written,
  what arrives meanwhile is gathered into the next, so that a fast upload
  makes few large writes and a slow one (a person typing) is stored at
  once. At most a few pieces are held in memory, whatever the input's size.
- :func:`feed` gives an attempt the stored pieces in order, from the
  first, waiting for more until the input is closed. The runtime writes
  each piece to the job before asking for the next, so a job that reads
  slowly holds back only the reading, never the memory of the worker.

The pieces stay in the store until the job finishes (store/stdin.py), so
a retry, or a requeue after a lost worker, reads the whole input again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterable, AsyncIterator

from jobdock.errors import StoreError
from jobdock.store.protocol import StdinReader, StdinStore

#: The largest piece written to the store at once.
PIECE = 1 << 20
#: Body messages read ahead of the store's writes (each is what the server
#: had received, tens of KiB).
_READ_AHEAD = 16

_log = logging.getLogger(__name__)


async def receive(
    store: StdinStore, job_id: str, body: AsyncIterable[bytes], *, limit: int, eof: bool
) -> int:
    """Append ``body`` to the job's stdin as it arrives, then close the
    input if ``eof``; returns how many bytes the input holds. A body cut
    off (the client went away) keeps what arrived and leaves the input
    open. Raises what the store raises (StdinClosed, StdinTooLarge)."""
    queue: asyncio.Queue[bytes | None] = asyncio.Queue(_READ_AHEAD)
    reader = asyncio.ensure_future(_read(body, queue))
    try:
        size = await _store_pieces(store, job_id, queue, limit)
        await reader  # raises if the body was cut off
    finally:
        reader.cancel()
    if eof:
        size = await store.close_stdin(job_id)
    return size


async def _read(body: AsyncIterable[bytes], queue: asyncio.Queue[bytes | None]) -> None:
    """Queue the body's messages, then None; None too when the body is cut
    off (the writer, still taking from the queue, then stops)."""
    try:
        async for message in body:
            if message:
                await queue.put(message)
    except Exception:
        await queue.put(None)
        raise
    await queue.put(None)


async def _store_pieces(
    store: StdinStore, job_id: str, queue: asyncio.Queue[bytes | None], limit: int
) -> int:
    """Write what the queue brings until its end (None), each write taking
    what has arrived meanwhile; returns the input's size after the last."""
    size = await store.append_stdin(job_id, b"", limit)
    ended = False
    while not ended:
        pieces = [await queue.get()]
        gathered = len(pieces[0] or b"")
        while pieces[-1] is not None and gathered < PIECE and not queue.empty():
            pieces.append(queue.get_nowait())
            gathered += len(pieces[-1] or b"")
        ended = pieces[-1] is None
        data = b"".join(piece for piece in pieces if piece is not None)
        if data:
            size = await store.append_stdin(job_id, data, limit)
    return size


async def feed(store: StdinReader, job_id: str, poll_seconds: float) -> AsyncIterator[bytes]:
    """The job's stdin, piece by piece from the first, as it arrives; ends
    when the input is closed. A store that fails is asked again."""
    after = 0
    while True:
        # Watch before reading, so that a piece stored in between wakes us.
        watch = store.events.watch_job(job_id)
        try:
            read = await store.read_stdin(job_id, after)
            if not read.pieces and not read.eof:
                await watch.wait(poll_seconds)
                continue
        except StoreError as exc:
            _log.warning("cannot read the stdin of job %s (will retry): %s", job_id, exc)
            await asyncio.sleep(poll_seconds)  # a retry's delay, not a wait for a change
            continue
        finally:
            watch.cancel()
        after = read.last
        for piece in read.pieces:
            yield piece
        if read.eof:
            return
