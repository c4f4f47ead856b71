"""The dashboard's Machines page in headless Chromium against a real server
with the pools and machines of tests/watched_machines.py: an admin sees the
pools and machines (the running job linked), a user has no such tab and is
refused the page's data."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import browser
from browser import expect
from watched_machines import Watched, watched_site


@pytest.fixture(scope="module")
def watched(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Watched]:
    with watched_site(tmp_path_factory.mktemp("machines-ui")) as site:
        yield site


def sign_in(page: Any, url: str, token: str) -> None:
    page.goto(url)
    page.fill("#token", token)
    page.click("#signin button[type=submit]")


def test_an_admin_sees_the_pools_and_machines(watched: Watched, page: Any) -> None:
    sign_in(page, watched.server.url + "/ui/machines", watched.admin)

    gpu = page.locator('tr[data-pool="gpu"]')
    expect(gpu).to_contain_text("1 / 0 / 3")
    expect(gpu).to_contain_text("start 1: 1 job waits")
    expect(gpu).to_contain_text("start failed: exit 1")
    expect(page.locator('tr[data-pool="cpu"]')).to_contain_text("0 / 0 / 1")
    ready = page.locator(f'tr[data-machine="{watched.ready_id}"]')
    expect(ready.locator(".state")).to_have_text("ready")
    expect(ready.locator(f'a[href="/ui/jobs/{watched.job_id}"]')).to_have_count(1)
    failed = page.locator('tr[data-machine="m-gpu-0002"]')
    expect(failed).to_contain_text("never registered")
    expect(page.locator('tr[data-machine="m-gpu-0003"]')).to_have_count(0)  # past 24h
    expect(page.locator('#nav a[href="/ui/machines"]')).to_have_attribute("aria-current", "page")
    browser.screenshot(page, "machines")


def test_a_user_has_no_machines_tab_and_the_page_says_why(watched: Watched, page: Any) -> None:
    sign_in(page, watched.server.url + "/ui/machines", watched.user)

    expect(page.locator("#banner")).to_contain_text("administrator")
    expect(page.locator('#nav a[href="/ui/workers"]')).to_have_count(1)
    expect(page.locator('#nav a[href="/ui/machines"]')).to_have_count(0)
    expect(page.locator("tr[data-machine]")).to_have_count(0)
