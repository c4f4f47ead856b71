"""The ``jobdock`` command line. Client commands talk to the server only
through :class:`jobdock.Client`; ``serve`` runs the server itself."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer

from jobdock.client import Client, Credentials
from jobdock.errors import ApiError, ConfigError, InvalidJson, JobdockError
from jobdock.models import ACTIVE_STATES, Job, JobState, Reason, Stream, parse_duration
from jobdock.settings import Settings, load_settings

if TYPE_CHECKING:
    from jobdock.store.protocol import Store

T = TypeVar("T")

app = typer.Typer(
    name="jobdock",
    help="Run Linux processes as jobs: a server, a worker and this client.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
db_app = typer.Typer(help="Manage the job store.", no_args_is_help=True)
app.add_typer(db_app, name="db")
tokens_app = typer.Typer(
    help="Manage API tokens, directly in the store (run it where the server's store is).",
    no_args_is_help=True,
)
app.add_typer(tokens_app, name="tokens")
secrets_app = typer.Typer(help="Manage your secrets on the server.", no_args_is_help=True)
app.add_typer(secrets_app, name="secrets")
certs_app = typer.Typer(help="A certificate authority for mutual TLS.", no_args_is_help=True)
app.add_typer(certs_app, name="certs")

#: ``jobdock run`` and ``wait`` exit with this when jobdock itself failed.
EXIT_JOBDOCK = 125
EXIT_TIMEOUT = 124
EXIT_CANCELLED = 130

_url_option = typer.Option(
    "--url", help="The jobdock server (env JOBDOCK_URL; default http://127.0.0.1:8080)."
)


class _Failure(Exception):
    def __init__(self, message: str, code: int = 1) -> None:
        self.message = message
        self.code = code


def _fail(message: str, code: int = 1) -> NoReturn:
    raise _Failure(message, code)


#: How client commands authenticate: the global options, before each command.
_connection: dict[str, Any] = {}


@app.callback()
def _global_options(
    token: Annotated[
        str | None, typer.Option(help="API token (env JOBDOCK_TOKEN).", show_default=False)
    ] = None,
    ca: Annotated[
        str | None, typer.Option(help="CA of the server's certificate (env JOBDOCK_CA).")
    ] = None,
    cert: Annotated[
        str | None, typer.Option(help="Client certificate, mutual TLS (env JOBDOCK_CERT).")
    ] = None,
    key: Annotated[str | None, typer.Option(help="Key of --cert (env JOBDOCK_KEY).")] = None,
) -> None:
    """Run Linux processes as jobs: a server, a worker and this client."""
    _connection.update(token=token, ca=ca, cert=cert, key=key)


def _credentials(settings: Settings) -> Credentials:
    return Credentials(
        token=settings.token.get_secret_value() if settings.token else None,
        ca=settings.ca,
        cert=settings.cert,
        key=settings.key,
    )


def _client(url: str | None) -> Client:
    settings = load_settings(url=url, **_connection)
    return Client(settings.url, credentials=_credentials(settings))


def exit_code_of(job: Job) -> int:
    """The exit status ``jobdock run`` and ``wait`` give for a finished job."""
    if job.reason is Reason.TIMEOUT:
        return EXIT_TIMEOUT
    if job.exit_code is not None:
        return job.exit_code
    if job.signal is not None:
        return 128 + job.signal
    if job.reason is Reason.SPAWN_ERROR:
        return 126 if "Permission denied" in (job.message or "") else 127
    if job.state is JobState.CANCELLED:
        return EXIT_CANCELLED
    return EXIT_JOBDOCK


def _pairs(values: list[str] | None, what: str) -> dict[str, str]:
    result = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            _fail(f"{what} {item!r} is not KEY=VALUE", 2)
        result[key] = value
    return result


def _duration(value: str | None, what: str) -> float | None:
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        _fail(f"{what}: {exc}", 2)


# -- serve ------------------------------------------------------------------------


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on [127.0.0.1].")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on [8080].")] = None,
    home: Annotated[str | None, typer.Option(help="Data directory (env JOBDOCK_HOME).")] = None,
    db: Annotated[
        str | None, typer.Option(help="Store URL [sqlite:///$JOBDOCK_HOME/jobdock.db].")
    ] = None,
    concurrency: Annotated[int | None, typer.Option(help="Jobs run at once [64].")] = None,
    label: Annotated[
        list[str] | None, typer.Option("--label", "-l", help="KEY=VALUE the worker offers.")
    ] = None,
    no_worker: Annotated[
        bool, typer.Option("--no-worker", help="Serve the API only; `jobdock worker`s run jobs.")
    ] = False,
    config: Annotated[str | None, typer.Option(help="A TOML config file.")] = None,
    log_level: Annotated[str | None, typer.Option(help="debug, info, warning or error.")] = None,
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
    settings = load_settings(
        host=host,
        port=port,
        home=home,
        db=db,
        concurrency=concurrency,
        labels=_pairs(label, "--label") or None,
        config=config,
        log_level=log_level,
        tokens=tokens,
        tls_cert=tls_cert,
        tls_key=tls_key,
        tls_ca=tls_ca,
        insecure=insecure,
    )
    _serve(settings, embedded_worker=not no_worker)


@app.command()
def worker(
    db: Annotated[str | None, typer.Option(help="Store URL (env JOBDOCK_DB).")] = None,
    home: Annotated[str | None, typer.Option(help="Data directory (env JOBDOCK_HOME).")] = None,
    concurrency: Annotated[int | None, typer.Option(help="Jobs run at once [64].")] = None,
    label: Annotated[
        list[str] | None, typer.Option("--label", "-l", help="KEY=VALUE offered to jobs.")
    ] = None,
    config: Annotated[str | None, typer.Option(help="A TOML config file.")] = None,
    log_level: Annotated[str | None, typer.Option(help="debug, info, warning or error.")] = None,
) -> None:
    """Run jobs from a shared store (PostgreSQL), without serving the API.

    SIGTERM or Ctrl-C stops claiming, lets running jobs finish for the drain
    time, then gives the rest back to other workers.
    """
    settings = load_settings(
        db=db,
        home=home,
        concurrency=concurrency,
        labels=_pairs(label, "--label") or None,
        config=config,
        log_level=log_level,
    )
    _configure_logging(settings)
    _check_identities(settings)
    _protect_server_files(settings)
    import uvloop

    from jobdock.identities import shared_store_problem
    from jobdock.node import Node
    from jobdock.store.sql import SqlStore

    async def run_worker() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signo in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signo, stop.set)
        async with SqlStore(
            settings.db_url, sqlite_synchronous=settings.sqlite_synchronous
        ) as store:
            problem = shared_store_problem(settings, bool(await store.list_tokens()))
            if problem is not None:
                _fail(problem, 2)
            node = Node(store, settings)
            await node.start()
            await stop.wait()
            logging.getLogger("jobdock").info("worker %s stopping", node.worker.id)
            await node.stop()

    uvloop.run(run_worker())


def _check_store(settings: Settings) -> None:
    """Open the store once before serving (migrating it), so that a store
    that cannot be opened is one line here, not a traceback from the server."""
    from jobdock.store.sql import SqlStore

    async def check() -> None:
        async with SqlStore(settings.db_url, sqlite_synchronous=settings.sqlite_synchronous):
            pass

    try:
        asyncio.run(check())
    except JobdockError as exc:
        _fail(_message(exc))


def _configure_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
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
        _fail(
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
        _fail(problem, 2)
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
        access_log=False,
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
            _fail(f"cannot load the TLS certificate, key or CA: {exc}")
    server = uvicorn.Server(config)
    auth = [
        name for name, on in (("tokens", settings.tokens), ("mutual TLS", settings.tls_ca)) if on
    ]
    logging.getLogger("jobdock").info(
        "jobdock serving on %s://%s:%d (store %s; auth: %s)",
        "https" if tls else "http",
        settings.host,
        settings.port,
        settings.db_url,
        " and ".join(auth) or "none, single user",
    )
    server.run()
    if not server.started:
        _fail(f"could not start the server on {settings.host}:{settings.port} (see above)")


@db_app.command("upgrade")
def db_upgrade(
    db: Annotated[str | None, typer.Option(help="Store URL.")] = None,
    home: Annotated[str | None, typer.Option(help="Data directory.")] = None,
) -> None:
    """Bring the store's schema up to date."""
    import asyncio

    from jobdock.store.sql import SqlStore

    settings = load_settings(db=db, home=home)

    async def upgrade() -> None:
        async with SqlStore(settings.db_url):
            pass

    asyncio.run(upgrade())
    typer.echo(f"store {settings.db_url} is up to date")


# -- run --------------------------------------------------------------------------


@app.command(context_settings={"allow_interspersed_args": False})
def run(
    command: Annotated[
        list[str] | None,
        typer.Argument(help="The program and its arguments (with --image: replaces CMD)."),
    ] = None,
    detach: Annotated[
        bool, typer.Option("--detach", "-d", help="Print the job id and return.")
    ] = False,
    interactive: Annotated[
        bool, typer.Option("--interactive", "-i", help="Send this command's stdin to the job.")
    ] = False,
    env: Annotated[
        list[str] | None, typer.Option("--env", "-e", help="KEY=VALUE; repeatable.")
    ] = None,
    workdir: Annotated[
        str | None, typer.Option("--workdir", "-w", help="Working directory.")
    ] = None,
    timeout: Annotated[str | None, typer.Option(help="Wall-clock limit, e.g. 30s, 10m.")] = None,
    kill_grace: Annotated[
        str | None, typer.Option(help="Time between SIGTERM and SIGKILL on stop [10s].")
    ] = None,
    name: Annotated[str | None, typer.Option(help="A name for the job.")] = None,
    label: Annotated[
        list[str] | None, typer.Option("--label", "-l", help="KEY=VALUE; repeatable.")
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
            help="With --image: user[:group] in the container; else the user an isolated job "
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
            help="Run a process job in new namespaces (PID 1, no network); default: as the "
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
    priority: Annotated[int | None, typer.Option(help="Higher starts first [0].")] = None,
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
        int | None, typer.Option(help="How many jobs of --concurrency-key run at once [1].")
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
    url: Annotated[str | None, _url_option] = None,
) -> None:
    """Run a command (or an image) as a job: stream its output and exit with its exit code."""
    spec: dict[str, Any] = {"command": command or []}
    spec.update(
        _scheduling(
            at=at,
            priority=priority,
            retries=retries,
            idempotency_key=idempotency_key,
            concurrency_key=concurrency_key,
            concurrency_limit=concurrency_limit,
            queue_timeout=_duration(queue_timeout, "--queue-timeout"),
            total_timeout=_duration(total_timeout, "--total-timeout"),
            keep_for=_duration(keep_for, "--keep-for"),
        )
    )
    spec.update(
        _confinement(
            image,
            {"cpus": cpus, "memory": memory, "pids": pids},
            network=network,
            user=user,
            isolate=isolate,
            group=group,
            readonly=readonly,
            rootfs=rootfs,
            io_read_bps=io_read_bps,
            io_write_bps=io_write_bps,
        )
    )
    if output_limit is not None:
        spec["output_limit"] = output_limit
        spec["on_output_limit"] = "drop" if drop_output else "stop"
    if interactive:
        spec["stdin_base64"] = _b64(sys.stdin.buffer.read())
    for key, value in (
        ("env", _pairs(env, "--env")),
        ("labels", _pairs(label, "--label")),
        ("cwd", workdir),
        ("timeout", _duration(timeout, "--timeout")),
        ("kill_grace", _duration(kill_grace, "--kill-grace")),
        ("name", name),
        ("on_worker_lost", on_worker_lost),
        ("image", image),
        ("entrypoint", [entrypoint] if entrypoint is not None else None),
        ("pull", pull),
        ("container_runtime", runtime),
        ("caches", [_cache(item) for item in cache or ()]),
        ("secrets", _secret_refs(secret, secret_file)),
    ):
        if value:
            spec[key] = value
    with _client(url) as client:
        try:
            job = client.submit(spec)
        except JobdockError as exc:
            _fail(_message(exc), EXIT_JOBDOCK)
        if detach:
            typer.echo(job.id)
            return
        raise typer.Exit(_attach(client, job.id))


_CT = "Containers"
_RES = "Resources"
_ISO = "Isolation"


def _secret_refs(env: list[str] | None, files: list[str] | None) -> list[dict[str, str]]:
    refs = [{"name": k, "env": v} for k, v in _pairs(env, "--secret").items()]
    refs += [{"name": k, "file": v} for k, v in _pairs(files, "--secret-file").items()]
    return refs


def _cache(item: str) -> dict[str, str]:
    name, sep, path = item.partition(":")
    if not sep or not name or not path:
        _fail(f"--cache {item!r} is not NAME:PATH", 2)
    return {"name": name, "path": path}


def parse_at(value: str, now: float) -> str:
    """An RFC 3339 time from ``--at``: one with an offset, or ``+DURATION``
    from ``now``. Raises ValueError."""
    if value.startswith("+"):
        moment = datetime.fromtimestamp(now + parse_duration(value[1:])).astimezone()
    else:
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a time like 2026-12-01T10:00:00+01:00") from None
        if moment.tzinfo is None:
            raise ValueError(f"{value!r} has no offset (add one, e.g. +01:00 or Z)")
    return moment.isoformat()


def _scheduling(**options: Any) -> dict[str, Any]:
    """The scheduling fields of a spec from ``jobdock run``'s options."""
    spec = {key: value for key, value in options.items() if value is not None}
    if "at" in spec:
        try:
            spec["run_at"] = parse_at(spec.pop("at"), time.time())
        except ValueError as exc:
            _fail(f"--at: {exc}", 2)
    if "retries" in spec:
        spec["retry"] = {"max_attempts": spec.pop("retries") + 1}
    return spec


def _confinement(
    image: str | None,
    resources: dict[str, Any],
    *,
    network: str | None,
    user: str | None,
    isolate: bool | None,
    group: str | None,
    readonly: bool,
    rootfs: str | None,
    io_read_bps: str | None,
    io_write_bps: str | None,
) -> dict[str, Any]:
    """The limit and isolation fields of a spec from ``jobdock run``'s
    options: an image job's network and user are the container's; a process
    job's are its isolation's. Options for process jobs only are an error
    with ``--image``."""
    process_only = {
        "--io-read-bps": io_read_bps,
        "--io-write-bps": io_write_bps,
        "--isolate" if isolate else "--no-isolate": isolate,
        "--group": group,
        "--readonly": readonly or None,
        "--rootfs": rootfs,
    }
    spec: dict[str, Any] = {}
    if image is not None:
        given = [flag for flag, value in process_only.items() if value is not None]
        if given:
            _fail(
                f"{given[0]} applies to process jobs only (a container is isolated by its "
                "engine; see --network and --user)",
                2,
            )
        spec |= {"network": network, "user": user}
    else:
        resources = resources | {"io_read_bps": io_read_bps, "io_write_bps": io_write_bps}
        isolation = _isolation(network, user, group, readonly, rootfs)
        if isolation or isolate:
            spec["isolation"] = isolation or True
        elif isolate is False:
            spec["isolation"] = False
    spec["resources"] = {key: value for key, value in resources.items() if value is not None}
    return {key: value for key, value in spec.items() if value not in (None, {})}


def _isolation(
    network: str | None, user: str | None, group: str | None, readonly: bool, rootfs: str | None
) -> dict[str, Any]:
    isolation: dict[str, Any] = {"network": network, "user": user, "group": group}
    if rootfs is not None:
        isolation["filesystem"] = {"rootfs": rootfs}
    elif readonly:
        isolation["filesystem"] = "readonly"
    return {key: value for key, value in isolation.items() if value is not None}


def _b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode()


def _attach(client: Client, job_id: str) -> int:
    """Stream a job's output here until it ends; the first Ctrl-C stops the job."""
    stopping = threading.Event()

    def on_interrupt(_signo: int, _frame: object) -> None:
        if stopping.is_set():
            raise KeyboardInterrupt
        stopping.set()
        sys.stderr.write(f"jobdock: stopping job {job_id} (Ctrl-C again to detach)\n")
        url, credentials = client.url, client.credentials
        threading.Thread(
            target=lambda: _quietly_cancel(url, credentials, job_id), daemon=True
        ).start()

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        _copy_output(client.logs(job_id, follow=True))
        job = client.wait(job_id)
    except KeyboardInterrupt:
        sys.stderr.write(f"jobdock: detached; job {job_id} goes on\n")
        return EXIT_CANCELLED
    except JobdockError as exc:
        _fail(_message(exc), EXIT_JOBDOCK)
    finally:
        signal.signal(signal.SIGINT, previous)
    if job.reason in (
        Reason.SPAWN_ERROR,
        Reason.TIMEOUT,
        Reason.WORKER_LOST,
        Reason.IMAGE_NOT_FOUND,
        Reason.OOM,
    ):
        sys.stderr.write(f"jobdock: {job.message}\n")
    return exit_code_of(job)


def _quietly_cancel(url: str, credentials: Credentials, job_id: str) -> None:
    try:
        with Client(url, credentials=credentials) as client:
            client.cancel(job_id)
    except JobdockError:
        pass


def _copy_output(pieces: Iterator[tuple[Stream, bytes]]) -> None:
    out, err = sys.stdout.buffer, sys.stderr.buffer
    for stream, data in pieces:
        target = out if stream is Stream.STDOUT else err
        target.write(data)
        target.flush()


# -- looking at jobs ----------------------------------------------------------------


def _ago(moment: datetime | None) -> str:
    if moment is None:
        return ""
    seconds = max(0.0, time.time() - moment.timestamp())
    return f"{_span(seconds)} ago"


def _span(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 120:
        return f"{seconds:.0f}s" if seconds >= 10 else f"{seconds:.1f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.0f}h"
    return f"{seconds / 86400:.0f}d"


def _status(job: Job) -> str:
    if job.state is JobState.RUNNING:
        return (
            f"running {_span(time.time() - job.started_at.timestamp())}"
            if job.started_at
            else "running"
        )
    if job.state is JobState.RETRYING and job.next_attempt_at is not None:
        wait = max(0.0, job.next_attempt_at.timestamp() - time.time())
        return f"retrying in {_span(wait)}"
    if not job.terminal:
        return job.state.value
    took = ""
    if job.started_at and job.finished_at:
        took = f" in {_span((job.finished_at - job.started_at).total_seconds())}"
    if job.reason is Reason.EXITED:
        return f"{job.state.value} (exit {job.exit_code}){took}"
    return f"{job.state.value} ({job.reason.value if job.reason else '?'}){took}"


@app.command()
def ps(
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
    url: Annotated[str | None, _url_option] = None,
) -> None:
    """List jobs, newest first: queued and running ones, or all with -a."""
    states = list(state or [])
    valid = {s.value for s in JobState}
    for item in states:
        if item not in valid:
            _fail(f"--state {item!r} is not one of {', '.join(sorted(valid))}", 2)
    if not states and not all_:
        states = sorted(s.value for s in ACTIVE_STATES)
    jobs: list[Job] = []
    cursor = None
    with _client(url) as client:
        while len(jobs) < last:
            page = client.list(
                states=states,
                labels=_pairs(label, "--label"),
                name=name,
                limit=min(500, last - len(jobs)),
                cursor=cursor,
            )
            jobs += page.jobs
            cursor = page.next_cursor
            if cursor is None:
                break
    if quiet:
        for job in jobs:
            typer.echo(job.id)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("JOB ID", "NAME", "COMMAND", "CREATED", "STATUS"):
        table.add_column(column, no_wrap=column != "COMMAND", overflow="ellipsis")
    for job in jobs:
        command = " ".join(job.spec.command)
        table.add_row(
            job.id,
            job.name or "",
            command if len(command) <= 40 else command[:39] + "…",
            _ago(job.created_at),
            _status(job),
        )
    Console(soft_wrap=False).print(table)


@app.command()
def workers(
    url: Annotated[str | None, _url_option] = None,
) -> None:
    """List the workers: labels, last heartbeat, running jobs."""
    with _client(url) as client:
        found = client.workers()
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("WORKER", "LABELS", "HEARTBEAT", "RUNNING", "STATUS"):
        table.add_column(column, overflow="fold")
    for item in found:
        labels = ",".join(f"{k}={v}" for k, v in sorted(item.labels.items()))
        status = (
            "stopped"
            if item.stopped_at
            else f"up {_span(time.time() - item.started_at.timestamp())}"
        )
        table.add_row(
            item.id,
            labels,
            _ago(item.heartbeat_at),
            f"{item.busy}/{item.concurrency}",
            status,
        )
    Console(soft_wrap=False).print(table)


@app.command()
def inspect(
    job_id: Annotated[str, typer.Argument(help="The job's id.")],
    url: Annotated[str | None, _url_option] = None,
) -> None:
    """Print a job's whole record as JSON."""
    with _client(url) as client:
        job = client.get(job_id)
    typer.echo(json.dumps(job.model_dump(mode="json"), indent=2))


@app.command()
def logs(
    job_id: Annotated[str, typer.Argument(help="The job's id.")],
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Follow until the job ends.")
    ] = False,
    stream: Annotated[str, typer.Option(help="stdout, stderr or both.")] = "both",
    attempt: Annotated[int | None, typer.Option(help="Attempt number [latest].")] = None,
    url: Annotated[str | None, _url_option] = None,
) -> None:
    """Print a job's output (stdout here to stdout, stderr to stderr)."""
    if stream not in ("stdout", "stderr", "both"):
        _fail(f"--stream {stream!r} is not stdout, stderr or both", 2)
    with _client(url) as client:
        _copy_output(
            client.logs(
                job_id,
                stream=None if stream == "both" else Stream(stream),
                follow=follow,
                attempt=attempt,
            )
        )


@app.command()
def stop(
    job_ids: Annotated[list[str], typer.Argument(help="Ids of the jobs to stop.", metavar="ID...")],
    now: Annotated[
        bool, typer.Option("--now", help="SIGKILL at once, without the grace period.")
    ] = False,
    url: Annotated[str | None, _url_option] = None,
) -> None:
    """Stop jobs (SIGTERM, grace period, SIGKILL); waits until each has ended.

    Queued jobs are cancelled at once. Prints the id of each stopped job.
    """
    _stop_jobs(job_ids, url, kill=now)


@app.command()
def kill(
    job_ids: Annotated[list[str], typer.Argument(help="Ids of the jobs to kill.", metavar="ID...")],
    url: Annotated[str | None, _url_option] = None,
) -> None:
    """Kill jobs at once (SIGKILL, no grace period), as ``stop --now``."""
    _stop_jobs(job_ids, url, kill=True)


def _stop_jobs(job_ids: list[str], url: str | None, *, kill: bool) -> None:
    failed = False
    with _client(url) as client:
        for job_id in job_ids:
            try:
                job = client.cancel(job_id, kill=kill)
            except ApiError as exc:
                if exc.code == "illegal_transition":
                    sys.stderr.write(
                        f"jobdock: job {job_id} had already finished; nothing to stop\n"
                    )
                    continue
                sys.stderr.write(f"jobdock: {_message(exc)}\n")
                failed = True
                continue
            if not job.terminal:
                client.wait(job_id)
            typer.echo(job_id)
    if failed:
        raise typer.Exit(1)


@app.command()
def wait(
    job_id: Annotated[str, typer.Argument(help="The job's id.")],
    timeout: Annotated[str | None, typer.Option(help="Give up after this long (exit 124).")] = None,
    url: Annotated[str | None, _url_option] = None,
) -> None:
    """Block until a job ends; exit with its exit code."""
    limit = _duration(timeout, "--timeout")
    with _client(url) as client:
        try:
            job = client.wait(job_id, limit)
        except JobdockError as exc:
            _fail(_message(exc), EXIT_JOBDOCK)
    if not job.terminal:
        _fail(f"job {job_id} is still {job.state.value}", EXIT_TIMEOUT)
    raise typer.Exit(exit_code_of(job))


# -- users: tokens, secrets, certificates, audit ------------------------------------


def _in_store(settings: Settings, use: Callable[[Store], Awaitable[T]]) -> T:
    """Run ``use`` on the store the settings name (opened, migrated, closed)."""
    from jobdock.store.sql import SqlStore

    async def run() -> T:
        async with SqlStore(
            settings.db_url, sqlite_synchronous=settings.sqlite_synchronous
        ) as store:
            return await use(store)

    try:
        return asyncio.run(run())
    except JobdockError as exc:
        _fail(_message(exc))


def _cli_actor() -> str:
    import getpass

    return f"cli:{getpass.getuser()}"


_db_option = typer.Option("--db", help="Store URL (env JOBDOCK_DB).")
_home_option = typer.Option("--home", help="Data directory (env JOBDOCK_HOME).")


@tokens_app.command("create")
def tokens_create(
    user: Annotated[str, typer.Argument(help="The user the token acts as.")],
    admin: Annotated[bool, typer.Option("--admin", help="May see and stop every job.")] = False,
    expires: Annotated[
        str | None, typer.Option(help="Valid for this long, e.g. 30d, 12h [never].")
    ] = None,
    db: Annotated[str | None, _db_option] = None,
    home: Annotated[str | None, _home_option] = None,
) -> None:
    """Create a token and print it, once: the store keeps only its hash."""
    from jobdock.auth import check_user_name, create_token

    try:
        check_user_name(user)
    except ValueError as exc:
        _fail(str(exc), 2)
    expires_in = _duration(expires, "--expires")
    created = _in_store(
        load_settings(db=db, home=home),
        lambda store: create_token(
            store, user, admin=admin, expires_in=expires_in, actor=_cli_actor()
        ),
    )
    typer.echo(created.token)
    sys.stderr.write(
        f"jobdock: token {created.info.id} for {user}{' (admin)' if admin else ''}; "
        "it is shown only this once\n"
    )


@tokens_app.command("ls")
def tokens_ls(
    db: Annotated[str | None, _db_option] = None,
    home: Annotated[str | None, _home_option] = None,
) -> None:
    """List tokens: id, user, and whether each is still valid."""
    found = _in_store(load_settings(db=db, home=home), lambda store: store.list_tokens())
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("TOKEN ID", "USER", "ADMIN", "CREATED", "EXPIRES", "STATUS"):
        table.add_column(column, no_wrap=True)
    now = time.time()
    for info in found:
        expires = info.expires_at.timestamp() if info.expires_at else None
        if info.revoked_at is not None:
            status = "revoked"
        elif expires is not None and expires <= now:
            status = "expired"
        else:
            status = "valid"
        table.add_row(
            info.id,
            info.user,
            "yes" if info.admin else "",
            _ago(info.created_at),
            f"in {_span(expires - now)}" if expires and expires > now else "",
            status,
        )
    Console(soft_wrap=False).print(table)


@tokens_app.command("revoke")
def tokens_revoke(
    token_id: Annotated[str, typer.Argument(help="The token's id (see `tokens ls`).")],
    db: Annotated[str | None, _db_option] = None,
    home: Annotated[str | None, _home_option] = None,
) -> None:
    """Revoke a token for good."""
    _in_store(
        load_settings(db=db, home=home),
        lambda store: store.revoke_token(token_id, time.time(), _cli_actor()),
    )
    typer.echo(token_id)


@secrets_app.command("set")
def secrets_set(
    name: Annotated[str, typer.Argument(help="The secret's name.")],
    url: Annotated[str | None, _url_option] = None,
) -> None:
    """Set a secret from standard input (never from the command line); one
    trailing newline is dropped. At a terminal, it is asked for unechoed."""
    if sys.stdin.isatty():
        import getpass

        value = getpass.getpass(f"value of secret {name}: ").encode()
    else:
        value = sys.stdin.buffer.read()
    value = value.removesuffix(b"\n").removesuffix(b"\r")
    if not value:
        _fail("the secret's value (standard input) is empty", 2)
    with _client(url) as client:
        client.set_secret(name, value)
    typer.echo(name)


@secrets_app.command("ls")
def secrets_ls(url: Annotated[str | None, _url_option] = None) -> None:
    """List your secrets (names, never values)."""
    with _client(url) as client:
        found = client.secrets()
    for info in found:
        typer.echo(f"{info.name}\t{_ago(info.updated_at)}")


@secrets_app.command("rm")
def secrets_rm(
    names: Annotated[list[str], typer.Argument(help="Secrets to delete.", metavar="NAME...")],
    url: Annotated[str | None, _url_option] = None,
) -> None:
    """Delete secrets."""
    with _client(url) as client:
        for name in names:
            client.delete_secret(name)
            typer.echo(name)


@secrets_app.command("keygen")
def secrets_keygen() -> None:
    """Print a new key for the server's secret_key setting (JOBDOCK_SECRET_KEY)."""
    from jobdock.vault import generate_key

    typer.echo(generate_key())


@certs_app.command("init")
def certs_init(
    directory: Annotated[Path, typer.Argument(help="Where the CA and certificates go.")],
    host: Annotated[
        list[str] | None,
        typer.Option("--host", help="A name or IP the server is reached at; repeatable."),
    ] = None,
) -> None:
    """Create a CA and a server certificate (ECDSA P-256) in DIRECTORY."""
    from jobdock.certs import init_ca

    ca, server = init_ca(directory, host or ["localhost", "127.0.0.1"])
    for path in (ca.cert, ca.key, server.cert, server.key):
        typer.echo(path)


@certs_app.command("issue")
def certs_issue(
    name: Annotated[str, typer.Argument(help="The user: the certificate's common name.")],
    directory: Annotated[Path, typer.Option("--dir", help="The directory of `certs init`.")],
    days: Annotated[int, typer.Option(help="Valid for this many days.")] = 365,
) -> None:
    """Issue a client certificate and key for user NAME."""
    from jobdock.certs import issue_client

    pair = issue_client(directory, name, days=days)
    typer.echo(pair.cert)
    typer.echo(pair.key)


@app.command()
def audit(
    last: Annotated[int, typer.Option("--last", "-n", help="At most this many entries.")] = 50,
    url: Annotated[str | None, _url_option] = None,
) -> None:
    """Show the audit log, newest first: who submitted and stopped which job,
    and who changed tokens and secrets (admins only)."""
    with _client(url) as client:
        page = client.audit(limit=max(1, min(last, 1000)))
    for entry in page.entries:
        typer.echo(
            f"{entry.at.isoformat(timespec='seconds')}\t{entry.actor}\t{entry.action}\t{entry.target}"
        )


# -- schedules and retention ------------------------------------------------------------

schedule_app = typer.Typer(
    help="Cron schedules: jobs submitted at cron times.", no_args_is_help=True
)
app.add_typer(schedule_app, name="schedule")


@schedule_app.command("add")
def schedule_add(
    name: Annotated[str, typer.Argument(help="The schedule's unique name.")],
    command: Annotated[list[str], typer.Argument(help="The program and its arguments.")],
    cron: Annotated[
        str, typer.Option(help="'*/5 * * * *' (minute hour day month weekday [second]).")
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
    url: Annotated[str | None, _url_option] = None,
) -> None:
    """Add a schedule: ``jobdock schedule add NAME --cron '*/5 * * * *' -- CMD...``."""
    job: dict[str, Any] = {"command": command}
    if env:
        job["env"] = _pairs(env, "--env")
    if timeout is not None:
        job["timeout"] = _duration(timeout, "--timeout")
    spec = {
        "name": name,
        "cron": cron,
        "tz": tz,
        "overlap": overlap,
        "catchup": catchup,
        "paused": paused,
        "job": job,
    }
    with _client(url) as client:
        schedule = client.add_schedule(spec)
    typer.echo(f"{schedule.name}: next at {_when(schedule.next_fire_at)}")


def _when(moment: datetime | None) -> str:
    return "-" if moment is None else moment.astimezone().isoformat(timespec="seconds")


@schedule_app.command("ls")
def schedule_ls(url: Annotated[str | None, _url_option] = None) -> None:
    """List schedules with their next fire time and latest job."""
    with _client(url) as client:
        found = client.schedules()
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("NAME", "CRON", "TZ", "NEXT", "LAST JOB", "STATUS"):
        table.add_column(column, no_wrap=column != "NAME", overflow="fold")
    for item in found:
        upcoming = item.next_fire_at
        table.add_row(
            item.name,
            item.cron,
            item.tz,
            upcoming.astimezone().strftime("%Y-%m-%d %H:%M:%S") if upcoming else "-",
            item.last_job_id or "",
            "paused" if item.paused else "active",
        )
    Console(soft_wrap=False).print(table)


#: Names are per owner: an admin names another user's schedule with --owner.
_schedule_owner = typer.Option(
    "--owner", help="The schedule's owner (admins; default: you).", show_default=False
)


@schedule_app.command("rm")
def schedule_rm(
    names: Annotated[list[str], typer.Argument(help="Schedules to remove.", metavar="NAME...")],
    owner: Annotated[str | None, _schedule_owner] = None,
    url: Annotated[str | None, _url_option] = None,
) -> None:
    """Remove schedules (the jobs they made stay)."""
    with _client(url) as client:
        for name in names:
            client.remove_schedule(name, owner)
            typer.echo(name)


@schedule_app.command("pause")
def schedule_pause(
    name: Annotated[str, typer.Argument(help="The schedule.")],
    owner: Annotated[str | None, _schedule_owner] = None,
    url: Annotated[str | None, _url_option] = None,
) -> None:
    """Stop a schedule firing until it is resumed."""
    with _client(url) as client:
        client.pause_schedule(name, owner=owner)
    typer.echo(name)


@schedule_app.command("resume")
def schedule_resume(
    name: Annotated[str, typer.Argument(help="The schedule.")],
    owner: Annotated[str | None, _schedule_owner] = None,
    url: Annotated[str | None, _url_option] = None,
) -> None:
    """Fire a paused schedule again, from its next fire time after now."""
    with _client(url) as client:
        schedule = client.pause_schedule(name, paused=False, owner=owner)
    typer.echo(f"{schedule.name}: next at {_when(schedule.next_fire_at)}")


@app.command()
def prune(
    older_than: Annotated[
        str | None,
        typer.Option(
            help="Delete jobs finished longer ago than this (e.g. 7d), whatever their retention."
        ),
    ] = None,
    url: Annotated[str | None, _url_option] = None,
) -> None:
    """Delete finished jobs with their logs: past their retention, or --older-than."""
    _duration(older_than, "--older-than")
    with _client(url) as client:
        deleted = client.prune(older_than)
    typer.echo(f"deleted {deleted} finished job(s)")


# -- workflows (docs/workflows.md) ------------------------------------------------------

flow_app = typer.Typer(
    help="Workflows: steps run as jobs, with dependencies and reverts.", no_args_is_help=True
)
app.add_typer(flow_app, name="flow")


def _flow_params(items: list[str] | None) -> dict[str, Any]:
    from jobdock.registry import parse_param

    params = {}
    for item in items or []:
        try:
            name, value = parse_param(item)
        except ValueError as exc:
            _fail(f"--param: {exc}", 2)
        params[name] = value
    return params


def _flow_document(target: str, params: dict[str, Any]) -> Any:
    """The document to submit: a file (JSON or YAML) with ``params``, or a
    registered workflow built with them."""
    from jobdock import registry
    from jobdock.workflows import load_document

    path = Path(target)
    if path.is_file():
        try:
            body = path.read_bytes()
        except OSError as exc:
            _fail(f"cannot read {target}: {exc.strerror}")
        spec = load_document(body, yaml=path.suffix.lower() in (".yaml", ".yml"))
        return spec.with_params(params)
    if "/" in target or target.endswith((".yaml", ".yml", ".json")):
        _fail(f"no such file: {target}")
    return registry.build(target, params)


def _watch_flow(client: Client, workflow_id: str, *, until_done: bool) -> Any:
    """Draw the workflow, redrawn live until it finishes (``until_done``)."""
    from rich.console import Console
    from rich.live import Live

    from jobdock.flow_view import tree

    workflow = client.workflow(workflow_id)
    console = Console()
    if not console.is_terminal:
        # Not a terminal: no redrawing, only the tree as it ends.
        while until_done and not workflow.terminal:
            time.sleep(0.5)
            workflow = client.workflow(workflow_id)
    if not until_done or workflow.terminal or not console.is_terminal:
        console.print(tree(workflow))
        return workflow
    with Live(tree(workflow), console=console, refresh_per_second=4) as live:
        while not workflow.terminal:
            time.sleep(0.5)
            workflow = client.workflow(workflow_id)
            live.update(tree(workflow))
    return workflow


@flow_app.command("run")
def flow_run(
    target: Annotated[
        str, typer.Argument(help="A workflow file (.yaml/.json) or a registered name.")
    ],
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="NAME=VALUE; repeatable.")
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="Show it live until it ends; exit 1 unless it succeeded.")
    ] = False,
    url: Annotated[str | None, _url_option] = None,
) -> None:
    """Submit a workflow and print its id."""
    document = _flow_document(target, _flow_params(param))
    with _client(url) as client:
        workflow = client.submit_workflow(document)
        if not wait:
            typer.echo(workflow.id)
            return
        final = _watch_flow(client, workflow.id, until_done=True)
    if final.state.value != "succeeded":
        raise typer.Exit(1)


@flow_app.command("show")
def flow_show(
    workflow_id: Annotated[str, typer.Argument(help="The workflow.", metavar="ID")],
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Refresh until it ends.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="The record as JSON.")] = False,
    url: Annotated[str | None, _url_option] = None,
) -> None:
    """Draw a workflow's steps as a tree: state, attempt, duration, revert."""
    with _client(url) as client:
        if as_json:
            typer.echo(client.workflow(workflow_id).model_dump_json(indent=2))
            return
        _watch_flow(client, workflow_id, until_done=watch)


@flow_app.command("list")
def flow_list(
    all_: Annotated[bool, typer.Option("--all", "-a", help="Finished ones too.")] = False,
    limit: Annotated[int, typer.Option("-n", help="At most this many.")] = 50,
    url: Annotated[str | None, _url_option] = None,
) -> None:
    """List submitted workflows, newest first (unfinished ones unless --all)."""
    from rich.console import Console
    from rich.table import Table

    states = () if all_ else ("running", "reverting", "cancelling")
    with _client(url) as client:
        page = client.workflows(states=states, limit=limit)
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("WORKFLOW ID", "NAME", "STATE", "STEPS", "CREATED"):
        table.add_column(column, no_wrap=True)
    for workflow in page.workflows:
        done = sum(1 for step in workflow.steps if step.state.value == "succeeded")
        table.add_row(
            workflow.id,
            workflow.name,
            workflow.state.value,
            f"{done}/{len(workflow.steps)}",
            _ago(workflow.created_at),
        )
    Console(soft_wrap=False).print(table)


@flow_app.command("ls")
def flow_ls() -> None:
    """List the workflows registered by installed packages (entry point
    group 'jobdock.workflows'), with their parameters."""
    from rich.console import Console
    from rich.table import Table

    from jobdock.registry import registered

    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("NAME", "PARAMETERS", "FACTORY", "SUMMARY"):
        table.add_column(column, overflow="fold")
    for flow in registered():
        params = ", ".join(
            param.name if param.required else f"{param.name}={param.default!r}"
            for param in flow.params
        )
        table.add_row(flow.name, params, flow.target, flow.summary)
    Console(soft_wrap=False).print(table)


@flow_app.command("cancel")
def flow_cancel(
    ids: Annotated[list[str], typer.Argument(help="Workflows to cancel.", metavar="ID...")],
    url: Annotated[str | None, _url_option] = None,
) -> None:
    """Cancel workflows: running steps stop, completed ones are reverted."""
    with _client(url) as client:
        for workflow_id in ids:
            workflow = client.cancel_workflow(workflow_id)
            typer.echo(f"{workflow.id}: {workflow.state.value}")


# -- entry point ----------------------------------------------------------------------


# -- dispatch templates ------------------------------------------------------------

template_app = typer.Typer(
    help="The server's dispatch templates (docs/dispatch.md).", no_args_is_help=True
)
app.add_typer(template_app, name="template")


@template_app.command("ls")
def template_ls(url: Annotated[str | None, _url_option] = None) -> None:
    """List the server's dispatch templates."""
    with _client(url) as client:
        for name in client.templates():
            typer.echo(name)


@template_app.command("test")
def template_test(
    name: Annotated[str, typer.Argument(help="The template.")],
    path: Annotated[str | None, typer.Option(help="$path; default /job/NAME.")] = None,
    query: Annotated[
        list[str] | None, typer.Option("--query", "-q", help="KEY=VALUE in $query; repeatable.")
    ] = None,
    header: Annotated[
        list[str] | None, typer.Option("--header", "-H", help="NAME=VALUE; repeatable.")
    ] = None,
    url: Annotated[str | None, _url_option] = None,
) -> None:
    """Print the spec the server would submit for a request whose JSON body
    is on standard input (empty: null), without submitting it."""
    from jobdock.documents import load_json

    text = sys.stdin.read()
    try:
        body = load_json(text, "standard input") if text.strip() else None
    except InvalidJson as exc:
        _fail(exc.message, 2)
    with _client(url) as client:
        spec = client.test_template(
            name,
            body,
            path=path,
            query=_pairs(query, "--query"),
            headers=_pairs(header, "--header"),
        )
    typer.echo(json.dumps(spec, indent=2))


def _message(exc: JobdockError) -> str:
    """The error's message on one line (drivers' messages span several)."""
    return " ".join(exc.message.split())


def main() -> None:
    """Run the CLI: errors become one line on stderr and an exit status."""
    try:
        app()
    except _Failure as failure:
        sys.stderr.write(f"jobdock: {' '.join(failure.message.split())}\n")
        sys.exit(failure.code)
    except ConfigError as exc:
        sys.stderr.write(f"jobdock: {_message(exc)}\n")
        sys.exit(2)
    except JobdockError as exc:
        sys.stderr.write(f"jobdock: {_message(exc)}\n")
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(EXIT_CANCELLED)
    except Exception as exc:  # a bug in jobdock: still one line, never a traceback
        sys.stderr.write(f"jobdock: internal error: {exc.__class__.__name__}: {exc}\n")
        sys.exit(1)


__all__ = ["app", "exit_code_of", "main"]
