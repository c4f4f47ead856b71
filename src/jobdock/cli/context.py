"""How client commands reach the server: the global options (token and TLS
files, given before the command) kept in typer's context object, and the
:class:`~jobdock.Client` a command builds from them and its ``--url``.

Imports the client and the settings when a command connects, not when the
CLI starts.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import urlsplit

import typer

from jobdock.cli.exits import fail

if TYPE_CHECKING:
    from jobdock.cli.listing import Lister
    from jobdock.client import Client
    from jobdock.client_config import ClientConfig
    from jobdock.credentials import Credentials
    from jobdock.settings import Settings

url_option = typer.Option(
    "--url", help="The jobdock server (env JOBDOCK_URL; default http://127.0.0.1:8080)."
)


@dataclass(frozen=True)
class Connection:
    """The global options: how client commands authenticate (None: not given)."""

    token: str | None = None
    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    #: The server is this command's own (``run --local``): the URL it is
    #: given, no credentials from the options, the environment or a file.
    own_server: bool = False


def _print_version(given: bool) -> None:
    """``--version``: print jobdock's version and exit, whatever follows."""
    if given:
        from jobdock.version import __version__

        typer.echo(f"jobdock {__version__}")
        raise typer.Exit()


def global_options(
    ctx: typer.Context,
    token: Annotated[
        str | None, typer.Option(help="API token (env JOBDOCK_TOKEN).", show_default=False)
    ] = None,
    ca: Annotated[
        str | None, typer.Option(help="CA of the server's certificate (env JOBDOCK_CA).")
    ] = None,
    cert: Annotated[
        str | None, typer.Option(help="Client certificate, mutual TLS (env JOBDOCK_CERT).")
    ] = None,
    key: Annotated[str | None, typer.Option(help="Key of --cert (env JOBDOCK_KEY).")] = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            help="Print jobdock's version and exit.",
            callback=_print_version,
            is_eager=True,
        ),
    ] = False,
) -> None:
    """Run Linux processes as jobs: a server, a worker and this client."""
    ctx.obj = Connection(token=token, ca=ca, cert=cert, key=key)


def load_settings(**flags: Any) -> Settings:
    """:func:`jobdock.settings.load_settings`, the settings module (pydantic-settings)
    loaded on the first call rather than when the CLI starts."""
    from jobdock import settings

    return settings.load_settings(**flags)


def connect(ctx: typer.Context, url: str | None) -> Client:
    """A client of the server at ``url`` (or as the settings say), with the
    global options' credentials."""
    from jobdock.client import Client  # on use: the CLI starts fast (docs/architecture.md)

    config = client_config(ctx, url)
    return Client(config.url, credentials=credentials_of(config))


def lister(ctx: typer.Context, url: str | None) -> Lister:
    """A connection for ``ps`` and ``workers``, which list the server's
    records without the client and its models (they start faster)."""
    from jobdock.cli.listing import Lister

    config = client_config(ctx, url)
    return Lister(config, credentials_of(config))


def local_workdir(ctx: typer.Context, url: str | None, given: str | None) -> str | None:
    """The working directory of a process job from ``-w`` (``given``): when
    the server is on this machine (a loopback address or a unix socket),
    this command's directory if none is given, and a relative one made
    absolute from it, as a shell's command would run; for a remote server,
    whose file system is not this one, ``given`` as it is. With a token (a
    server of many users, whose jobs run as uids of their own that may not
    enter this directory) none is sent unless given, so such a job starts
    in its owner's job home. Fails (exit 2) when this command's directory
    no longer exists."""
    if given is not None and os.path.isabs(given):
        return given
    config = client_config(ctx, url)
    if not is_local(config.url) or (given is None and config.token is not None):
        return given
    try:
        return os.path.abspath(given or os.getcwd())
    except FileNotFoundError:
        fail("the current directory no longer exists (cd elsewhere, or give -w DIR)", 2)


def is_local(url: str) -> bool:
    """Whether ``url`` names a server on this machine: a unix socket, or a
    loopback address (localhost, 127.0.0.0/8, ::1)."""
    parts = urlsplit(url)
    if "unix" in parts.scheme:
        return True
    host = parts.hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def client_config(ctx: typer.Context, url: str | None) -> ClientConfig:
    """The server and credentials of a client command: its ``--url`` and the
    global options, else the environment and config file (without loading
    the server's Settings)."""
    from jobdock.client_config import ClientConfig, read_client_config

    connection = ctx.ensure_object(Connection)
    if connection.own_server and url is not None:
        return ClientConfig(url=url)
    return read_client_config(
        url=url,
        token=connection.token,
        ca=connection.ca,
        cert=connection.cert,
        key=connection.key,
    )


def credentials_of(config: ClientConfig) -> Credentials:
    """The credentials ``config`` names."""
    from jobdock.credentials import Credentials

    return Credentials(token=config.token, ca=config.ca, cert=config.cert, key=config.key)
