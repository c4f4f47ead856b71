"""The ``template`` commands: the server's dispatch templates, listed and
tried on a request without submitting anything (docs/dispatch.md).

Imports the client (through :mod:`jobdock.cli.context`) and the JSON reader.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from jobdock.cli.arguments import pairs
from jobdock.cli.context import connect, url_option
from jobdock.cli.exits import fail
from jobdock.errors import InvalidJson


def template_ls(ctx: typer.Context, url: Annotated[str | None, url_option] = None) -> None:
    """List the server's dispatch templates."""
    with connect(ctx, url) as client:
        for name in client.templates():
            typer.echo(name)


def template_test(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The template.")],
    path: Annotated[str | None, typer.Option(help="$path; default /job/NAME.")] = None,
    query: Annotated[
        list[str] | None, typer.Option("--query", "-q", help="KEY=VALUE in $query; repeatable.")
    ] = None,
    header: Annotated[
        list[str] | None, typer.Option("--header", "-H", help="NAME=VALUE; repeatable.")
    ] = None,
    url: Annotated[str | None, url_option] = None,
) -> None:
    """Print the spec the server would submit for a request whose JSON body
    is on standard input (empty: null), without submitting it."""
    from jobdock.documents import load_json

    text = sys.stdin.read()
    try:
        body = load_json(text, "standard input") if text.strip() else None
    except InvalidJson as exc:
        fail(exc.message, 2)
    with connect(ctx, url) as client:
        spec = client.test_template(
            name,
            body,
            path=path,
            query=pairs(query, "--query"),
            headers=pairs(header, "--header"),
        )
    typer.echo(json.dumps(spec, indent=2))
