"""CORS on a real server: pages of the origins in cors_origins may call the
API from a browser with an API token; every other site is still refused,
the dashboard is untouched, and a client certificate never counts for
another site's call. Off by default."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support import ServerProcess, make_pki, make_token, start_mtls_server

PAGES = "https://pages.example"
#: What a browser sends with a fetch() from a page of PAGES.
FROM_PAGES = {"origin": PAGES, "sec-fetch-site": "cross-site", "sec-fetch-mode": "cors"}
JOB = {"command": ["true"]}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, str]]:
    home = tmp_path_factory.mktemp("cors")
    started = ServerProcess(home, args=["--tokens"], cors_origins=f'["{PAGES}"]')
    token = make_token(home, "alice")
    started.start()
    yield started, token
    started.stop()


def test_a_preflight_from_a_listed_origin_allows_the_token_header(
    server: tuple[ServerProcess, str],
) -> None:
    url = server[0].url
    preflight = httpx.options(
        url + "/v1/jobs",
        headers={
            **FROM_PAGES,
            "access-control-request-method": "POST",
            "access-control-request-headers": "authorization, content-type, x-evil",
        },
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == PAGES
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert preflight.headers["access-control-allow-headers"] == "authorization, content-type"
    assert "access-control-allow-credentials" not in preflight.headers


def test_a_listed_origins_page_calls_the_api_with_a_token_and_reads_the_answer(
    server: tuple[ServerProcess, str],
) -> None:
    url, token = server[0].url, server[1]
    made = httpx.post(
        url + "/v1/jobs", json=JOB, headers={**FROM_PAGES, "authorization": f"Bearer {token}"}
    )
    assert made.status_code == 201
    assert made.json()["owner"] == "alice"
    assert made.headers["access-control-allow-origin"] == PAGES
    assert "Origin" in made.headers["vary"]

    anonymous = httpx.get(url + "/v1/jobs", headers=FROM_PAGES)
    assert anonymous.status_code == 401, "a token is still required"
    assert anonymous.headers["access-control-allow-origin"] == PAGES, "the page can read why"


def test_other_sites_stay_refused_and_the_dashboard_gets_no_cors(
    server: tuple[ServerProcess, str],
) -> None:
    url, token = server[0].url, server[1]
    evil = {**FROM_PAGES, "origin": "https://evil.example", "authorization": f"Bearer {token}"}
    refused = httpx.post(url + "/v1/jobs", json=JOB, headers=evil)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "cross_origin"
    assert "access-control-allow-origin" not in refused.headers

    page = httpx.get(url + "/ui", headers=FROM_PAGES)
    assert "access-control-allow-origin" not in page.headers

    own = {"origin": url, "sec-fetch-site": "same-origin", "sec-fetch-mode": "cors"}
    dashboard = httpx.get(url + "/v1/jobs", headers={**own, "authorization": f"Bearer {token}"})
    assert dashboard.status_code == 200
    assert "access-control-allow-origin" not in dashboard.headers


def test_without_cors_origins_every_other_site_is_refused(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path).start()
    try:
        preflight = httpx.options(
            server.url + "/v1/jobs", headers={**FROM_PAGES, "access-control-request-method": "POST"}
        )
        assert "access-control-allow-origin" not in preflight.headers
        call = httpx.post(server.url + "/v1/jobs", json=JOB, headers=FROM_PAGES)
        assert call.status_code == 403
        assert "access-control-allow-origin" not in call.headers
    finally:
        server.stop()


def test_a_client_certificate_does_not_authenticate_another_sites_call(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki", "alice")
    server = start_mtls_server(tmp_path / "home", pki, cors_origins=f'["{PAGES}"]')
    verify = ssl.create_default_context(cafile=pki / "ca.pem")
    verify.load_cert_chain(pki / "alice.pem", pki / "alice-key.pem")
    try:
        # The browser adds its certificate to a page's call by itself.
        ambient = httpx.get(server.url + "/v1/jobs", headers=FROM_PAGES, verify=verify)
        assert ambient.status_code == 401
        assert "API token" in ambient.json()["error"]["message"]
        # The dashboard's own calls authenticate by certificate as before.
        own = {"sec-fetch-site": "same-origin", "sec-fetch-mode": "cors"}
        assert httpx.get(server.url + "/v1/jobs", headers=own, verify=verify).status_code == 200
    finally:
        server.stop()
