"""``jobdock repro ID``: a job of the server run again here, exactly as its
latest attempt ran (the image by its pinned digest, its command, env, stdin
and limits), on a temporary local server of its own (as ``run --local``),
its output streamed here and its exit status this command's. Secrets are
never fetched: the job names them, this machine gives their values.
``--compare`` then says whether exit code and output match the original.

Imports the client (through :mod:`jobdock.cli.context`), the CLI's local
server, attaching and repro inputs.
"""

from __future__ import annotations

import json
import os
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from jobdock.cli.attach import attach
from jobdock.cli.context import Connection, connect, load_settings, url_option
from jobdock.cli.exits import EXIT_JOBDOCK, fail, one_line
from jobdock.cli.repro_inputs import local_image, pinned, repro_spec, secret_values, without
from jobdock.errors import JobdockError
from jobdock.models.states import Stream

if TYPE_CHECKING:
    from jobdock.cli.render.compare import Run
    from jobdock.client import Client
    from jobdock.models import Job


def repro(
    ctx: typer.Context,
    job_id: Annotated[str, typer.Argument(help="The job's id, id prefix or name.")],
    compare: Annotated[
        bool,
        typer.Option(help="Then say whether exit code, stdout and stderr match the original."),
    ] = False,
    pull: Annotated[
        bool,
        typer.Option(help="Pull the pinned image by digest if this machine's engine lacks it."),
    ] = False,
    secret: Annotated[
        list[str] | None,
        typer.Option(help="NAME=VAR: the job's secret NAME from this env var VAR; repeatable."),
    ] = None,
    env_file: Annotated[
        str | None, typer.Option(help="A file of NAME=VALUE lines: values of the job's secrets.")
    ] = None,
    without_secrets: Annotated[
        bool, typer.Option(help="Run without the secrets given no value here.")
    ] = False,
    url: Annotated[str | None, url_option] = None,
) -> None:
    """Run a job of the server again here, exactly as it ran, and exit as it does."""
    with connect(ctx, url) as client:
        try:
            job = client.get(job_id)
            stdin = client.stdin(job.id) if job.stdin_bytes else b""
        except JobdockError as exc:
            fail(one_line(exc), EXIT_JOBDOCK)
        original = _run_of(client, job) if compare else None
    spec, settings = _prepared(job, stdin, pull)
    names = [ref.name for ref in job.spec.secrets]
    values = secret_values(names, secret or [], env_file, os.environ)
    missing = [name for name in names if name not in values]
    if missing and not without_secrets:
        fail(
            f"job {job.id} uses secrets it is not given here: {', '.join(missing)} "
            "(give them with --secret NAME=VAR or --env-file FILE, or add --without-secrets)",
            2,
        )
    spec = without(spec, set(missing))
    if values:
        from jobdock.vault import generate_key

        settings["JOBDOCK_SECRET_KEY"] = generate_key()
    from jobdock.cli.local_server import local_server

    ctx.obj = Connection(own_server=True)  # none of the --url server's credentials
    with local_server(settings) as local_url, connect(ctx, local_url) as here:
        code = _run_here(here, spec, values, job, original)
    raise typer.Exit(code)


def _prepared(job: Job, stdin: bytes, pull: bool) -> tuple[dict[str, Any], dict[str, str]]:
    """The spec to run here, and the local server's settings for it."""
    inputs = pinned(job)
    settings: dict[str, str] = {}
    image = None
    if job.spec.image is not None:
        docker_host = load_settings().docker_host
        settings["JOBDOCK_DOCKER_HOST"] = docker_host
        runtime = job.spec.container_runtime
        if runtime is not None:
            settings["JOBDOCK_CONTAINER_RUNTIMES"] = json.dumps(sorted({"runc", runtime}))
        if inputs is None or inputs.image_digest is None:
            fail(
                f"job {job.id} has no recorded image digest (it never started, or ran before "
                f"jobdock recorded one): run its image yourself with jobdock run",
                EXIT_JOBDOCK,
            )
        image = inputs.image_digest
        local_image(docker_host, image, job.spec.image, pull)
    if job.spec.stdin_stream:
        sys.stderr.write(
            f"jobdock: warning: job {job.id}'s stdin was streamed and is not kept: "
            "it runs here with none\n"
        )
    spec = repro_spec(job, stdin, image)
    spec.pop("stdin_stream", None)
    return spec, settings


def _run_here(
    client: Client, spec: dict[str, Any], secrets: dict[str, str], job: Job, original: Run | None
) -> int:
    """Run ``spec`` on the local server, its output here; with ``original``,
    print the comparison after. Returns the exit status."""
    try:
        for name, value in secrets.items():
            client.set_secret(name, value.encode())
        local = client.submit(spec)
    except JobdockError as exc:
        fail(one_line(exc), EXIT_JOBDOCK)
    code = attach(client, local.id)
    if original is not None:
        from jobdock.cli.render.compare import verdict

        here = _run_of(client, client.get(local.id))
        sys.stderr.write("".join(f"{line}\n" for line in verdict(here, original, job.id)))
    return code


def _run_of(client: Client, job: Job) -> Run:
    """What the job's latest attempt gave: exit code, output, duration."""
    from jobdock.cli.render.compare import Run

    output = {Stream.STDOUT: bytearray(), Stream.STDERR: bytearray()}
    if job.attempt:
        for stream, data in client.logs(job.id, attempt=job.attempt):
            output[stream] += data
    last = job.attempts[-1] if job.attempts else None
    seconds = None
    if last is not None and last.started_at is not None and last.finished_at is not None:
        seconds = (last.finished_at - last.started_at).total_seconds()
    return Run(job.exit_code, bytes(output[Stream.STDOUT]), bytes(output[Stream.STDERR]), seconds)
