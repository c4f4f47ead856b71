"""The ``schedule`` commands: cron schedules that submit a job at each fire
time (add, ls, rm, pause, resume).

Imports the client (through :mod:`jobdock.cli.context`) and the CLI's rendering.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from jobdock.cli.arguments import duration, pairs
from jobdock.cli.context import connect, local_workdir, url_option
from jobdock.cli.render.output import (
    output_format,
    output_option,
    print_records,
    show_table,
    state_style,
)
from jobdock.cli.render.times import local_time

if TYPE_CHECKING:
    from jobdock.models import Schedule

#: Names are per owner: an admin names another user's schedule with --owner.
_schedule_owner = typer.Option(
    "--owner", help="The schedule's owner (admins; default: you).", show_default=False
)


def schedule_add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The schedule's unique name.")],
    command: Annotated[list[str], typer.Argument(help="The program and its arguments.")],
    cron: Annotated[
        str, typer.Option(help="'*/5 * * * *' (minute hour day month weekday \\[second]).")
    ],
    tz: Annotated[str, typer.Option(help="IANA time zone of the cron fields.")] = "UTC",
    overlap: Annotated[
        str, typer.Option(help="allow, forbid (skip while running) or replace.")
    ] = "allow",
    catchup: Annotated[str, typer.Option(help="Missed fire times: skip, or once.")] = "skip",
    paused: Annotated[bool, typer.Option("--paused", help="Add it paused.")] = False,
    env: Annotated[
        list[str] | None, typer.Option("--env", "-e", help="KEY=VALUE; repeatable.")
    ] = None,
    timeout: Annotated[str | None, typer.Option(help="Wall-clock limit of a run.")] = None,
    workdir: Annotated[
        str | None,
        typer.Option(
            "--workdir",
            "-w",
            help="The runs' working directory; default: this one when the server is on "
            "this machine (loopback), none for a remote server.",
        ),
    ] = None,
    url: Annotated[str | None, url_option] = None,
) -> None:
    """Add a schedule: ``jobdock schedule add NAME --cron '*/5 * * * *' -- CMD...``."""
    job: dict[str, Any] = {"command": command}
    if cwd := local_workdir(ctx, url, workdir):
        job["cwd"] = cwd
    if env:
        job["env"] = pairs(env, "--env")
    if timeout is not None:
        job["timeout"] = duration(timeout, "--timeout")
    spec = {
        "name": name,
        "cron": cron,
        "tz": tz,
        "overlap": overlap,
        "catchup": catchup,
        "paused": paused,
        "job": job,
    }
    with connect(ctx, url) as client:
        schedule = client.add_schedule(spec)
    typer.echo(f"{schedule.name}: next at {local_time(schedule.next_fire_at)}")


def schedule_ls(
    ctx: typer.Context,
    output: Annotated[str | None, output_option] = None,
    url: Annotated[str | None, url_option] = None,
) -> None:
    """List schedules with their next fire time and latest job."""
    output = output_format(output)
    with connect(ctx, url) as client:
        found = client.schedules()
    if print_records(found, output):
        return
    columns = ("NAME", "CRON", "TZ", "NEXT", "LAST JOB", "STATUS")
    wide = output == "wide"
    show_table(
        (*columns, "OWNER", "OVERLAP", "COMMAND") if wide else columns,
        (_row(item, wide) for item in found),
        wrap={"NAME", "COMMAND"},
        overflow="fold",
        styles={"STATUS": state_style},
    )


def _row(item: Schedule, wide: bool) -> tuple[str, ...]:
    upcoming = item.next_fire_at
    row = (
        item.name,
        item.cron,
        item.tz,
        upcoming.astimezone().strftime("%Y-%m-%d %H:%M:%S") if upcoming else "-",
        item.last_job_id or "",
        "paused" if item.paused else "active",
    )
    if not wide:
        return row
    return (*row, item.owner, item.overlap, item.job.image or " ".join(item.job.command))


def schedule_rm(
    ctx: typer.Context,
    names: Annotated[list[str], typer.Argument(help="Schedules to remove.", metavar="NAME...")],
    owner: Annotated[str | None, _schedule_owner] = None,
    url: Annotated[str | None, url_option] = None,
) -> None:
    """Remove schedules (the jobs they made stay)."""
    with connect(ctx, url) as client:
        for name in names:
            client.remove_schedule(name, owner)
            typer.echo(name)


def schedule_pause(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The schedule.")],
    owner: Annotated[str | None, _schedule_owner] = None,
    url: Annotated[str | None, url_option] = None,
) -> None:
    """Stop a schedule firing until it is resumed."""
    with connect(ctx, url) as client:
        client.pause_schedule(name, owner=owner)
    typer.echo(name)


def schedule_resume(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The schedule.")],
    owner: Annotated[str | None, _schedule_owner] = None,
    url: Annotated[str | None, url_option] = None,
) -> None:
    """Fire a paused schedule again, from its next fire time after now."""
    with connect(ctx, url) as client:
        schedule = client.pause_schedule(name, paused=False, owner=owner)
    typer.echo(f"{schedule.name}: next at {local_time(schedule.next_fire_at)}")
