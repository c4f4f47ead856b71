"""The Store contract for logs: chunks read back by attempt, stream and
offset, and followers of a live job.

Every test runs once per implementation (see conftest.STORES). Times are
passed explicitly (``now``, leases), never waited for.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from store_actions import AFTER_LEASE, ERR, OUT, T0, claim, exited, submit

from jobdock.errors import JobNotFound
from jobdock.logs import LogWriter, read_log, tail_offset
from jobdock.models import Job, JobState, Stream
from jobdock.models.records import Started
from jobdock.store import Claim, LogChunk, Store

# -- logs ------------------------------------------------------------------------

#: Output of one attempt, in two batches, as LogWriter stores it:
#:   seq 1 stdout "hello "    stdout 0..6   merged 0..6
#:   seq 2 stderr "warning\n" stderr 0..8   merged 6..14
#:   seq 3 stdout "world\n"   stdout 6..12  merged 14..20
#:   seq 4 stderr "done\n"    stderr 8..13  merged 20..25
BATCHES = [
    [(OUT, b"hello "), (ERR, b"warning\n"), (OUT, b"world\n")],
    [(ERR, b"done\n")],
]


async def running_job_with_output(store: Store) -> tuple[Job, Claim]:
    job = await submit(store)
    got = await claim(store)
    writer = LogWriter(store, job.id, got.attempt)
    for arrived, batch in enumerate(BATCHES, start=1):
        await store.append_logs(job.id, got.attempt, writer.chunks(batch, at=T0 + arrived))
    return job, got


def described(chunks: list[LogChunk]) -> list[tuple[int, Stream, int, int, bytes]]:
    return [(c.seq, c.stream, c.offset, c.merged_offset, c.data) for c in chunks]


async def test_log_chunks_read_back_in_order_with_offsets_per_stream_and_merged(
    store: Store,
) -> None:
    job, _ = await running_job_with_output(store)

    merged = await store.read_logs(job.id, attempt=None, stream=None, offset=0, limit=100)
    stdout = await store.read_logs(job.id, attempt=None, stream=OUT, offset=0, limit=100)
    stderr = await store.read_logs(job.id, attempt=None, stream=ERR, offset=0, limit=100)

    assert merged.attempt == 1
    assert described(merged.chunks) == [
        (1, OUT, 0, 0, b"hello "),
        (2, ERR, 0, 6, b"warning\n"),
        (3, OUT, 6, 14, b"world\n"),
        (4, ERR, 8, 20, b"done\n"),
    ]
    assert described(stdout.chunks) == [(1, OUT, 0, 0, b"hello "), (3, OUT, 6, 14, b"world\n")]
    assert described(stderr.chunks) == [(2, ERR, 0, 6, b"warning\n"), (4, ERR, 8, 20, b"done\n")]


async def test_a_running_attempt_counts_the_output_it_stored_so_far(store: Store) -> None:
    job, got = await running_job_with_output(store)

    running = (await store.get_job(job.id)).attempts[0]
    assert (running.stdout_bytes, running.stderr_bytes) == (12, 13)

    await store.finish_attempt(job.id, got.attempt, exited(0))
    # Once it ends, the sizes are the ones its worker reported.
    finished = (await store.get_job(job.id)).attempts[0]
    assert (finished.stdout_bytes, finished.stderr_bytes) == (0, 0)


async def test_reading_logs_from_an_offset_starts_at_the_chunk_holding_it(store: Store) -> None:
    job, _ = await running_job_with_output(store)

    async def seqs(stream: Stream | None, offset: int) -> list[int]:
        read = await store.read_logs(job.id, attempt=None, stream=stream, offset=offset)
        return [c.seq for c in read.chunks]

    assert await seqs(OUT, 6) == [3]
    assert await seqs(OUT, 5) == [1, 3]
    assert await seqs(OUT, 12) == []
    assert await seqs(ERR, 10) == [4]
    assert await seqs(None, 14) == [3, 4]
    assert await seqs(None, 13) == [2, 3, 4]
    assert await seqs(None, 25) == []


async def test_reading_logs_returns_at_most_limit_chunks(store: Store) -> None:
    job, _ = await running_job_with_output(store)

    first = await store.read_logs(job.id, attempt=None, stream=None, offset=0, limit=3)
    end = first.chunks[-1].merged_offset + len(first.chunks[-1].data)
    rest = await store.read_logs(job.id, attempt=None, stream=None, offset=end, limit=3)

    assert [c.seq for c in first.chunks] == [1, 2, 3]
    assert [c.seq for c in rest.chunks] == [4]


async def test_read_log_from_an_offset_inside_a_chunk_starts_at_that_byte(store: Store) -> None:
    job, _ = await running_job_with_output(store)

    stdout = [c async for c in read_log(store, job.id, stream=OUT, offset=3)]
    merged = [c async for c in read_log(store, job.id, offset=10)]

    assert b"".join(c.data for c in stdout) == b"lo world\n"
    assert stdout[0].offset == 3
    assert b"".join(c.data for c in merged) == b"ing\nworld\ndone\n"
    assert merged[0].merged_offset == 10
    assert [c.stream for c in merged] == [ERR, OUT, ERR]


async def test_logs_are_not_done_while_the_attempt_runs_and_done_once_it_finished(
    store: Store,
) -> None:
    job, got = await running_job_with_output(store)

    while_running = await store.read_logs(job.id, attempt=None, stream=None, offset=25)
    await store.finish_attempt(job.id, got.attempt, exited(0))
    after = await store.read_logs(job.id, attempt=None, stream=None, offset=25)

    assert (while_running.chunks, while_running.done) == ([], False)
    assert (after.chunks, after.done) == ([], True)


async def test_a_job_that_never_started_has_no_logs_and_is_done_only_when_finished(
    store: Store,
) -> None:
    waiting = await submit(store)
    dropped = await submit(store)
    await store.cancel_job(dropped.id, T0 + 1)

    queued_read = await store.read_logs(waiting.id, attempt=None, stream=None, offset=0)
    cancelled_read = await store.read_logs(dropped.id, attempt=None, stream=None, offset=0)

    assert (queued_read.chunks, queued_read.done) == ([], False)
    assert (cancelled_read.chunks, cancelled_read.done) == ([], True)


async def test_logs_of_an_earlier_attempt_stay_readable_after_the_job_is_rerun(
    store: Store,
) -> None:
    job, _ = await running_job_with_output(store)
    await store.reap_expired(AFTER_LEASE, max_lost=3)
    second = await claim(store, worker="w2", now=AFTER_LEASE)
    await store.append_logs(job.id, second.attempt, [LogChunk(1, OUT, 0, 0, b"again\n")])

    earlier = await store.read_logs(job.id, attempt=1, stream=None, offset=0, limit=100)
    latest = await store.read_logs(job.id, attempt=None, stream=None, offset=0, limit=100)

    assert (earlier.attempt, len(earlier.chunks), earlier.done) == (1, 4, True)
    assert (latest.attempt, [c.data for c in latest.chunks], latest.done) == (
        2,
        [b"again\n"],
        False,
    )


async def test_a_follower_gets_output_as_it_is_stored_and_stops_when_the_attempt_ends(
    store: Store,
) -> None:
    job = await submit(store)
    got = await claim(store)
    writer = LogWriter(store, job.id, got.attempt)

    async def follow() -> bytes:
        # A poll far longer than the test: only the store's change events wake it.
        chunks = read_log(store, job.id, follow=True, poll_seconds=3600)
        return b"".join([c.data async for c in chunks])

    follower = asyncio.create_task(follow())
    for batch in BATCHES:
        await store.append_logs(job.id, got.attempt, writer.chunks(batch))
    await store.finish_attempt(job.id, got.attempt, exited(0))

    assert await asyncio.wait_for(follower, 10) == b"hello warning\nworld\ndone\n"


async def _write_attempt(store: Store, job_id: str, claimed: Claim, data: bytes) -> None:
    writer = LogWriter(store, job_id, claimed.attempt)
    await store.append_logs(job_id, claimed.attempt, writer.chunks([(Stream.STDOUT, data)]))


async def _lose_and_run_again(store: Store, job_id: str) -> None:
    """The first attempt (leased until T0 + 10) is lost; a second one writes
    "second try" and succeeds."""
    [lost] = await store.reap_expired(T0 + 11, max_lost=3)
    assert lost.new_state is JobState.QUEUED
    second = await claim(store, worker="w2", now=T0 + 12)
    await _write_attempt(store, job_id, second, b"second try\n")
    await store.finish_attempt(job_id, second.attempt, exited(0, T0 + 13))


async def test_a_follower_of_a_job_goes_on_with_its_next_attempt_when_the_first_is_lost(
    store: Store,
) -> None:
    job = await submit(store)
    await _write_attempt(
        store, job.id, await claim(store, worker="w1", now=T0, lease=10), b"first try\n"
    )

    # Both followers have read the first attempt's output before it is lost
    # (a follower that starts after the rerun reads the latest attempt only).
    latest = read_log(store, job.id, follow=True, poll_seconds=3600)
    pinned = read_log(store, job.id, follow=True, poll_seconds=3600, attempt=1)
    assert (await latest.__anext__()).data == b"first try\n"
    assert (await pinned.__anext__()).data == b"first try\n"

    async def rest(chunks: AsyncIterator[LogChunk]) -> bytes:
        return b"".join([c.data async for c in chunks])

    latest_rest = asyncio.create_task(rest(latest))
    pinned_rest = asyncio.create_task(rest(pinned))
    await _lose_and_run_again(store, job.id)

    assert await asyncio.wait_for(latest_rest, 10) == b"second try\n"
    assert await asyncio.wait_for(pinned_rest, 10) == b""


async def test_a_follower_that_lags_behind_a_rerun_job_still_gets_its_last_attempt(
    store: Store,
) -> None:
    job = await submit(store)
    await _write_attempt(
        store, job.id, await claim(store, worker="w1", now=T0, lease=10), b"first try\n"
    )
    follower = read_log(store, job.id, follow=True, poll_seconds=3600)
    assert (await follower.__anext__()).data == b"first try\n"

    # While the follower has not looked again, the job is lost, run again and finished.
    await _lose_and_run_again(store, job.id)

    rest = [chunk.data async for chunk in follower]
    assert b"".join(rest) == b"second try\n"


async def test_reading_the_logs_of_an_unknown_job_raises_job_not_found(store: Store) -> None:
    with pytest.raises(JobNotFound):
        await store.read_logs("0123456789abcdef", attempt=None, stream=None, offset=0)
    with pytest.raises(JobNotFound):
        [c async for c in read_log(store, "0123456789abcdef")]


# -- arrival times, the last lines, what arrived since ----------------------------


async def test_each_chunk_reads_back_with_the_time_it_arrived(store: Store) -> None:
    job, _ = await running_job_with_output(store)

    merged = await store.read_logs(job.id, attempt=None, stream=None, offset=0, limit=100)
    stderr = await store.read_logs(job.id, attempt=None, stream=ERR, offset=0, limit=100)

    assert [(c.seq, c.at) for c in merged.chunks] == [
        (1, T0 + 1),
        (2, T0 + 1),
        (3, T0 + 1),
        (4, T0 + 2),
    ]
    assert [c.at for c in stderr.chunks] == [T0 + 1, T0 + 2]


async def test_a_chunk_stored_without_a_time_reads_back_with_its_attempts_start(
    store: Store,
) -> None:
    # As chunks stored before migration 0010 do.
    job = await submit(store)
    got = await claim(store)
    await store.mark_started(job.id, got.attempt, Started(None, None, "h", T0 + 0.5))
    await store.append_logs(job.id, got.attempt, [LogChunk(1, OUT, 0, 0, b"old\n")])

    read = await store.read_logs(job.id, attempt=None, stream=None, offset=0)
    since = await store.log_offset_at(job.id, attempt=got.attempt, stream=None, since=T0 + 1)

    assert [(c.data, c.at) for c in read.chunks] == [(b"old\n", T0 + 0.5)]
    assert since == 4


async def test_reading_logs_back_gives_the_chunks_before_an_offset_last_first(
    store: Store,
) -> None:
    job, got = await running_job_with_output(store)

    def seqs(chunks: list[LogChunk]) -> list[int]:
        return [c.seq for c in chunks]

    everything = await store.read_logs_back(
        job.id, attempt=got.attempt, stream=None, before=1 << 62
    )
    before_14 = await store.read_logs_back(job.id, attempt=got.attempt, stream=None, before=14)
    stdout_page = await store.read_logs_back(
        job.id, attempt=got.attempt, stream=OUT, before=12, limit=1
    )

    assert seqs(everything) == [4, 3, 2, 1]
    assert [c.at for c in everything] == [T0 + 2, T0 + 1, T0 + 1, T0 + 1]
    assert seqs(before_14) == [2, 1]
    assert described(stdout_page) == [(3, OUT, 6, 14, b"world\n")]


async def test_log_offset_at_is_where_the_output_that_arrived_since_begins(
    store: Store,
) -> None:
    job, got = await running_job_with_output(store)

    async def offset(stream: Stream | None, since: float) -> int:
        return await store.log_offset_at(job.id, attempt=got.attempt, stream=stream, since=since)

    assert await offset(None, T0) == 0
    assert await offset(None, T0 + 1.5) == 20
    assert await offset(ERR, T0 + 1.5) == 8
    assert await offset(OUT, T0 + 1.5) == 12
    assert await offset(None, T0 + 3) == 25


@pytest.mark.parametrize(
    ("stream", "lines", "expected"),
    [
        (None, 0, b""),
        (None, 1, b"done\n"),
        (None, 2, b"world\ndone\n"),
        (None, 3, b"hello warning\nworld\ndone\n"),
        (None, 50, b"hello warning\nworld\ndone\n"),
        (OUT, 1, b"hello world\n"),
        (ERR, 1, b"done\n"),
    ],
)
async def test_tail_offset_is_where_the_last_lines_begin(
    store: Store, stream: Stream | None, lines: int, expected: bytes
) -> None:
    job, got = await running_job_with_output(store)

    start = await tail_offset(store, job.id, attempt=got.attempt, stream=stream, lines=lines)
    chunks = [c async for c in read_log(store, job.id, stream=stream, offset=start)]

    assert b"".join(c.data for c in chunks) == expected


async def test_tail_counts_an_unfinished_last_line_and_reads_back_past_a_page(
    store: Store,
) -> None:
    job = await submit(store)
    got = await claim(store)
    writer = LogWriter(store, job.id, got.attempt)
    for number in range(20):  # one chunk each: more than a page read back
        await store.append_logs(job.id, got.attempt, writer.chunks([(OUT, b"x" * number + b"\n")]))
    await store.append_logs(job.id, got.attempt, writer.chunks([(OUT, b"partial")]))

    start = await tail_offset(store, job.id, attempt=got.attempt, stream=OUT, lines=12)
    tail = b"".join([c.data async for c in read_log(store, job.id, stream=OUT, offset=start)])

    assert tail.split(b"\n") == [b"x" * n for n in range(9, 20)] + [b"partial"]
