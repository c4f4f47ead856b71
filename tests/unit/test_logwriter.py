"""LogWriter: how an attempt's output becomes numbered chunks with offsets in
their stream and in both streams merged."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from jobdock.errors import FencedOff
from jobdock.logs import MAX_CHUNK, LogWriter, read_log
from jobdock.models import JobSpec, Stream
from jobdock.store import LogChunk, NewJob, Store
from jobdock.store.sql import SqlStore

OUT, ERR = Stream.STDOUT, Stream.STDERR
T0 = 1_700_000_000.0


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = SqlStore(f"sqlite:///{tmp_path}/jobs.db")
    await store.open()
    yield store
    await store.close()


@pytest.fixture
async def running(store: Store) -> tuple[str, int]:
    """A job that a worker claimed: its id and attempt number."""
    await store.create_job(NewJob("0123456789abcdef", JobSpec(command=["true"]), b"", T0))
    [claim] = await store.claim_jobs("w1", 1, T0, 30)
    return claim.job_id, claim.attempt


@pytest.fixture
def writer(store: Store, running: tuple[str, int]) -> LogWriter:
    return LogWriter(store, *running)


def described(chunks: list[LogChunk]) -> list[tuple[int, Stream, int, int, bytes]]:
    return [(c.seq, c.stream, c.offset, c.merged_offset, c.data) for c in chunks]


def test_chunks_are_numbered_from_one_across_batches(writer: LogWriter) -> None:
    first = writer.chunks([(OUT, b"a"), (ERR, b"b")])
    second = writer.chunks([(OUT, b"c")])

    assert [c.seq for c in first + second] == [1, 2, 3]


def test_neighbouring_output_of_one_stream_is_joined_into_one_chunk(writer: LogWriter) -> None:
    chunks = writer.chunks([(OUT, b"one "), (OUT, b"two "), (OUT, b"three\n")])

    assert described(chunks) == [(1, OUT, 0, 0, b"one two three\n")]


def test_order_across_streams_is_kept(writer: LogWriter) -> None:
    chunks = writer.chunks([(OUT, b"a"), (OUT, b"b"), (ERR, b"c"), (OUT, b"d"), (ERR, b"e")])

    assert [(c.stream, c.data) for c in chunks] == [
        (OUT, b"ab"),
        (ERR, b"c"),
        (OUT, b"d"),
        (ERR, b"e"),
    ]


def test_offsets_count_bytes_per_stream_and_merged_across_batches(writer: LogWriter) -> None:
    first = writer.chunks([(OUT, b"hello "), (ERR, b"warning\n"), (OUT, b"world\n")])
    second = writer.chunks([(ERR, b"done\n"), (OUT, b"!")])

    assert described(first + second) == [
        (1, OUT, 0, 0, b"hello "),
        (2, ERR, 0, 6, b"warning\n"),
        (3, OUT, 6, 14, b"world\n"),
        (4, ERR, 8, 20, b"done\n"),
        (5, OUT, 12, 25, b"!"),
    ]
    assert writer.bytes == {OUT: 13, ERR: 13}


def test_output_larger_than_max_chunk_is_split_into_consecutive_chunks(
    writer: LogWriter,
) -> None:
    data = bytes(range(256)) * (2 * MAX_CHUNK // 256) + b"tail"
    writer.chunks([(ERR, b"before")])

    chunks = writer.chunks([(OUT, data)])

    assert [len(c.data) for c in chunks] == [MAX_CHUNK, MAX_CHUNK, 4]
    assert [c.seq for c in chunks] == [2, 3, 4]
    assert [c.offset for c in chunks] == [0, MAX_CHUNK, 2 * MAX_CHUNK]
    assert [c.merged_offset for c in chunks] == [6, 6 + MAX_CHUNK, 6 + 2 * MAX_CHUNK]
    assert b"".join(c.data for c in chunks) == data


def test_joined_neighbours_larger_than_max_chunk_are_split_too(writer: LogWriter) -> None:
    half = MAX_CHUNK // 2 + 1
    pieces = [(OUT, bytes([i]) * half) for i in range(3)]

    chunks = writer.chunks(pieces)

    assert [len(c.data) for c in chunks] == [MAX_CHUNK, 3 * half - MAX_CHUNK]
    assert b"".join(c.data for c in chunks) == b"".join(data for _, data in pieces)


def test_output_of_exactly_max_chunk_is_one_chunk(writer: LogWriter) -> None:
    chunks = writer.chunks([(OUT, b"x" * MAX_CHUNK)])

    assert [(c.seq, len(c.data)) for c in chunks] == [(1, MAX_CHUNK)]


def test_an_empty_batch_makes_no_chunks(writer: LogWriter) -> None:
    assert writer.chunks([]) == []
    assert writer.chunks([(OUT, b"")]) == []
    assert writer.chunks([(OUT, b"a")])[0].seq == 1


async def _batches(
    *batches: list[tuple[Stream, bytes]],
) -> AsyncIterator[list[tuple[Stream, bytes]]]:
    for batch in batches:
        yield batch


async def test_pumped_output_reads_back_exactly_merged_and_per_stream(
    store: Store, running: tuple[str, int], writer: LogWriter
) -> None:
    job_id, _ = running
    big = bytes(range(256)) * (MAX_CHUNK // 128) + b"end"

    await writer.pump(
        _batches([(OUT, b"start\n"), (ERR, b"e1\n")], [(OUT, big)], [(ERR, b"e2\n"), (OUT, b"!")])
    )

    merged = b"".join([c.data async for c in read_log(store, job_id)])
    stdout = b"".join([c.data async for c in read_log(store, job_id, stream=OUT)])
    stderr = b"".join([c.data async for c in read_log(store, job_id, stream=ERR)])
    assert merged == b"start\ne1\n" + big + b"e2\n!"
    assert stdout == b"start\n" + big + b"!"
    assert stderr == b"e1\ne2\n"


async def test_pumping_for_an_attempt_that_lost_the_job_raises_fenced_off(
    store: Store, running: tuple[str, int], writer: LogWriter
) -> None:
    job_id, attempt = running
    await store.reap_expired(T0 + 60, max_lost=3)
    await store.claim_jobs("w2", 1, T0 + 61, 30)

    with pytest.raises(FencedOff):
        await writer.pump(_batches([(OUT, b"late\n")]))

    read = await store.read_logs(job_id, attempt=attempt, stream=None, offset=0)
    assert read.chunks == []
