"""Which servers ``jobdock run`` sends its working directory to: those on
this machine only (issue 21)."""

from __future__ import annotations

import pytest

from jobdock.cli.context import is_local


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080",
        "https://127.0.0.5:9000",
        "http://localhost:8080",
        "http://[::1]:8080",
        "http+unix://%2Frun%2Fjobdock.sock",
    ],
)
def test_a_server_on_this_machine_is_local(url: str) -> None:
    assert is_local(url)


@pytest.mark.parametrize(
    "url", ["http://10.0.0.5:8080", "https://jobs.example.org:8080", "http://[2001:db8::1]:80"]
)
def test_a_server_elsewhere_is_not(url: str) -> None:
    assert not is_local(url)
