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
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Any, NoReturn

import typer

from jobdock.client import Client
from jobdock.errors import ApiError, ConfigError, JobdockError
from jobdock.models import ACTIVE_STATES, Job, JobState, Reason, Stream, parse_duration
from jobdock.settings import Settings, load_settings

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


def _client(url: str | None) -> Client:
    return Client(load_settings(url=url).url)


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
    import uvloop

    from jobdock.store.sql import SqlStore
    from jobdock.worker import Worker

    async def run_worker() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signo in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signo, stop.set)
        async with SqlStore(
            settings.db_url, sqlite_synchronous=settings.sqlite_synchronous
        ) as store:
            worker = Worker(store, settings)
            await worker.start()
            await stop.wait()
            logging.getLogger("jobdock").info("worker %s stopping", worker.id)
            await worker.stop()

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
    # The event loop shares the GIL with the writer and spawner threads; a
    # thread that wakes for it waits up to this long (default 5 ms) for a turn.
    # 1 ms cut p50 submit->start latency and raised throughput in bench/.
    sys.setswitchinterval(0.001)


def _serve(settings: Settings, *, embedded_worker: bool = True) -> None:
    import uvicorn

    from jobdock.api.app import create_app

    _configure_logging(settings)
    _check_store(settings)
    config = uvicorn.Config(
        create_app(settings, embedded_worker=embedded_worker),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,
        loop="uvloop",
        http="httptools",
        timeout_graceful_shutdown=2,
        proxy_headers=False,
        server_header=False,
    )
    server = uvicorn.Server(config)
    logging.getLogger("jobdock").info(
        "jobdock serving on http://%s:%d (store %s)", settings.host, settings.port, settings.db_url
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
    command: Annotated[list[str], typer.Argument(help="The program and its arguments.")],
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
    cpus: Annotated[float | None, typer.Option(help="CPU limit in cores, e.g. 0.5.")] = None,
    memory: Annotated[str | None, typer.Option(help="Memory limit, e.g. 256m.")] = None,
    pids: Annotated[int | None, typer.Option(help="The most processes at once.")] = None,
    io_read_bps: Annotated[
        str | None, typer.Option(help="Disk reads per second, e.g. 10m.")
    ] = None,
    io_write_bps: Annotated[
        str | None, typer.Option(help="Disk writes per second, e.g. 10m.")
    ] = None,
    isolate: Annotated[
        bool | None,
        typer.Option(
            "--isolate/--no-isolate",
            help="Run in new namespaces (PID 1, no network); default: as the server says.",
        ),
    ] = None,
    network: Annotated[
        str | None, typer.Option(help="none or host, for an isolated job (implies --isolate).")
    ] = None,
    user: Annotated[str | None, typer.Option(help="User to run as (implies --isolate).")] = None,
    group: Annotated[str | None, typer.Option(help="Group to run as (implies --isolate).")] = None,
    readonly: Annotated[
        bool, typer.Option(help="A read-only view of the host, private /tmp (implies --isolate).")
    ] = False,
    rootfs: Annotated[
        str | None, typer.Option(help="A directory to run in as / (implies --isolate).")
    ] = None,
    output_limit: Annotated[
        str | None, typer.Option(help="The most output kept, e.g. 100m; then stop.")
    ] = None,
    drop_output: Annotated[
        bool, typer.Option(help="Past --output-limit, drop output instead of stopping.")
    ] = False,
    url: Annotated[str | None, _url_option] = None,
) -> None:
    """Run a command as a job: stream its output and exit with its exit code."""
    spec: dict[str, Any] = {"command": command}
    limits = {"cpus": cpus, "memory": memory, "pids": pids}
    limits |= {"io_read_bps": io_read_bps, "io_write_bps": io_write_bps}
    if any(value is not None for value in limits.values()):
        spec["resources"] = {k: v for k, v in limits.items() if v is not None}
    isolation = _isolation(network, user, group, readonly, rootfs)
    if isolation or isolate:
        spec["isolation"] = isolation or True
    elif isolate is False:
        spec["isolation"] = False
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
        url = client.url
        threading.Thread(target=lambda: _quietly_cancel(url, job_id), daemon=True).start()

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
    if job.reason in (Reason.SPAWN_ERROR, Reason.TIMEOUT, Reason.WORKER_LOST):
        sys.stderr.write(f"jobdock: {job.message}\n")
    return exit_code_of(job)


def _quietly_cancel(url: str, job_id: str) -> None:
    try:
        with Client(url) as client:
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
            f"{len(item.running)}/{item.concurrency}",
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
    url: Annotated[str | None, _url_option] = None,
) -> None:
    """Stop jobs (SIGTERM, grace period, SIGKILL); waits until each has ended.

    Queued jobs are cancelled at once. Prints the id of each stopped job.
    """
    failed = False
    with _client(url) as client:
        for job_id in job_ids:
            try:
                job = client.cancel(job_id)
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


# -- entry point ----------------------------------------------------------------------


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
