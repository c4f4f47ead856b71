"""Limits on requests, against a real server: no request can take the
server's memory, CPU or connections from everyone else (docs/security.md,
"Limits on requests")."""

from __future__ import annotations

import base64
import json
import os
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support import ServerProcess, eventually, make_pki

#: The server's limits here: small, so that the tests are quick.
LIMIT = "1MiB"
LIMIT_BYTES = 1 << 20
HEADER_TIMEOUT = 1.0
TOO_LARGE = "the limit is 1 MiB (max_request_body)"

#: Under 500 bytes of workflow whose params stand for 9**9 strings once their
#: aliases are expanded: it took 43 s of CPU and 4.6 GB to store.
YAML_BOMB = (
    "name: laughs\nsteps: [{name: s, job: {command: [echo]}}]\nparams:\n"
    '  a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n'
    + "".join(
        f"  {name}: &{name} [{', '.join([f'*{previous}'] * 9)}]\n"
        for previous, name in zip("abcdefgh", "bcdefghi", strict=True)
    )
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(
        tmp_path_factory.mktemp("limits"),
        max_request_body=LIMIT,
        header_timeout=str(HEADER_TIMEOUT),
        containers="false",
    ).start()
    yield proc
    proc.stop()


def connect(server: ServerProcess) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=10)


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (a reset
    after its answer counts as closed)."""
    received = b""
    while True:
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            return received
        if not data:
            return received
        received += data


def answer(raw: bytes) -> tuple[int, dict[str, object]]:
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


@pytest.mark.parametrize(
    "path",
    ["/v1/jobs", "/v1/run", "/v1/workflows", "/job/run?image=busybox&input=stdin"],
)
def test_a_declared_oversize_body_is_refused_before_it_is_sent(
    server: ServerProcess, path: str
) -> None:
    with connect(server) as sock:
        # Only the head: the server must answer without waiting for the body.
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            f"content-length: {LIMIT_BYTES + 1}\r\n\r\n".encode()
        )
        status, body = answer(read_until_closed(sock))
    assert status == 413
    assert body["error"] == {
        "code": "request_too_large",
        "message": f"the request body is larger than this server accepts: {TOO_LARGE}",
    }


def test_a_chunked_body_is_cut_off_at_the_limit(server: ServerProcess) -> None:
    chunk = b"x" * 65536
    sent = 0
    with connect(server) as sock:
        sock.sendall(b"POST /v1/jobs HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n")
        try:
            # Up to 8 times the limit: the server answers, and stops reading, long before.
            while sent < 8 * LIMIT_BYTES:
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        status, body = answer(read_until_closed(sock))
    assert status == 413
    assert TOO_LARGE in str(body)
    assert sent < 8 * LIMIT_BYTES


def test_a_body_within_the_limit_is_served(server: ServerProcess) -> None:
    data = os.urandom(600_000)  # 800 kB as base64
    spec = {"command": ["wc", "-c"], "stdin_base64": base64.b64encode(data).decode()}
    response = httpx.post(f"{server.url}/v1/run", json=spec, timeout=30)
    assert response.status_code == 200, response.text
    assert response.json()["stdout"].strip() == "600000"


def test_the_python_client_sees_the_413(server: ServerProcess) -> None:
    response = httpx.post(f"{server.url}/v1/jobs", content=b"x" * (2 * LIMIT_BYTES), timeout=30)
    assert response.status_code == 413
    assert TOO_LARGE in response.json()["error"]["message"]


def test_a_yaml_alias_bomb_is_refused_at_once(server: ServerProcess) -> None:
    assert len(YAML_BOMB) < 500
    start = time.monotonic()
    response = httpx.post(
        f"{server.url}/v1/workflows",
        content=YAML_BOMB,
        headers={"content-type": "application/yaml"},
        timeout=60,
    )
    assert time.monotonic() - start < 1.0
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"
    assert "aliases" in response.json()["error"]["message"]
    assert httpx.get(f"{server.url}/healthz", timeout=1).status_code == 200


def test_yaml_aliases_within_the_bounds_still_work(server: ServerProcess) -> None:
    document = (
        "name: shared\nsteps:\n"
        "  - name: one\n    job: &job {command: [echo, hi]}\n"
        "  - name: two\n    job: *job\n"
    )
    response = httpx.post(
        f"{server.url}/v1/workflows", content=document, headers={"content-type": "application/yaml"}
    )
    assert response.status_code == 201, response.text
    assert [step["name"] for step in response.json()["steps"]] == ["one", "two"]


@pytest.mark.parametrize(
    "path", ["/v1/jobs", "/v1/run", "/v1/workflows", "/v1/schedules", "/v1/tokens"]
)
def test_deeply_nested_json_is_refused_naming_the_depth(server: ServerProcess, path: str) -> None:
    body = b"[" * 100_000 + b"]" * 100_000
    response = httpx.post(
        f"{server.url}{path}", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"] == {
        "code": "invalid_json",
        "message": "the body is nested more than 64 levels deep",
    }


def test_deeply_nested_yaml_is_refused_naming_the_depth(server: ServerProcess) -> None:
    body = "name: deep\nsteps: []\nx: " + "[" * 10_000 + "]" * 10_000 + "\n"
    response = httpx.post(
        f"{server.url}/v1/workflows", content=body, headers={"content-type": "application/yaml"}
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["message"] == "the body is nested more than 64 levels deep"


def closed_within(sock: socket.socket, seconds: float) -> bytes:
    """What the server sent before it closed ``sock``, which it must do
    within ``seconds``."""
    sock.settimeout(seconds)
    try:
        return read_until_closed(sock)
    except TimeoutError:
        raise AssertionError(f"the server kept the connection open for {seconds} s") from None


def test_a_connection_that_sends_its_head_slowly_is_closed(server: ServerProcess) -> None:
    with connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\n")  # and nothing more
        status, body = answer(closed_within(sock, HEADER_TIMEOUT + 5))
    assert status == 408
    assert body["error"]["code"] == "request_timeout"
    assert "1 s (header_timeout)" in str(body["error"]["message"])


def test_slow_connections_are_closed_and_the_server_still_answers(
    server: ServerProcess,
) -> None:
    socks = [connect(server) for _ in range(50)]
    try:
        for sock in socks:
            sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        assert httpx.get(f"{server.url}/healthz", timeout=2).status_code == 200
        deadline = time.monotonic() + HEADER_TIMEOUT + 10
        for sock in socks:
            closed_within(sock, max(deadline - time.monotonic(), 0.1))
    finally:
        for sock in socks:
            sock.close()


def test_a_connection_that_sends_nothing_is_closed(server: ServerProcess) -> None:
    with connect(server) as sock:
        assert closed_within(sock, HEADER_TIMEOUT + 5) == b""


def test_the_deadline_holds_for_each_request_on_a_kept_alive_connection(
    server: ServerProcess,
) -> None:
    with connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        eventually(lambda: b'"ok"' in sock.recv(65536), what="the first answer")
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")  # the second request's head, unfinished
        status, _ = answer(closed_within(sock, HEADER_TIMEOUT + 5))
    assert status == 408


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    pki = make_pki(tmp_path_factory.mktemp("pki"))
    proc = ServerProcess(
        tmp_path_factory.mktemp("limits-tls"),
        verify=ssl.create_default_context(cafile=pki / "ca.pem"),
        tls_cert=str(pki / "server.pem"),
        tls_key=str(pki / "server-key.pem"),
        header_timeout=str(HEADER_TIMEOUT),
        max_request_body=LIMIT,
        containers="false",
    ).start()
    proc.ca = pki / "ca.pem"  # type: ignore[attr-defined]
    yield proc
    proc.stop()


def test_the_deadline_and_the_body_limit_hold_over_tls(tls_server: ServerProcess) -> None:
    ca: Path = tls_server.ca  # type: ignore[attr-defined]
    context = ssl.create_default_context(cafile=ca)
    with context.wrap_socket(connect(tls_server), server_hostname="127.0.0.1") as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\n")
        status, _ = answer(closed_within(sock, HEADER_TIMEOUT + 5))
    assert status == 408
    response = httpx.post(
        f"{tls_server.url}/v1/jobs", content=b"x" * (2 * LIMIT_BYTES), verify=context
    )
    assert response.status_code == 413
    assert TOO_LARGE in response.json()["error"]["message"]
