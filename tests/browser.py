"""Headless Chromium for the dashboard's end-to-end tests, driven by
Playwright: Debian's ``chromium`` (Playwright cannot download its own
browser here). scripts/test installs both; a machine without them skips
these tests, except in CI, where they fail."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

#: Where Debian's package puts the browser.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
]
#: Screenshots of the dashboard's pages (git-ignored), to look at.
SCREENSHOTS = Path(__file__).resolve().parent.parent / "test-output" / "dashboard"


#: Pages that poll refresh every 1-2 s; the machine may be loaded.
WAIT_MS = 30_000


def expect(target: Any) -> Any:
    """Playwright's ``expect`` (imported once a test has a browser), waiting
    up to WAIT_MS."""
    from playwright.sync_api import expect as playwright_expect

    playwright_expect.set_options(timeout=WAIT_MS)
    return playwright_expect(target)


def find_chromium() -> str | None:
    """The Chromium binary, if installed."""
    if Path(CHROMIUM).exists():
        return CHROMIUM
    return shutil.which("chromium")


def launch(in_ci: bool) -> Iterator[Any]:
    """A headless Chromium for a session; skips (fails in CI) without one."""
    executable = find_chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        executable, reason = None, f"the playwright package is missing: {exc}"
    else:
        reason = "Debian's chromium is not installed"
    if executable is None:
        if in_ci:
            pytest.fail(f"the dashboard tests need a browser in CI: {reason}", pytrace=False)
        pytest.skip(reason)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def screenshot(page: Any, name: str) -> Path:
    """Save the page as ``test-output/dashboard/NAME.png``."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
