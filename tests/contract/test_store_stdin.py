"""The Store contract for streamed stdin (``stdin_stream``): pieces appended
as a client sends them, read back in order by every attempt, bounded, closed
once, and forgotten when the job has finished.

Every test runs once per implementation (see conftest.STORES).
"""

from __future__ import annotations

import asyncio

import pytest
from store_actions import T0, claim, exited, submit

from jobdock import job_stdin
from jobdock.errors import JobNotFound, StdinClosed, StdinTooLarge
from jobdock.models import JobState, Reason
from jobdock.store import Outcome, Store

LIMIT = 1 << 20


async def test_pieces_are_read_back_in_order_from_any_piece(store: Store) -> None:
    job = await submit(store, stdin_stream=True)

    sizes = [await store.append_stdin(job.id, piece, LIMIT) for piece in (b"one\n", b"two\n")]
    sizes.append(await store.append_stdin(job.id, b"three\n", LIMIT))

    assert sizes == [4, 8, 14]
    everything = await store.read_stdin(job.id)
    assert (everything.pieces, everything.eof) == ([b"one\n", b"two\n", b"three\n"], False)
    first = await store.read_stdin(job.id, 0, limit=1)
    rest = await store.read_stdin(job.id, first.last)
    assert first.pieces == [b"one\n"]
    assert rest.pieces == [b"two\n", b"three\n"]
    assert (await store.read_stdin(job.id, everything.last)).pieces == []


async def test_a_closed_input_reads_end_of_file_and_takes_nothing_more(store: Store) -> None:
    job = await submit(store, stdin_stream=True)
    await store.append_stdin(job.id, b"all of it", LIMIT)

    assert await store.close_stdin(job.id) == 9
    assert await store.close_stdin(job.id) == 9  # closing again changes nothing

    read = await store.read_stdin(job.id)
    assert (read.pieces, read.eof) == ([b"all of it"], True)
    with pytest.raises(StdinClosed):
        await store.append_stdin(job.id, b"more", LIMIT)


async def test_an_input_closed_before_any_byte_is_empty(store: Store) -> None:
    job = await submit(store, stdin_stream=True)

    assert await store.close_stdin(job.id) == 0

    read = await store.read_stdin(job.id)
    assert (read.pieces, read.eof) == ([], True)


async def test_a_piece_past_the_limit_is_refused_and_not_stored(store: Store) -> None:
    job = await submit(store, stdin_stream=True)
    await store.append_stdin(job.id, b"x" * 10, 16)

    with pytest.raises(StdinTooLarge) as refused:
        await store.append_stdin(job.id, b"y" * 7, 16)

    assert refused.value.limit == 16
    assert (await store.read_stdin(job.id)).pieces == [b"x" * 10]
    assert await store.append_stdin(job.id, b"y" * 6, 16) == 16


async def test_an_empty_piece_only_checks(store: Store) -> None:
    job = await submit(store, stdin_stream=True)

    assert await store.append_stdin(job.id, b"", LIMIT) == 0

    assert (await store.read_stdin(job.id)).pieces == []
    with pytest.raises(JobNotFound):
        await store.append_stdin("0123456789abcdef", b"", LIMIT)
    with pytest.raises(JobNotFound):
        await store.close_stdin("0123456789abcdef")


async def test_a_retry_reads_the_whole_input_and_the_end_forgets_it(store: Store) -> None:
    job = await submit(store, stdin_stream=True, retry={"max_attempts": 2})
    await store.append_stdin(job.id, b"input", LIMIT)
    await store.close_stdin(job.id)
    first = await claim(store)
    retrying = Outcome(
        state=JobState.RETRYING,
        reason=Reason.EXITED,
        message="exited with code 1",
        finished_at=T0 + 1,
        exit_code=1,
        next_attempt_at=T0 + 1,
    )
    await store.finish_attempt(job.id, first.attempt, retrying)

    assert (await store.read_stdin(job.id)).pieces == [b"input"]
    second = await claim(store, now=T0 + 2)
    await store.finish_attempt(job.id, second.attempt, exited(0, at=T0 + 3))

    assert (await store.read_stdin(job.id)).pieces == []
    with pytest.raises(StdinClosed):
        await store.append_stdin(job.id, b"late", LIMIT)


async def test_the_input_of_a_job_cancelled_while_queued_goes_at_the_next_prune(
    store: Store,
) -> None:
    job = await submit(store, stdin_stream=True)
    kept = await submit(store, stdin_stream=True)
    await store.append_stdin(job.id, b"never read", LIMIT)
    await store.append_stdin(kept.id, b"still wanted", LIMIT)
    await store.cancel_job(job.id, T0 + 1)

    await store.prune(T0 + 2, None)

    assert (await store.read_stdin(job.id)).pieces == []
    assert (await store.read_stdin(kept.id)).pieces == [b"still wanted"]


async def test_delete_stdin_forgets_the_input(store: Store) -> None:
    job = await submit(store, stdin_stream=True)
    await store.append_stdin(job.id, b"gone", LIMIT)

    await store.delete_stdin(job.id)

    assert (await store.read_stdin(job.id)).pieces == []


async def test_an_attempt_is_fed_pieces_as_they_are_appended(store: Store) -> None:
    job = await submit(store, stdin_stream=True)
    await store.append_stdin(job.id, b"first\n", LIMIT)
    feed = job_stdin.feed(store, job.id, poll_seconds=30)

    assert await asyncio.wait_for(anext(feed), 5) == b"first\n"
    later = asyncio.ensure_future(anext(feed))
    await store.append_stdin(job.id, b"second\n", LIMIT)
    assert await asyncio.wait_for(later, 5) == b"second\n"
    await store.close_stdin(job.id)
    assert [piece async for piece in feed] == []
