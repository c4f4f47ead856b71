"""The dashboard's HTTP side on a real server: where it is served, the
security headers of its answers, /v1/me, and requests from another site's
pages refused (what a browser sends is set by hand here; the browser itself
is in tests/acceptance/test_dashboard.py)."""

from __future__ import annotations

import httpx
import pytest

from support import ServerProcess

JOB = {"command": ["true"]}


def test_the_root_redirects_to_the_dashboard_which_every_ui_path_serves(
    server: ServerProcess,
) -> None:
    root = httpx.get(server.url + "/")
    assert root.status_code == 307
    assert root.headers["location"] == "/ui"
    for path in ("/ui", "/ui/", "/ui/jobs/abc", "/ui/workers"):
        page = httpx.get(server.url + path)
        assert page.status_code == 200
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        assert '<script type="module" src="/ui/static/app.js">' in page.text


def test_dashboard_answers_forbid_inline_script_framing_and_sniffing(
    server: ServerProcess,
) -> None:
    for path in ("/ui", "/ui/static/app.js", "/ui/static/style.css", "/ui/static/nothing.js"):
        answer = httpx.get(server.url + path)
        policy = answer.headers["content-security-policy"]
        assert "script-src 'self';" in policy
        assert "'unsafe-inline'" not in policy
        assert "frame-ancestors 'none'" in policy
        assert answer.headers["x-content-type-options"] == "nosniff"
    assert (
        httpx.get(server.url + "/ui/static/app.js")
        .headers["content-type"]
        .startswith("text/javascript")
    )
    assert httpx.get(server.url + "/ui/static/nothing.js").status_code == 404
    assert httpx.get(server.url + "/ui/static/index.html").status_code == 404


def test_me_says_who_the_caller_is(server: ServerProcess) -> None:
    me = httpx.get(server.url + "/v1/me").json()
    assert me == {"name": "anonymous", "admin": True, "auth": "none"}


@pytest.mark.parametrize(
    "headers",
    [
        {"sec-fetch-site": "cross-site", "sec-fetch-mode": "navigate"},  # a form post
        {"sec-fetch-site": "same-site", "sec-fetch-mode": "no-cors"},  # another port
        {"origin": "http://evil.example"},  # a browser without Fetch Metadata
    ],
)
def test_a_submit_from_another_sites_page_is_refused(
    server: ServerProcess, headers: dict[str, str]
) -> None:
    answer = httpx.post(server.url + "/v1/jobs", json={**JOB, "name": "forged"}, headers=headers)
    assert answer.status_code == 403
    assert answer.json()["error"]["code"] == "cross_origin"
    listed = httpx.get(server.url + "/v1/jobs", params={"name": "forged"}).json()
    assert listed["jobs"] == []


def test_another_site_may_link_to_dashboard_pages_but_not_read_or_run_through_the_api(
    server: ServerProcess,
) -> None:
    navigate = {"sec-fetch-site": "cross-site", "sec-fetch-mode": "navigate"}
    assert httpx.get(server.url + "/ui/jobs/abc", headers=navigate).status_code == 200
    image = {"sec-fetch-site": "cross-site", "sec-fetch-mode": "no-cors"}
    assert httpx.get(server.url + "/job/run?image=busybox", headers=image).status_code == 403
    assert httpx.get(server.url + "/v1/jobs", headers=navigate).status_code == 403


def test_the_dashboards_own_requests_and_non_browser_clients_pass(server: ServerProcess) -> None:
    same = {"sec-fetch-site": "same-origin", "sec-fetch-mode": "cors"}
    assert httpx.post(server.url + "/v1/jobs", json=JOB, headers=same).status_code == 201
    origin = {"origin": server.url}
    assert httpx.post(server.url + "/v1/jobs", json=JOB, headers=origin).status_code == 201
    assert httpx.post(server.url + "/v1/jobs", json=JOB).status_code == 201
