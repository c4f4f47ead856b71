"""``jobdock export``: a job written out to be run again elsewhere, as a
job file (``-F yaml`` / ``json``, for ``jobdock run -f``), a ``docker run``
line (an image job) or a shell line (a process job).

Imports the client (through :mod:`jobdock.cli.context`) and the rendering.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from jobdock.cli.context import connect, url_option
from jobdock.cli.exits import fail
from jobdock.cli.render.export import docker_line, job_file, shell_line

if TYPE_CHECKING:
    from jobdock.models import Job

_FORMATS = ("yaml", "json", "docker", "shell")


def export(
    ctx: typer.Context,
    job_id: Annotated[str, typer.Argument(help="The job's id, id prefix or name.")],
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            "-F",
            help="yaml or json (a job file for run -f), docker (a docker run line) or shell.",
        ),
    ] = "yaml",
    url: Annotated[str | None, url_option] = None,
) -> None:
    """Print a job as a job file, a docker run line or a shell line."""
    if fmt not in _FORMATS:
        fail(f"--format {fmt!r} is not one of {', '.join(_FORMATS)}", 2)
    with connect(ctx, url) as client:
        job = client.get(job_id)
    spec = job.spec.model_dump(mode="json", exclude_defaults=True)
    if fmt in ("yaml", "json"):
        typer.echo(job_file(spec, fmt), nl=False)
    elif fmt == "docker":
        if job.spec.image is None:
            fail(f"job {job.id} is a process job: use --format shell", 2)
        typer.echo(docker_line(spec, pinned_image(job) or job.spec.image), nl=False)
    else:
        if job.spec.image is not None:
            fail(f"job {job.id} is an image job: use --format docker", 2)
        typer.echo(shell_line(spec), nl=False)


def pinned_image(job: Job) -> str | None:
    """The image the job's latest started attempt really ran, by digest
    (None: no attempt recorded one)."""
    for attempt in reversed(job.attempts):
        if attempt.inputs is not None and attempt.inputs.image_digest:
            return attempt.inputs.image_digest
    return None
