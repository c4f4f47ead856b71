"""The tests run in an environment of their own: tests/conftest.py removes a
developer's ``JOBDOCK_*`` settings before any test starts."""

from __future__ import annotations

import os

from jobdock.settings import DEFAULT_URL, Settings


def test_no_jobdock_setting_of_the_developer_reaches_the_tests() -> None:
    inherited = sorted(
        name
        for name in os.environ
        if name.startswith("JOBDOCK_") and not name.startswith("JOBDOCK_TEST_")
    )
    assert inherited == []


def test_settings_built_from_the_environment_are_the_defaults() -> None:
    settings = Settings()
    assert settings.url == DEFAULT_URL
    assert settings.token is None
