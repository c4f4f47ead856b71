"""A job's log as ``docker logs --tail N --since 10m -t`` shows it, through
GET /v1/jobs/{id}/logs on a real server: the last lines, what arrived since
a time, and each line after the time it arrived."""

from __future__ import annotations

import re
import threading
import time
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from jobdock import Client, Stream
from support import ServerProcess, eventually

_STAMPED = re.compile(rb"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z) (.*)")


def finished(client: Client, command: str) -> str:
    job = client.submit({"command": ["sh", "-c", command]})
    assert client.wait(job.id, timeout=60).terminal
    return job.id


def logs(server: ServerProcess, job_id: str, **params: object) -> httpx.Response:
    return httpx.get(f"{server.url}/v1/jobs/{job_id}/logs", params=params, timeout=30)


def waiting_job(client: Client, tmp_path: Path, before: str, after: str) -> tuple[str, Path]:
    """A job that prints ``before``, waits for a file, then prints ``after``."""
    go = tmp_path / "go"
    script = f"printf '{before}'; while [ ! -e {go} ]; do sleep 0.02; done; printf '{after}'"
    return client.submit({"command": ["sh", "-c", script]}).id, go


def text(client: Client, job_id: str, **options: object) -> bytes:
    return b"".join(data for _, data in client.logs(job_id, **options))  # type: ignore[arg-type]


def test_tail_gives_the_last_lines_of_one_stream_or_both(
    client: Client, server: ServerProcess
) -> None:
    # (The order of two pipes' output is the order it was read in: one stream
    # at a time for exact expectations.)
    job_id = finished(client, "seq 1 5; printf 'no newline'")
    mixed = finished(client, "seq 1 3; echo oops >&2; echo again >&2")

    assert logs(server, job_id, tail=2).content == b"5\nno newline"
    assert logs(server, job_id, tail=0).content == b""
    assert logs(server, job_id, tail=100).content == b"1\n2\n3\n4\n5\nno newline"
    assert logs(server, mixed, tail=1, stream="stdout").content == b"3\n"
    assert logs(server, mixed, tail=1, stream="stderr").content == b"again\n"
    assert len(logs(server, mixed, tail=4).content.splitlines()) == 4


def test_since_gives_only_what_arrived_after_that_time(
    client: Client, server: ServerProcess, tmp_path: Path
) -> None:
    job_id, go = waiting_job(client, tmp_path, "early\\n", "late\\n")
    eventually(lambda: text(client, job_id) == b"early\n", what="the early line")
    between = time.time()
    go.touch()
    client.wait(job_id, timeout=60)

    assert logs(server, job_id, since=f"{between:.6f}").content == b"late\n"
    assert logs(server, job_id, since=str(int(between) + 3600)).content == b""
    assert logs(server, job_id, since="1h").content == b"early\nlate\n"
    assert logs(server, job_id, since="2000-01-01T00:00:00Z").content == b"early\nlate\n"


def test_timestamps_put_each_lines_arrival_time_before_it(
    client: Client, server: ServerProcess
) -> None:
    job_id = finished(client, "echo one; echo two >&2; echo three")
    job = client.get(job_id)
    assert job.started_at is not None and job.finished_at is not None

    lines = logs(server, job_id, timestamps="true").content.split(b"\n")

    stamped = [_STAMPED.fullmatch(line) for line in lines]
    assert lines[-1] == b""
    stamped = stamped[:-1]
    assert all(stamped), lines
    assert sorted(m.group(2) for m in stamped if m) == [b"one", b"three", b"two"]
    for match in stamped:
        assert match is not None
        at = datetime.fromisoformat(match.group(1).decode())
        assert job.started_at.timestamp() - 1 <= at.timestamp() <= job.finished_at.timestamp()
    stderr = text(client, job_id, stream=Stream.STDERR, timestamps=True)
    assert re.fullmatch(rb"\S+Z two\n", stderr)


def test_timestamps_stamp_an_unfinished_last_line_too(
    client: Client, server: ServerProcess
) -> None:
    job_id = finished(client, "printf 'a\\nb'")

    content = logs(server, job_id, timestamps="true").content

    assert re.fullmatch(rb"\S+Z a\n\S+Z b", content), content


def test_following_from_the_last_line_goes_on_with_new_output(
    client: Client, server: ServerProcess, tmp_path: Path
) -> None:
    job_id, go = waiting_job(client, tmp_path, "a\\nb\\n", "c\\n")
    eventually(lambda: text(client, job_id) == b"a\nb\n", what="the first lines")
    received: list[bytes] = []

    def follow() -> None:
        with Client(server.url) as own:
            for _, data in own.logs(job_id, follow=True, tail=1, timestamps=True):
                received.append(data)

    follower = threading.Thread(target=follow)
    follower.start()
    eventually(lambda: b"b\n" in b"".join(received), what="the last line")
    go.touch()
    follower.join(60)

    lines = b"".join(received).split(b"\n")
    assert [_STAMPED.fullmatch(line).group(2) for line in lines[:-1]] == [b"b", b"c"]  # type: ignore[union-attr]
    assert lines[-1] == b""


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"since": "soon"}, "since"),
        ({"since": "2026-01-01T00:00:00"}, "since"),
        ({"since": "99999999999999"}, "since"),
        ({"tail": -1}, "tail"),
        ({"tail": 10**7}, "tail"),
        ({"tail": "many"}, "tail"),
    ],
)
def test_a_bad_tail_or_since_is_422_naming_it(
    client: Client, server: ServerProcess, params: dict[str, object], field: str
) -> None:
    job_id = finished(client, "echo hi")

    response = logs(server, job_id, **params)

    assert response.status_code == 422
    error = response.json()["error"]
    assert (error["code"], error.get("field")) == ("invalid_request", field)
    assert field in error["message"]
