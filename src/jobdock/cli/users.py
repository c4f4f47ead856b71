"""The commands about users and what they hold: ``tokens`` (directly in the
store), ``secrets`` (through the server), ``certs`` (a local certificate
authority for mutual TLS) and ``audit``.

Imports the client (through :mod:`jobdock.cli.context`) and the settings;
auth, the vault and the certificate authority only inside their commands.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from jobdock.cli.arguments import duration
from jobdock.cli.context import connect, load_settings, url_option
from jobdock.cli.exits import fail
from jobdock.cli.local_store import in_store
from jobdock.cli.render.output import show_table
from jobdock.cli.render.times import ago, span

_db_option = typer.Option("--db", help="Store URL (env JOBDOCK_DB).")
_home_option = typer.Option("--home", help="Data directory (env JOBDOCK_HOME).")


def _cli_actor() -> str:
    """Who the audit log says did what the CLI did to the store directly."""
    import getpass

    return f"cli:{getpass.getuser()}"


# -- tokens ---------------------------------------------------------------------------


def tokens_create(
    user: Annotated[str, typer.Argument(help="The user the token acts as.")],
    admin: Annotated[bool, typer.Option("--admin", help="May see and stop every job.")] = False,
    agent: Annotated[
        bool, typer.Option("--agent", help="Only runs jobs, as `jobdock agent` (docs/agents.md).")
    ] = False,
    expires: Annotated[
        str | None, typer.Option(help="Valid for this long, e.g. 30d, 12h \\[never].")
    ] = None,
    submit_rate: Annotated[
        float | None,
        typer.Option(help="The token's own submits per second (0: none) \\[its user's]."),
    ] = None,
    submit_burst: Annotated[
        int | None, typer.Option(help="The token's submits at once \\[the rate].")
    ] = None,
    db: Annotated[str | None, _db_option] = None,
    home: Annotated[str | None, _home_option] = None,
) -> None:
    """Create a token and print it, once: the store keeps only its hash."""
    from jobdock.auth import check_rate, check_user_name, create_token

    try:
        check_user_name(user)
        check_rate(submit_rate, submit_burst)
    except ValueError as exc:
        fail(str(exc), 2)
    if agent and admin:
        fail("an agent token cannot be an admin's: give --agent or --admin", 2)
    expires_in = duration(expires, "--expires")
    created = in_store(
        load_settings(db=db, home=home),
        lambda store: create_token(
            store,
            user,
            admin=admin,
            agent=agent,
            expires_in=expires_in,
            actor=_cli_actor(),
            submit_rate=submit_rate,
            submit_burst=submit_burst,
        ),
    )
    typer.echo(created.token)
    kind = " (admin)" if admin else " (agent)" if agent else ""
    sys.stderr.write(
        f"jobdock: token {created.info.id} for {user}{kind}; it is shown only this once\n"
    )


def tokens_ls(
    db: Annotated[str | None, _db_option] = None,
    home: Annotated[str | None, _home_option] = None,
) -> None:
    """List tokens: id, user, and whether each is still valid."""
    found = in_store(load_settings(db=db, home=home), lambda store: store.list_tokens())
    now = time.time()
    rows = []
    for info in found:
        expires = info.expires_at.timestamp() if info.expires_at else None
        if info.revoked_at is not None:
            status = "revoked"
        elif expires is not None and expires <= now:
            status = "expired"
        else:
            status = "valid"
        rows.append(
            (
                info.id,
                info.user,
                "admin" if info.admin else "agent" if info.agent else "user",
                ago(info.created_at),
                f"in {span(expires - now)}" if expires and expires > now else "",
                status,
            )
        )
    show_table(("TOKEN ID", "USER", "KIND", "CREATED", "EXPIRES", "STATUS"), rows)


def tokens_revoke(
    token_id: Annotated[str, typer.Argument(help="The token's id (see `tokens ls`).")],
    db: Annotated[str | None, _db_option] = None,
    home: Annotated[str | None, _home_option] = None,
) -> None:
    """Revoke a token for good; an agent token's running attempts are lost at
    once (their jobs go to other workers)."""
    from jobdock.agent_access import revoke_token

    settings = load_settings(db=db, home=home)
    lost = in_store(
        settings, lambda store: revoke_token(store, token_id, settings.max_lost, _cli_actor())
    )
    typer.echo(token_id)
    if lost:
        sys.stderr.write(f"jobdock: {lost} running attempt(s) of the agent were lost\n")


# -- secrets --------------------------------------------------------------------------


def secrets_set(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The secret's name.")],
    url: Annotated[str | None, url_option] = None,
) -> None:
    """Set a secret from standard input (never from the command line); one
    trailing newline is dropped. At a terminal, it is asked for unechoed."""
    if sys.stdin.isatty():
        import getpass

        value = getpass.getpass(f"value of secret {name}: ").encode()
    else:
        value = sys.stdin.buffer.read()
    value = value.removesuffix(b"\n").removesuffix(b"\r")
    if not value:
        fail("the secret's value (standard input) is empty", 2)
    with connect(ctx, url) as client:
        client.set_secret(name, value)
    typer.echo(name)


def secrets_ls(ctx: typer.Context, url: Annotated[str | None, url_option] = None) -> None:
    """List your secrets (names, never values)."""
    with connect(ctx, url) as client:
        found = client.secrets()
    for info in found:
        typer.echo(f"{info.name}\t{ago(info.updated_at)}")


def secrets_rm(
    ctx: typer.Context,
    names: Annotated[list[str], typer.Argument(help="Secrets to delete.", metavar="NAME...")],
    url: Annotated[str | None, url_option] = None,
) -> None:
    """Delete secrets."""
    with connect(ctx, url) as client:
        for name in names:
            client.delete_secret(name)
            typer.echo(name)


def secrets_keygen() -> None:
    """Print a new key for the server's secret_key setting (JOBDOCK_SECRET_KEY)."""
    from jobdock.vault import generate_key

    typer.echo(generate_key())


# -- certificates ---------------------------------------------------------------------


def certs_init(
    directory: Annotated[Path, typer.Argument(help="Where the CA and certificates go.")],
    host: Annotated[
        list[str] | None,
        typer.Option("--host", help="A name or IP the server is reached at; repeatable."),
    ] = None,
) -> None:
    """Create a CA and a server certificate (ECDSA P-256) in DIRECTORY."""
    from jobdock.certs import init_ca

    ca, server = init_ca(directory, host or ["localhost", "127.0.0.1"])
    for path in (ca.cert, ca.key, server.cert, server.key):
        typer.echo(path)


def certs_issue(
    name: Annotated[str, typer.Argument(help="The user: the certificate's common name.")],
    directory: Annotated[Path, typer.Option("--dir", help="The directory of `certs init`.")],
    days: Annotated[int, typer.Option(help="Valid for this many days.")] = 365,
) -> None:
    """Issue a client certificate and key for user NAME."""
    from jobdock.certs import issue_client

    pair = issue_client(directory, name, days=days)
    typer.echo(pair.cert)
    typer.echo(pair.key)


# -- audit ----------------------------------------------------------------------------


def audit(
    ctx: typer.Context,
    last: Annotated[int, typer.Option("--last", "-n", help="At most this many entries.")] = 50,
    url: Annotated[str | None, url_option] = None,
) -> None:
    """Show the audit log, newest first: who submitted and stopped which job,
    and who changed tokens and secrets (admins only)."""
    with connect(ctx, url) as client:
        page = client.audit(limit=max(1, min(last, 1000)))
    for entry in page.entries:
        typer.echo(
            f"{entry.at.isoformat(timespec='seconds')}\t{entry.actor}\t{entry.action}\t{entry.target}"
        )
