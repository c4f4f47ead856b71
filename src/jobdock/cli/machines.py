"""``jobdock machines``: the server's machine pools and the machines they
started, as an admin watches them (docs/machines.md#watching-machines).

Imports the CLI's listing connection and rendering.
"""

from __future__ import annotations

from typing import Annotated

import typer

from jobdock.cli.context import lister, url_option
from jobdock.cli.render.machines import show_machines
from jobdock.cli.render.output import output_format


def machines(
    ctx: typer.Context,
    pool: Annotated[str | None, typer.Option(help="Only this pool and its machines.")] = None,
    since: Annotated[
        str | None,
        typer.Option(help="Stopped and failed machines that ended since (1h, 7d) \\[24h]."),
    ] = None,
    output: Annotated[str | None, typer.Option("--output", "-o", help="json or yaml.")] = None,
    url: Annotated[str | None, url_option] = None,
) -> None:
    """List machine pools and their machines (admins).

    The pools (live/min/max, back-off, last decision and error), then the
    machines: state, age, jobs, boot and machine time."""
    output = output_format(output, ("json", "yaml"))
    with lister(ctx, url) as listing:
        found = listing.machines(pool, since)
    show_machines(found, output)
