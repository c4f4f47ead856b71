"""The commands that look at and end jobs: ``ps``, ``workers``, ``inspect``,
``logs``, ``stop``, ``kill``, ``wait`` and ``prune``. (``run`` has its own
module, :mod:`jobdock.cli.run`.)

Imports the client (through :mod:`jobdock.cli.context`), the models and the
CLI's rendering.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer

from jobdock.cli.arguments import duration, pairs
from jobdock.cli.attach import copy_output
from jobdock.cli.context import connect, lister, url_option
from jobdock.cli.exits import EXIT_JOBDOCK, EXIT_TIMEOUT, exit_code_of, fail, one_line
from jobdock.cli.render.jobs import show_jobs, show_workers
from jobdock.cli.render.output import output_format, output_option, print_documents
from jobdock.cli.render.watch import watch
from jobdock.cli.status import StatusLine
from jobdock.errors import ApiError, JobdockError
from jobdock.models.states import ACTIVE_STATES, JobState, Stream

if TYPE_CHECKING:
    from jobdock.cli.listing import ListedJob


def ps(
    ctx: typer.Context,
    all_: Annotated[bool, typer.Option("--all", "-a", help="Show finished jobs too.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only print job ids.")] = False,
    state: Annotated[
        list[str] | None, typer.Option(help="Only jobs in this state; repeatable.")
    ] = None,
    label: Annotated[
        list[str] | None, typer.Option("--label", "-l", help="KEY=VALUE filter.")
    ] = None,
    name: Annotated[str | None, typer.Option(help="Only jobs with this name.")] = None,
    last: Annotated[int, typer.Option("--last", "-n", help="At most this many jobs.")] = 200,
    output: Annotated[str | None, output_option] = None,
    watch: Annotated[
        bool,
        typer.Option(
            "--watch",
            "-w",
            help="Refresh until Ctrl-C: redrawn on a terminal; else printed again when a job "
            "comes, goes or changes state.",
        ),
    ] = False,
    url: Annotated[str | None, url_option] = None,
) -> None:
    """List jobs, newest first: queued and running ones, or all with -a."""
    output = output_format(output)
    states = list(state or [])
    valid = {s.value for s in JobState}
    for item in states:
        if item not in valid:
            fail(f"--state {item!r} is not one of {', '.join(sorted(valid))}", 2)
    if not states and not all_:
        states = sorted(s.value for s in ACTIVE_STATES)
    labels = pairs(label, "--label")
    with lister(ctx, url) as listing:
        if watch:
            _watch(lambda: listing.jobs(states, labels, name, last), quiet, output)
        else:
            _print_jobs(listing.jobs(states, labels, name, last), quiet, output)


def _print_jobs(jobs: list[ListedJob], quiet: bool, output: str) -> None:
    if quiet:
        for job in jobs:
            typer.echo(job.id)
        return
    show_jobs(jobs, output)


def _watch(jobs_now: Callable[[], list[ListedJob]], quiet: bool, output: str) -> None:
    """``ps -w``: the list until Ctrl-C, printed again (off a terminal) when
    its jobs or their states change."""
    watch(
        jobs_now,
        lambda jobs: [(job.id, job.state, job.cancel_requested) for job in jobs],
        lambda jobs: _print_jobs(jobs, quiet, output),
    )


def workers(
    ctx: typer.Context,
    output: Annotated[str | None, output_option] = None,
    url: Annotated[str | None, url_option] = None,
) -> None:
    """List the workers: labels, last heartbeat, running jobs."""
    output = output_format(output)
    with lister(ctx, url) as listing:
        found = listing.workers()
    show_workers(found, output)


def inspect(
    ctx: typer.Context,
    job_id: Annotated[str, typer.Argument(help="The job's id, id prefix or name.")],
    output: Annotated[str | None, output_option] = None,
    url: Annotated[str | None, url_option] = None,
) -> None:
    """Print a job's whole record as JSON (or YAML with -o yaml)."""
    output = output_format(output, ("json", "yaml"))
    with connect(ctx, url) as client:
        job = client.get(job_id)
    print_documents(job.model_dump(mode="json"), output)


def logs(
    ctx: typer.Context,
    job_id: Annotated[str, typer.Argument(help="The job's id, id prefix or name.")],
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Follow until the job ends.")
    ] = False,
    stream: Annotated[str, typer.Option(help="stdout, stderr or both.")] = "both",
    attempt: Annotated[int | None, typer.Option(help="Attempt number \\[latest].")] = None,
    tail: Annotated[
        int | None, typer.Option("--tail", "-n", help="Only the last N lines.", min=0)
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(help="Only output since: 10m ago, seconds since the epoch or RFC 3339."),
    ] = None,
    timestamps: Annotated[
        bool,
        typer.Option("--timestamps", "-t", help="Each line after its arrival time (RFC 3339)."),
    ] = False,
    url: Annotated[str | None, url_option] = None,
) -> None:
    """Print a job's output (stdout here to stdout, stderr to stderr)."""
    if stream not in ("stdout", "stderr", "both"):
        fail(f"--stream {stream!r} is not stdout, stderr or both", 2)
    with connect(ctx, url) as client:
        copy_output(
            client.logs(
                job_id,
                stream=None if stream == "both" else Stream(stream),
                follow=follow,
                attempt=attempt,
                tail=tail,
                since=since,
                timestamps=timestamps,
            )
        )


def stop(
    ctx: typer.Context,
    job_ids: Annotated[
        list[str], typer.Argument(help="Jobs to stop: ids, id prefixes or names.", metavar="JOB...")
    ],
    now: Annotated[
        bool, typer.Option("--now", help="SIGKILL at once, without the grace period.")
    ] = False,
    url: Annotated[str | None, url_option] = None,
) -> None:
    """Stop jobs (SIGTERM, grace period, SIGKILL); waits until each has ended.

    Queued jobs are cancelled at once. Prints the id of each stopped job.
    """
    _stop_jobs(ctx, job_ids, url, kill=now)


def kill(
    ctx: typer.Context,
    job_ids: Annotated[
        list[str], typer.Argument(help="Jobs to kill: ids, id prefixes or names.", metavar="JOB...")
    ],
    url: Annotated[str | None, url_option] = None,
) -> None:
    """Kill jobs at once (SIGKILL, no grace period), as ``stop --now``."""
    _stop_jobs(ctx, job_ids, url, kill=True)


def _stop_jobs(ctx: typer.Context, job_ids: list[str], url: str | None, *, kill: bool) -> None:
    failed = False
    with connect(ctx, url) as client:
        for job_id in job_ids:
            try:
                job = client.cancel(job_id, kill=kill)
            except ApiError as exc:
                if exc.code == "illegal_transition":
                    sys.stderr.write(
                        f"jobdock: job {job_id} had already finished; nothing to stop\n"
                    )
                    continue
                sys.stderr.write(f"jobdock: {one_line(exc)}\n")
                failed = True
                continue
            if not job.terminal:
                client.wait(job.id)
            typer.echo(job_id)
    if failed:
        raise typer.Exit(1)


def wait(
    ctx: typer.Context,
    job_id: Annotated[str, typer.Argument(help="The job's id, id prefix or name.")],
    timeout: Annotated[str | None, typer.Option(help="Give up after this long (exit 124).")] = None,
    url: Annotated[str | None, url_option] = None,
) -> None:
    """Block until a job ends; exit with its exit code."""
    limit = duration(timeout, "--timeout")
    with connect(ctx, url) as client:
        try:
            with StatusLine(client, job_id):
                job = client.wait(job_id, limit, raise_on_timeout=False)
        except JobdockError as exc:
            fail(one_line(exc), EXIT_JOBDOCK)
    if not job.terminal:
        fail(f"job {job_id} is still {job.state.value}", EXIT_TIMEOUT)
    raise typer.Exit(exit_code_of(job))


def prune(
    ctx: typer.Context,
    older_than: Annotated[
        str | None,
        typer.Option(
            help="Delete jobs finished longer ago than this (e.g. 7d), whatever their retention."
        ),
    ] = None,
    url: Annotated[str | None, url_option] = None,
) -> None:
    """Delete finished jobs with their logs: past their retention, or --older-than."""
    duration(older_than, "--older-than")
    with connect(ctx, url) as client:
        deleted = client.prune(older_than)
    typer.echo(f"deleted {deleted} finished job(s)")
