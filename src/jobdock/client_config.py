"""What a client reads to reach the server: its URL, the API token, the CA
it trusts and a client certificate, from flags > environment
(``JOBDOCK_URL``, ``_TOKEN``, ``_CA``, ``_CERT``, ``_KEY``) > the
``JOBDOCK_CONFIG`` file > defaults, as :class:`jobdock.settings.Settings`
reads the same five settings (tests/unit/test_client_config.py holds the
two together).

It is its own reader, without pydantic, because every client command and
every ``jobdock.Client()`` needs these five and nothing else: the CLI's
``ps`` starts in a fraction of the time that loading Settings takes. An
empty variable counts as not set.

Imports only jobdock.errors.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from jobdock.errors import ConfigError

DEFAULT_URL = "http://127.0.0.1:8080"
_NAMES = ("url", "token", "ca", "cert", "key")


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """The server a client talks to and how it authenticates (None: not set)."""

    url: str = DEFAULT_URL
    token: str | None = None
    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None


def read_client_config(
    *,
    url: str | None = None,
    token: str | None = None,
    ca: str | Path | None = None,
    cert: str | Path | None = None,
    key: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> ClientConfig:
    """The five client settings: each flag given (not None), else its
    ``JOBDOCK_*`` variable, else the config file's value, else the default.
    Raises ConfigError with a one-line message, as load_settings does."""
    env = _jobdock_variables(os.environ if environ is None else environ)
    flags = {"url": url, "token": token, "ca": ca, "cert": cert, "key": key}
    values: dict[str, str] = {}
    file_values = _config_file(env.get("config"))
    for name in _NAMES:
        given = flags[name]
        value = str(given) if given is not None else env.get(name) or file_values.get(name)
        if value:
            values[name] = value
    if ("cert" in values) != ("key" in values):
        raise ConfigError("cert and key must be given together (--cert and --key)")
    return ClientConfig(
        url=values.get("url", DEFAULT_URL),
        token=values.get("token"),
        ca=_path(values.get("ca")),
        cert=_path(values.get("cert")),
        key=_path(values.get("key")),
    )


def _jobdock_variables(environ: Mapping[str, str]) -> dict[str, str]:
    """The ``JOBDOCK_*`` variables by their lower-case setting name (as
    pydantic-settings reads them: in any case)."""
    prefix = "jobdock_"
    return {
        name.lower()[len(prefix) :]: value
        for name, value in environ.items()
        if name.lower().startswith(prefix)
    }


def _config_file(path: str | None) -> dict[str, str]:
    """The client settings the TOML config file at ``path`` gives."""
    if not path:
        return {}
    try:
        with open(path, "rb") as file:
            document = tomllib.load(file)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"config file {path}: {exc}") from None
    found: dict[str, str] = {}
    for name in _NAMES:
        value = document.get(name)
        if value is None:
            continue
        if not isinstance(value, str):
            raise ConfigError(f"invalid setting {name}: Input should be a valid string")
        found[name] = value
    return found


def _path(value: str | None) -> Path | None:
    return None if value is None else Path(value)
