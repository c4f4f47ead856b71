"""``jobdock describe``: one job for people to read (its fields, attempts
and events), where ``inspect`` prints the record for programs.

Imports the client (through :mod:`jobdock.cli.context`) and the CLI's rendering.
"""

from __future__ import annotations

from typing import Annotated

import typer

from jobdock.cli.context import connect, url_option
from jobdock.cli.render.describe import describe_lines
from jobdock.cli.render.output import colour_allowed


def describe(
    ctx: typer.Context,
    job_id: Annotated[str, typer.Argument(help="The job's id, id prefix or name.")],
    url: Annotated[str | None, url_option] = None,
) -> None:
    """Show a job for people: its fields, attempts and events.

    How each attempt ended and what happened when; ``inspect`` prints the
    whole record as JSON for programs."""
    with connect(ctx, url) as client:
        job = client.get(job_id)
    typer.echo("\n".join(describe_lines(job, colour_allowed())))
