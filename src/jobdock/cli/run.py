"""``jobdock run``: its options, and what it does with them: submit the
job they describe, then print its id (``--detach``) or follow it here and
exit with its exit status.

Imports the client (through :mod:`jobdock.cli.context`) and the CLI's spec
building and attaching.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from jobdock.cli.attach import attach
from jobdock.cli.context import Connection, connect, local_workdir, url_option
from jobdock.cli.exits import EXIT_JOBDOCK, fail, one_line
from jobdock.cli.run_spec import spec_of, with_job_file
from jobdock.cli.stdin import StdinSender
from jobdock.errors import JobdockError

if TYPE_CHECKING:
    from jobdock.client import Client

_CT = "Containers"
_RES = "Resources"
_ISO = "Isolation"


# A declaration of the command's options, well over 60 lines; the body is two calls.
def run(
    ctx: typer.Context,
    command: Annotated[
        list[str] | None,
        typer.Argument(help="The program and its arguments (with --image: replaces CMD)."),
    ] = None,
    file: Annotated[
        str | None,
        typer.Option(
            "--file",
            "-f",
            help="A job file: the API's job spec in YAML or JSON; options given here "
            "override its fields.",
        ),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set", help="FIELD=VALUE: set a field of the -f job file (dotted: resources.memory)."
        ),
    ] = None,
    local: Annotated[
        bool,
        typer.Option(
            "--local",
            help="Run it on this machine with a server of its own (temporary, embedded), "
            "not on the --url server.",
        ),
    ] = False,
    detach: Annotated[
        bool, typer.Option("--detach", "-d", help="Print the job id and return.")
    ] = False,
    rm: Annotated[
        bool,
        typer.Option(
            "--rm", help="Delete the job and its logs once it ended and its output was printed."
        ),
    ] = False,
    interactive: Annotated[
        bool,
        typer.Option(
            "--interactive", "-i", help="Send this command's stdin to the job as it is read."
        ),
    ] = False,
    env: Annotated[
        list[str] | None, typer.Option("--env", "-e", help="KEY=VALUE; repeatable.")
    ] = None,
    workdir: Annotated[
        str | None,
        typer.Option(
            "--workdir",
            "-w",
            help="The job's working directory; default: this one when the server is on "
            "this machine (loopback), none for a remote server or with --image.",
        ),
    ] = None,
    timeout: Annotated[str | None, typer.Option(help="Wall-clock limit, e.g. 30s, 10m.")] = None,
    kill_grace: Annotated[
        str | None, typer.Option(help="Time between SIGTERM and SIGKILL on stop \\[10s].")
    ] = None,
    name: Annotated[str | None, typer.Option(help="A name for the job.")] = None,
    label: Annotated[
        list[str] | None, typer.Option("--label", "-l", help="KEY=VALUE; repeatable.")
    ] = None,
    require: Annotated[
        list[str] | None,
        typer.Option(
            "--require", help="KEY=VALUE: run only on a worker with this label; repeatable."
        ),
    ] = None,
    on_worker_lost: Annotated[
        str | None, typer.Option(help="requeue (default) or fail, if the worker dies.")
    ] = None,
    image: Annotated[
        str | None, typer.Option(help="Run as a container of this image.", rich_help_panel=_CT)
    ] = None,
    entrypoint: Annotated[
        str | None, typer.Option(help="Replace the image's ENTRYPOINT.", rich_help_panel=_CT)
    ] = None,
    pull: Annotated[
        str | None,
        typer.Option(help="always, if-not-present (default) or never.", rich_help_panel=_CT),
    ] = None,
    runtime: Annotated[
        str | None,
        typer.Option(help="The OCI runtime, e.g. runc, sysbox-runc.", rich_help_panel=_CT),
    ] = None,
    cache: Annotated[
        list[str] | None,
        typer.Option(
            help="NAME:PATH, a volume kept between runs; repeatable.", rich_help_panel=_CT
        ),
    ] = None,
    cpus: Annotated[
        float | None, typer.Option(help="CPU limit in cores, e.g. 1.5.", rich_help_panel=_RES)
    ] = None,
    memory: Annotated[
        str | None, typer.Option(help="Memory limit, e.g. 256m, 1g.", rich_help_panel=_RES)
    ] = None,
    pids: Annotated[
        int | None, typer.Option(help="The most processes at once.", rich_help_panel=_RES)
    ] = None,
    io_read_bps: Annotated[
        str | None,
        typer.Option(help="Disk reads per second, e.g. 10m (process jobs).", rich_help_panel=_RES),
    ] = None,
    io_write_bps: Annotated[
        str | None,
        typer.Option(help="Disk writes per second, e.g. 10m (process jobs).", rich_help_panel=_RES),
    ] = None,
    output_limit: Annotated[
        str | None,
        typer.Option(help="The most output kept, e.g. 100m; then stop.", rich_help_panel=_RES),
    ] = None,
    drop_output: Annotated[
        bool,
        typer.Option(
            help="Past --output-limit, drop output instead of stopping.", rich_help_panel=_RES
        ),
    ] = False,
    network: Annotated[
        str | None,
        typer.Option(
            help="With --image: the container network (none, bridge, host, NAME); else none "
            "or host for an isolated job (implies --isolate).",
            rich_help_panel=_ISO,
        ),
    ] = None,
    user: Annotated[
        str | None,
        typer.Option(
            help="With --image: user\\[:group] in the container; else the user an isolated job "
            "runs as (implies --isolate).",
            rich_help_panel=_ISO,
        ),
    ] = None,
    secret: Annotated[
        list[str] | None,
        typer.Option(
            help="NAME=VAR: your secret NAME in the env var VAR; repeatable.",
            rich_help_panel="Secrets",
        ),
    ] = None,
    secret_file: Annotated[
        list[str] | None,
        typer.Option(
            help="NAME=FILE: your secret NAME as file FILE in $JOBDOCK_SECRETS_DIR; repeatable.",
            rich_help_panel="Secrets",
        ),
    ] = None,
    isolate: Annotated[
        bool | None,
        typer.Option(
            "--isolate/--no-isolate",
            help="Run a process job in new namespaces (its own PIDs, no network); default: as the "
            "server says.",
            rich_help_panel=_ISO,
        ),
    ] = None,
    group: Annotated[
        str | None,
        typer.Option(help="Group to run as (implies --isolate).", rich_help_panel=_ISO),
    ] = None,
    readonly: Annotated[
        bool,
        typer.Option(
            help="A read-only view of the host, private /tmp (implies --isolate).",
            rich_help_panel=_ISO,
        ),
    ] = False,
    rootfs: Annotated[
        str | None,
        typer.Option(help="A directory to run in as / (implies --isolate).", rich_help_panel=_ISO),
    ] = None,
    at: Annotated[
        str | None,
        typer.Option(help="Start at this time: RFC 3339 with offset, or +10m from now."),
    ] = None,
    allow_past: Annotated[
        bool,
        typer.Option("--allow-past", help="Take an --at time in the past: the job starts at once."),
    ] = False,
    priority: Annotated[int | None, typer.Option(help="Higher starts first \\[0].")] = None,
    retries: Annotated[
        int | None, typer.Option(help="Run a failed job again up to this many times.")
    ] = None,
    idempotency_key: Annotated[
        str | None, typer.Option(help="Submit at most one job with this key.")
    ] = None,
    concurrency_key: Annotated[
        str | None, typer.Option(help="Jobs with this key run --concurrency-limit at once.")
    ] = None,
    concurrency_limit: Annotated[
        int | None, typer.Option(help="How many jobs of --concurrency-key run at once \\[1].")
    ] = None,
    queue_timeout: Annotated[
        str | None, typer.Option(help="Fail if not started within this, e.g. 10m.")
    ] = None,
    total_timeout: Annotated[
        str | None, typer.Option(help="Fail if not finished, retries included, within this.")
    ] = None,
    keep_for: Annotated[
        str | None, typer.Option(help="Delete the finished job and its logs after this.")
    ] = None,
    url: Annotated[str | None, url_option] = None,
) -> None:
    """Run a command (or an image) as a job: stream its output and exit with its exit code."""
    # The options go to spec_of by name, so that the declaration above is
    # their one list (spec_of reads them in the order it checks them).
    if rm and detach:
        fail("--rm needs the job followed here; with --detach, use --keep-for", 2)
    if local and detach:
        fail("--local runs the job while this command runs; it cannot --detach", 2)
    spec = spec_of(locals())
    if file is not None:
        spec = with_job_file(file, spec, set_ or [])
    elif set_:
        fail("--set sets fields of a job file: give it with -f FILE", 2)
    if not local:
        _run(ctx, url, spec, detach=detach, remove=rm)
        return
    from jobdock.cli.local_server import local_server

    ctx.obj = Connection(own_server=True)  # none of the --url server's credentials
    with local_server() as local_url:
        _run(ctx, local_url, spec, detach=False, remove=rm)


def _run(
    ctx: typer.Context,
    url: str | None,
    spec: dict[str, Any],
    *,
    detach: bool,
    remove: bool,
) -> None:
    """Submit ``spec`` to the server at ``url``; a process job runs in this
    directory, or its ``-w`` or job file's ``cwd`` taken from here (see
    local_workdir)."""
    if spec.get("image") is None:
        cwd = local_workdir(ctx, url, spec.get("cwd"))
        if cwd:
            spec["cwd"] = cwd
    _submit(ctx, url, spec, detach=detach, remove=remove)


def _submit(
    ctx: typer.Context, url: str | None, spec: dict[str, Any], *, detach: bool, remove: bool
) -> None:
    """Submit the job, then print its id (``detach``) or follow it to its end
    (and delete it after, with ``remove``); with ``-i``, send it this
    command's stdin meanwhile (cli/stdin.py)."""
    with connect(ctx, url) as client:
        try:
            job = client.submit(spec)
        except JobdockError as exc:
            fail(one_line(exc), EXIT_JOBDOCK)
        if job.waiting_reason is not None:
            # It is queued; say why it would not start rather than hang silently.
            typer.echo(f"jobdock: warning: job {job.id} waits: {job.waiting_reason}", err=True)
        sender = StdinSender(client, job.id) if spec.get("stdin_stream") else None
        if sender is not None:
            sender.start()
        if detach:
            typer.echo(job.id)
        if sender is not None and detach:
            sender.join()
        code = 0 if detach else attach(client, job.id)
        if sender is not None and sender.error is not None:
            fail(f"stdin: {one_line(sender.error)}", EXIT_JOBDOCK)
        if remove:
            _remove(client, job.id)
        raise typer.Exit(code)


def _remove(client: Client, job_id: str) -> None:
    """Delete the job if it has ended (one detached from goes on, and stays)."""
    try:
        if client.get(job_id).terminal:
            client.delete(job_id)
    except JobdockError as exc:
        sys.stderr.write(f"jobdock: job {job_id} was not removed: {one_line(exc)}\n")
