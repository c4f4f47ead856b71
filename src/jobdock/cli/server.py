"""The commands that run jobdock itself: ``serve`` (the API, with its
embedded worker unless told otherwise), ``worker`` (jobs from a shared store,
no API) and ``db upgrade``; and the checks that refuse to start an unsafe
or broken server with one line rather than a traceback.

Imports the settings; the server's modules (uvicorn, the API, the worker,
the store) only inside the command that runs them.
"""

from __future__ import annotations

import logging
import signal
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from jobdock.cli.arguments import pairs
from jobdock.cli.context import load_settings
from jobdock.cli.exits import fail
from jobdock.cli.home_lock import hold_home
from jobdock.cli.local_store import in_store, on_store

if TYPE_CHECKING:
    from jobdock.settings import Settings
    from jobdock.store.protocol import Store


# A declaration of the command's options (over 60 lines, allowed as one).
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on \\[127.0.0.1].")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on \\[8080].")] = None,
    home: Annotated[str | None, typer.Option(help="Data directory (env JOBDOCK_HOME).")] = None,
    db: Annotated[
        str | None, typer.Option(help="Store URL \\[sqlite:///$JOBDOCK_HOME/jobdock.db].")
    ] = None,
    concurrency: Annotated[int | None, typer.Option(help="Jobs run at once \\[64].")] = None,
    label: Annotated[
        list[str] | None, typer.Option("--label", "-l", help="KEY=VALUE the worker offers.")
    ] = None,
    no_worker: Annotated[
        bool, typer.Option("--no-worker", help="Serve the API only; `jobdock worker`s run jobs.")
    ] = False,
    worker_processes: Annotated[
        int | None,
        typer.Option(help="Run the worker in N processes beside the API's \\[0: in it]."),
    ] = None,
    config: Annotated[str | None, typer.Option(help="A TOML config file.")] = None,
    log_level: Annotated[str | None, typer.Option(help="debug, info, warning or error.")] = None,
    log_format: Annotated[
        str | None, typer.Option(help="human, or json: one object per line \\[human].")
    ] = None,
    tokens: Annotated[
        bool | None, typer.Option("--tokens", help="Require an API token on every request.")
    ] = None,
    tls_cert: Annotated[str | None, typer.Option(help="Server certificate: serve HTTPS.")] = None,
    tls_key: Annotated[str | None, typer.Option(help="Key of --tls-cert.")] = None,
    tls_ca: Annotated[
        str | None, typer.Option(help="Require client certificates from this CA (mutual TLS).")
    ] = None,
    insecure: Annotated[
        bool | None,
        typer.Option("--insecure", help="Listen beyond loopback without authentication."),
    ] = None,
) -> None:
    """Start the API server with its embedded worker."""
    if no_worker and worker_processes:
        fail("--no-worker and --worker-processes cannot be used together", 2)
    settings = load_settings(
        host=host,
        port=port,
        home=home,
        db=db,
        concurrency=concurrency,
        labels=pairs(label, "--label") or None,
        worker_processes=worker_processes,
        config=config,
        log_level=log_level,
        log_format=log_format,
        tokens=tokens,
        tls_cert=tls_cert,
        tls_key=tls_key,
        tls_ca=tls_ca,
        insecure=insecure,
    )
    _serve(settings, embedded_worker=not no_worker)


def worker(
    db: Annotated[str | None, typer.Option(help="Store URL (env JOBDOCK_DB).")] = None,
    home: Annotated[str | None, typer.Option(help="Data directory (env JOBDOCK_HOME).")] = None,
    concurrency: Annotated[int | None, typer.Option(help="Jobs run at once \\[64].")] = None,
    label: Annotated[
        list[str] | None, typer.Option("--label", "-l", help="KEY=VALUE offered to jobs.")
    ] = None,
    config: Annotated[str | None, typer.Option(help="A TOML config file.")] = None,
    log_level: Annotated[str | None, typer.Option(help="debug, info, warning or error.")] = None,
    log_format: Annotated[
        str | None, typer.Option(help="human, or json: one object per line \\[human].")
    ] = None,
    runtime: Annotated[
        str | None, typer.Option(help="process (this machine) or slurm (sbatch each job).")
    ] = None,
    slurm_partition: Annotated[
        str | None, typer.Option(help="The Slurm partition jobs go to (docs/slurm.md).")
    ] = None,
) -> None:
    """Run jobs from a shared store (PostgreSQL), without serving the API.

    SIGTERM or Ctrl-C stops claiming, lets running jobs finish for the drain
    time, then gives the rest back to other workers.
    """
    settings = load_settings(
        db=db,
        home=home,
        concurrency=concurrency,
        labels=pairs(label, "--label") or None,
        config=config,
        log_level=log_level,
        log_format=log_format,
        runtime=runtime,
        slurm_partition=slurm_partition,
    )
    _configure_logging(settings)
    _check_identities(settings)
    _protect_server_files(settings)
    _work(settings)


def worker_child() -> None:
    """A worker that ``jobdock serve --worker-processes`` started, with the
    server's settings (jobdock/worker_processes.py)."""
    from jobdock.worker_processes import read_settings

    settings = read_settings()
    _configure_logging(settings)
    _work(settings)


def _work(settings: Settings) -> None:
    """Run a worker, traced, until SIGTERM or SIGINT."""
    import uvloop

    from jobdock import tracing

    tracing.start(settings)
    try:
        uvloop.run(_run_worker(settings))
    finally:
        tracing.stop()


async def _run_worker(settings: Settings) -> None:
    """Run a worker on the settings' store until SIGTERM or SIGINT."""
    import asyncio

    from jobdock.identities import shared_store_problem
    from jobdock.node import Node
    from jobdock.store.factory import open_store

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signo in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signo, stop.set)
    async with open_store(settings) as store:
        problem = shared_store_problem(settings, bool(await store.list_tokens()))
        if problem is not None:
            fail(problem, 2)
        # A node: the worker and the housekeeping around it (reaping, cron).
        node = Node(store, settings)
        await node.start()
        await stop.wait()
        logging.getLogger("jobdock").info("worker %s stopping", node.worker.id)
        await node.stop()


def db_upgrade(
    db: Annotated[str | None, typer.Option(help="Store URL.")] = None,
    home: Annotated[str | None, typer.Option(help="Data directory.")] = None,
) -> None:
    """Bring the store's schema up to date."""
    import asyncio

    settings = load_settings(db=db, home=home)
    asyncio.run(on_store(settings, _untouched))
    typer.echo(f"store {settings.db_url} is up to date")


async def _untouched(_store: Store) -> None:
    """Nothing: opening the store (which migrates it) was the point."""


def _check_store(settings: Settings) -> None:
    """Open the store once before serving (migrating it), so that a store
    that cannot be opened is one line here, not a traceback from the server."""
    in_store(settings, _untouched)


def _configure_logging(settings: Settings) -> None:
    from jobdock.log_format import configure_logging

    configure_logging(settings)
    # The event loop shares the GIL with the writer and spawner threads; a
    # thread that wakes for it waits up to this long (default 5 ms) for a turn.
    # 1 ms cut p50 submit->start latency and raised throughput in bench/.
    sys.setswitchinterval(0.001)


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_exposure(settings: Settings) -> None:
    """Refuse to serve beyond loopback without authentication, unless told
    to with --insecure (then say so loudly)."""
    if settings.auth_enabled or _is_loopback(settings.host):
        return
    if not settings.insecure:
        fail(
            f"refusing to listen on {settings.host} without authentication: anyone who can "
            "reach it could run commands as this user. Use --tokens or --tls-ca, listen on "
            "127.0.0.1, or pass --insecure",
            2,
        )
    logging.getLogger("jobdock").warning(
        "INSECURE: listening on %s with no authentication; anyone who can reach port %d "
        "can run any command as this user",
        settings.host,
        settings.port,
    )


def _check_identities(settings: Settings) -> None:
    """Refuse to start where jobs would run as this server with
    authentication on (unless jobs_as_server says so; then loudly)."""
    from jobdock.identities import startup_problem
    from jobdock.identities import warning as identities_warning

    problem = startup_problem(settings)
    if problem is not None:
        fail(problem, 2)
    said = identities_warning(settings)
    if said is not None:
        logging.getLogger("jobdock").warning("INSECURE: %s", said)
    elif settings.job_identities:
        logging.getLogger("jobdock").info(
            "process jobs run as their owners' own uids (%s), HOME under %s",
            settings.job_uids,
            settings.job_homes,
        )


def _protect_server_files(settings: Settings) -> None:
    from jobdock.identities import protect_server_files

    protect_server_files(settings)


def _serve(settings: Settings, *, embedded_worker: bool = True) -> None:
    import uvicorn

    from jobdock.api.app import create_app
    from jobdock.api.limits import HeaderDeadline
    from jobdock.api.tls import TlsHttpProtocol, server_context

    _configure_logging(settings)
    # Before anything opens the store: a second server on this home stops here.
    hold_home(settings.home)
    _check_exposure(settings)
    if embedded_worker:  # an API-only server runs no jobs
        _check_identities(settings)
    _check_store(settings)
    _protect_server_files(settings)
    tls = settings.tls_cert is not None
    config = uvicorn.Config(
        create_app(settings, embedded_worker=embedded_worker),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        # uvicorn's own lines go through the root logger, in jobdock's one
        # format (_configure_logging); a request's line only at debug.
        log_config=None,
        access_log=settings.log_level == "debug",
        loop="uvloop",
        http=(TlsHttpProtocol if tls else HeaderDeadline).with_timeout(settings.header_timeout),
        limit_concurrency=settings.max_connections,
        timeout_graceful_shutdown=2,
        proxy_headers=False,
        server_header=False,
    )
    if tls:
        config.load()
        try:
            config.ssl = server_context(settings)
        except (OSError, ValueError) as exc:
            fail(f"cannot load the TLS certificate, key or CA: {exc}")
    server = uvicorn.Server(config)
    _announce(settings, tls=tls)
    from jobdock import tracing

    tracing.start(settings)
    try:
        server.run()
    finally:
        tracing.stop()
    if not server.started:
        fail(f"could not start the server on {settings.host}:{settings.port} (see above)")


def _announce(settings: Settings, *, tls: bool) -> None:
    """Log where the server listens, what it stores and how it authenticates,
    then where a browser finds the dashboard."""
    auth = [
        name for name, on in (("tokens", settings.tokens), ("mutual TLS", settings.tls_ca)) if on
    ]
    scheme = "https" if tls else "http"
    log = logging.getLogger("jobdock")
    log.info(
        "jobdock serving on %s://%s:%d (store %s; auth: %s)",
        scheme,
        settings.host,
        settings.port,
        settings.db_url,
        " and ".join(auth) or "none, single user",
    )
    log.info("dashboard: %s://%s:%d/ui", scheme, _browsable(settings.host), settings.port)


def _browsable(host: str) -> str:
    """``host`` as a browser on this machine reaches it (a wildcard address is
    reached on loopback; an IPv6 address goes in brackets)."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host
