"""``jobdock.Client()`` with no arguments finds its server and credentials
where the CLI does: JOBDOCK_URL, JOBDOCK_TOKEN and the TLS variables
(JOBDOCK_CA, JOBDOCK_CERT, JOBDOCK_KEY); arguments given win. Real servers:
one that requires tokens, one that requires client certificates."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from jobdock import ApiError, AsyncClient, Client
from jobdock.client import Credentials
from support import ServerProcess, free_port, make_pki, make_token, start_mtls_server

QUICK_JOB = {"command": ["true"]}


@dataclass
class TokenServer:
    server: ServerProcess
    alice: str
    bob: str


@pytest.fixture(scope="module")
def tokens(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenServer]:
    home = tmp_path_factory.mktemp("client-env")
    server = ServerProcess(home, args=["--tokens"])
    alice, bob = make_token(home, "alice"), make_token(home, "bob")
    server.start()
    yield TokenServer(server, alice, bob)
    server.stop()


def test_a_client_without_arguments_uses_jobdock_url_and_token(
    tokens: TokenServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOBDOCK_URL", tokens.server.url)
    monkeypatch.setenv("JOBDOCK_TOKEN", tokens.alice)
    with Client() as client:
        assert client.url == tokens.server.url
        assert client.submit(QUICK_JOB).owner == "alice"


async def test_an_async_client_without_arguments_does_too(
    tokens: TokenServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOBDOCK_URL", tokens.server.url)
    monkeypatch.setenv("JOBDOCK_TOKEN", tokens.bob)
    async with AsyncClient() as client:
        assert (await client.submit(QUICK_JOB)).owner == "bob"


def test_arguments_given_win_over_the_environment(
    tokens: TokenServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOBDOCK_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("JOBDOCK_TOKEN", tokens.bob)
    given = Credentials(token=tokens.alice)
    with Client(tokens.server.url, credentials=given) as client:
        assert client.submit(QUICK_JOB).owner == "alice"
    # The URL given, the token still from the environment.
    with Client(tokens.server.url) as client:
        assert client.submit(QUICK_JOB).owner == "bob"


def test_a_bad_token_in_the_environment_is_refused_as_the_cli_is(
    tokens: TokenServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOBDOCK_URL", tokens.server.url)
    monkeypatch.setenv("JOBDOCK_TOKEN", "jd_nobody_wrong")
    with Client() as client, pytest.raises(ApiError) as refused:
        client.submit(QUICK_JOB)
    assert refused.value.status == 401


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, Path]]:
    """A server requiring client certificates of a CA the CLI made, and alice's."""
    pki = make_pki(tmp_path_factory.mktemp("client-env-pki"), "alice")
    server = start_mtls_server(tmp_path_factory.mktemp("client-env-tls"), pki)
    yield server, pki
    server.stop()


def test_a_client_without_arguments_uses_the_tls_variables(
    tls_server: tuple[ServerProcess, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, pki = tls_server
    monkeypatch.setenv("JOBDOCK_URL", server.url)
    monkeypatch.setenv("JOBDOCK_CA", str(pki / "ca.pem"))
    monkeypatch.setenv("JOBDOCK_CERT", str(pki / "alice.pem"))
    monkeypatch.setenv("JOBDOCK_KEY", str(pki / "alice-key.pem"))
    with Client() as client:
        assert client.submit(QUICK_JOB).owner == "alice"
