"""The client's own reader of its five settings (url, token, ca, cert, key)
gives what the server's Settings gives for them, from flags, the
environment and the config file, in the same order; and fails as plainly."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from jobdock.client_config import DEFAULT_URL, read_client_config
from jobdock.errors import ConfigError
from jobdock.settings import load_settings


def _clear(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("URL", "TOKEN", "CA", "CERT", "KEY", "CONFIG"):
        monkeypatch.delenv(f"JOBDOCK_{name}", raising=False)


def _both(**flags: str | None) -> tuple[tuple[object, ...], tuple[object, ...]]:
    settings = load_settings(**flags)
    config = read_client_config(**flags)
    token = settings.token.get_secret_value() if settings.token else None
    return (
        (settings.url, token, settings.ca, settings.cert, settings.key),
        (config.url, config.token, config.ca, config.cert, config.key),
    )


@pytest.mark.parametrize(
    ("environment", "config_file", "flags"),
    [
        ({}, None, {}),
        ({"JOBDOCK_URL": "http://env:1"}, None, {}),
        ({"JOBDOCK_URL": "http://env:1"}, None, {"url": "http://flag:2"}),
        ({}, 'url = "http://file:3"\ntoken = "t-file"\n', {}),
        ({"JOBDOCK_TOKEN": "t-env"}, 'url = "http://file:3"\ntoken = "t-file"\n', {}),
        ({"jobdock_token": "t-lower"}, None, {}),
        ({"JOBDOCK_CERT": "/c.pem", "JOBDOCK_KEY": "/k.pem"}, 'ca = "/ca.pem"\n', {}),
        ({}, 'cert = "/c.pem"\nkey = "/k.pem"\n', {"token": "t-flag"}),
    ],
)
def test_the_client_reads_its_settings_as_the_server_settings_do(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    environment: dict[str, str],
    config_file: str | None,
    flags: dict[str, str],
) -> None:
    _clear(monkeypatch)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    if config_file is not None:
        path = tmp_path / "jobdock.toml"
        path.write_text(config_file)
        monkeypatch.setenv("JOBDOCK_CONFIG", str(path))

    from_settings, from_client = _both(**flags)

    assert from_client == from_settings


def test_nothing_set_is_the_default_server_with_no_credentials(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _clear(monkeypatch)

    config = read_client_config(environ={})

    assert (config.url, config.token, config.ca, config.cert, config.key) == (
        DEFAULT_URL,
        None,
        None,
        None,
        None,
    )


def test_a_missing_or_broken_config_file_and_a_lone_cert_are_one_line_errors(
    tmp_path: Path,
) -> None:
    with pytest.raises(ConfigError, match=re.escape("config file /nope.toml does not exist")):
        read_client_config(environ={"JOBDOCK_CONFIG": "/nope.toml"})
    broken = tmp_path / "broken.toml"
    broken.write_text("url = \n")
    with pytest.raises(ConfigError, match=re.escape(f"config file {broken}: ")):
        read_client_config(environ={"JOBDOCK_CONFIG": str(broken)})
    with pytest.raises(ConfigError, match="cert and key must be given together"):
        read_client_config(environ={"JOBDOCK_CERT": "/c.pem"})
