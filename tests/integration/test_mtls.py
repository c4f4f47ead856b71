"""Mutual TLS on a real server: the user is the client certificate's common
name; no certificate, another CA's, an expired one, or old TLS are refused
(TLS 1.2 only where tls_min_version allows it)."""

from __future__ import annotations

import datetime as dt
import os
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from jobdock import Client, JobState
from jobdock.api.tls import server_context
from jobdock.certs import Pair, init_ca, issue_client
from jobdock.client import Credentials
from jobdock.settings import Settings
from support import ServerProcess, make_pki, start_mtls_server


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA made by the CLI, with a server certificate for 127.0.0.1 and
    client certificates for alice, bob and root."""
    directory = make_pki(tmp_path_factory.mktemp("pki"), "alice", "bob", "root")
    assert (directory / "ca-key.pem").stat().st_mode & 0o777 == 0o600
    return directory


def context(pki: Path, pair: Pair | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=pki / "ca.pem")
    if pair is not None:
        ctx.load_cert_chain(pair.cert, pair.key)
    return ctx


def user(pki: Path, name: str) -> Pair:
    return Pair(pki / f"{name}.pem", pki / f"{name}-key.pem")


@pytest.fixture(scope="module")
def tls_server(pki: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = start_mtls_server(tmp_path_factory.mktemp("tls-server"), pki, admins="root")
    yield server
    server.stop()


def client(server: ServerProcess, pki: Path, name: str) -> Client:
    pair = user(pki, name)
    return Client(
        server.url, credentials=Credentials(ca=pki / "ca.pem", cert=pair.cert, key=pair.key)
    )


def test_the_user_is_the_certificates_common_name(tls_server: ServerProcess, pki: Path) -> None:
    with (
        client(tls_server, pki, "alice") as alice,
        client(tls_server, pki, "bob") as bob,
        client(tls_server, pki, "root") as root,
    ):
        job = alice.submit({"command": ["echo", "hi"]})
        assert job.owner == "alice"
        assert alice.wait(job.id, timeout=60).state is JobState.SUCCEEDED
        assert job.id not in [j.id for j in bob.list().jobs]
        response = httpx.get(
            f"{tls_server.url}/v1/jobs/{job.id}", verify=context(pki, user(pki, "bob"))
        )
        assert response.status_code == 404
        assert job.id in [j.id for j in root.list().jobs]


def test_the_cli_takes_ca_cert_and_key(tls_server: ServerProcess, pki: Path) -> None:
    env = {
        **os.environ,
        "JOBDOCK_URL": tls_server.url,
        "JOBDOCK_CA": str(pki / "ca.pem"),
    }
    done = subprocess.run(
        [
            sys.executable, "-m", "jobdock",
            "--cert", str(pki / "alice.pem"), "--key", str(pki / "alice-key.pem"),
            "run", "echo", "over mTLS",
        ],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == "over mTLS\n"


def test_a_request_without_a_certificate_gets_401(tls_server: ServerProcess, pki: Path) -> None:
    response = httpx.get(f"{tls_server.url}/v1/jobs", verify=context(pki, None))
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthenticated"
    posted = httpx.post(
        f"{tls_server.url}/v1/jobs", json={"command": ["true"]}, verify=context(pki, None)
    )
    assert posted.status_code == 401


def refused(server: ServerProcess, ctx: ssl.SSLContext) -> bool:
    try:
        httpx.get(f"{server.url}/v1/jobs", verify=ctx, timeout=10)
    except (httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError):
        return True
    return False


def test_a_certificate_from_another_ca_is_refused(
    tls_server: ServerProcess, pki: Path, tmp_path: Path
) -> None:
    init_ca(tmp_path, ["127.0.0.1"])
    mallory = issue_client(tmp_path, "alice")
    assert refused(tls_server, context(pki, mallory))


def test_an_expired_certificate_is_refused(
    tls_server: ServerProcess, pki: Path, tmp_path: Path
) -> None:
    (tmp_path / "ca.pem").write_bytes((pki / "ca.pem").read_bytes())
    (tmp_path / "ca-key.pem").write_bytes((pki / "ca-key.pem").read_bytes())
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=30)
    expired = issue_client(tmp_path, "alice", days=1, not_before=long_ago)
    assert refused(tls_server, context(pki, expired))


def test_the_server_context_takes_tls_1_3_and_the_clients_certificate(pki: Path) -> None:
    settings = Settings(
        tls_cert=pki / "server.pem", tls_key=pki / "server-key.pem", tls_ca=pki / "ca.pem"
    )
    ctx = server_context(settings)
    assert ctx.minimum_version is ssl.TLSVersion.TLSv1_3
    assert ctx.verify_mode is ssl.CERT_OPTIONAL


def tls_1_2_only(pki: Path, name: str) -> ssl.SSLContext:
    ctx = context(pki, user(pki, name))
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def test_a_tls_1_2_client_is_refused_by_default(tls_server: ServerProcess, pki: Path) -> None:
    assert refused(tls_server, tls_1_2_only(pki, "alice"))
    modern = httpx.get(f"{tls_server.url}/v1/jobs", verify=context(pki, user(pki, "alice")))
    assert modern.status_code == 200


def test_tls_1_2_is_accepted_when_the_server_allows_it(pki: Path, tmp_path: Path) -> None:
    server = start_mtls_server(tmp_path, pki, tls_min_version="1.2")
    try:
        response = httpx.get(f"{server.url}/v1/jobs", verify=tls_1_2_only(pki, "alice"))
    finally:
        server.stop()

    assert response.status_code == 200


def test_an_unknown_tls_version_is_refused_naming_the_setting() -> None:
    with pytest.raises(ValueError, match="tls_min_version"):
        Settings(tls_min_version="1.1")  # type: ignore[arg-type]
    assert Settings(tls_min_version=1.2).tls_min_version == "1.2"  # type: ignore[arg-type]
