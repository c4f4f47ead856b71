"""``jobdock agent``: run jobs for a server on this machine, reaching the
server over HTTP(S) with an agent token, never its store (docs/agents.md).

Imports the settings and the client's configuration; the agent (its
worker, engines and runtimes) only inside the command.
"""

from __future__ import annotations

import logging
import signal
from typing import TYPE_CHECKING, Annotated

import typer

from jobdock.cli.arguments import pairs
from jobdock.cli.context import load_settings
from jobdock.cli.exits import fail
from jobdock.models.units import MAX_COUNT

if TYPE_CHECKING:
    from jobdock.credentials import Credentials
    from jobdock.settings import Settings


# A declaration of the command's options.
def agent(
    server: Annotated[
        str | None, typer.Option("--server", help="The server's URL (env JOBDOCK_URL).")
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(help="An agent token (`tokens create NAME --agent`; env JOBDOCK_TOKEN)."),
    ] = None,
    ca: Annotated[str | None, typer.Option(help="CA of the server's certificate.")] = None,
    cert: Annotated[str | None, typer.Option(help="Client certificate (mutual TLS).")] = None,
    key: Annotated[str | None, typer.Option(help="Key of --cert.")] = None,
    concurrency: Annotated[int | None, typer.Option(help="Jobs run at once \\[64].")] = None,
    label: Annotated[
        list[str] | None, typer.Option("--label", "-l", help="KEY=VALUE offered to jobs.")
    ] = None,
    home: Annotated[str | None, typer.Option(help="Data directory (env JOBDOCK_HOME).")] = None,
    config: Annotated[str | None, typer.Option(help="A TOML config file.")] = None,
    log_level: Annotated[str | None, typer.Option(help="debug, info, warning or error.")] = None,
    interruption_url: Annotated[
        str | None,
        typer.Option(
            "--interruption-url",
            help="Polled every 2 s: a 200 answer means this machine is to be reclaimed "
            "(EC2: http://169.254.169.254/latest/meta-data/spot/instance-action); its jobs "
            "are handed back at once, not counted against their retries, and the agent stops.",
        ),
    ] = None,
    max_jobs: Annotated[
        int,
        typer.Option(
            "--max-jobs",
            help="Claim this many jobs in all, then stop once they have ended (exit 0); 0: no end.",
        ),
    ] = 0,
) -> None:
    """Run jobs for the server at --server on this machine (its processes,
    its container engine), without access to the server's store.

    SIGTERM or Ctrl-C stops claiming, lets running jobs finish for the drain
    time, then gives the rest back to other workers. An interruption notice
    (--interruption-url) hands running jobs back at once and stops.
    """
    from jobdock.client_config import read_client_config
    from jobdock.credentials import Credentials

    client = read_client_config(url=server, token=token, ca=ca, cert=cert, key=key)
    if not client.url.lower().startswith(("http://", "https://")):
        fail(f"--server must be an http:// or https:// URL, not {client.url!r}", 2)
    if interruption_url is not None and not _is_http_url(interruption_url):
        fail(f"--interruption-url must be an http:// or https:// URL, not {interruption_url!r}", 2)
    if not 0 <= max_jobs <= MAX_COUNT:
        fail(f"--max-jobs must be between 0 and {MAX_COUNT}, not {max_jobs}", 2)
    settings = load_settings(
        home=home,
        concurrency=concurrency,
        labels=pairs(label, "--label") or None,
        config=config,
        log_level=log_level,
    )
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # One line per request would drown what the agent has to say.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    credentials = Credentials(token=client.token, ca=client.ca, cert=client.cert, key=client.key)
    import uvloop

    uvloop.run(_run(settings, client.url, credentials, interruption_url, max_jobs))


def _is_http_url(url: str) -> bool:
    return len(url) <= 2048 and url.lower().startswith(("http://", "https://"))


async def _run(
    settings: Settings,
    url: str,
    credentials: Credentials,
    interruption_url: str | None,
    max_jobs: int,
) -> None:
    """Run the agent until SIGTERM or SIGINT; a failure is one line."""
    import asyncio

    from jobdock.agent.runner import run_agent
    from jobdock.errors import JobdockError

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signo in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signo, stop.set)
    try:
        await run_agent(settings, url, credentials, stop, interruption_url, max_jobs)
    except JobdockError as exc:
        fail(f"agent: {exc.message}", 1)
