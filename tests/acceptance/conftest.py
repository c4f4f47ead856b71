"""What the dashboard's browser tests share: a headless Chromium per module, a fresh
tab per test (a script error on its page fails the test), and a server
for each module."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import browser
from support import ServerProcess, in_ci


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    # Per module, not per session: Playwright's sync API keeps an event loop
    # running in this thread while it is open, and every later test that
    # calls asyncio.run() would fail.
    yield from browser.launch(in_ci())


@pytest.fixture(scope="module")
def ui_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path_factory.mktemp("ui")).start()
    yield server
    server.stop()


@pytest.fixture
def page(chromium: Any) -> Iterator[Any]:
    """A fresh browser tab; a script error on any page fails the test."""
    context = chromium.new_context(viewport={"width": 1300, "height": 860})
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    tab.set_default_timeout(browser.WAIT_MS)
    yield tab
    context.close()
    assert not errors, errors
