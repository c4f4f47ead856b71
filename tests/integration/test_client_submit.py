"""``Client.submit`` on the caller's thread (jobdock.client_submit) against a
real server: submits from many threads at once each get their own job; a
kept-alive connection the server closed (here: by restarting) is replaced
before the next submit; a server that is gone is ServerUnreachable, told
apart as a refused connection as the CLI does (error answers:
test_library.py)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

import jobdock
from jobdock import Client
from support import ServerProcess


def test_submits_from_many_threads_at_once_each_get_their_own_job(client: Client) -> None:
    with ThreadPoolExecutor(8) as pool:
        handles = list(pool.map(lambda i: client.submit({"command": ["true"]}), range(64)))

    assert len({handle.id for handle in handles}) == 64
    assert {job.id for job in client.list(limit=1000).jobs} >= {h.id for h in handles}


def test_a_connection_the_server_closed_is_replaced_before_the_next_submit(
    tmp_path: Path,
) -> None:
    server = ServerProcess(tmp_path, args=("--no-worker",)).start()
    try:
        with Client(server.url) as client:
            first = client.submit({"command": ["true"]})
            server.stop()
            server.start()  # same port and store: the kept-alive connection is gone
            second = client.submit({"command": ["true"]})
            listed = {job.id for job in client.list().jobs}
    finally:
        server.stop()

    assert first.id != second.id
    assert {first.id, second.id} <= listed
    assert len(listed) == 2, "no submit was sent twice"


def test_a_server_that_is_gone_is_unreachable_as_a_refused_connection(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, args=("--no-worker",)).start()
    client = Client(server.url)
    client.submit({"command": ["true"]})
    server.stop()
    try:
        with pytest.raises(jobdock.ServerUnreachable) as raised:
            client.submit({"command": ["true"]})
    finally:
        client.close()

    assert raised.value.message.startswith(f"cannot reach the jobdock server at {server.url}")
    assert isinstance(raised.value.__context__, httpx.ConnectError)
