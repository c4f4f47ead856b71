"""PostgreSQL specifics: the engine, and notifications between processes.

Every write that another process may be waiting for announces itself with
``pg_notify`` inside its transaction (delivered only if it commits). Each
store keeps one connection that LISTENs and turns what it hears into the same
in-process events that SQLite's single process raises directly, so workers
wake at once for new jobs and API servers at once for log lines and results
written on other machines.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable

import psycopg
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url

from jobdock.events import Events
from jobdock.store.statements import ANNOUNCEMENTS, CHANNEL

_log = logging.getLogger(__name__)
#: Longest wait between reconnection attempts of the listener.
MAX_BACKOFF = 5.0


def normalize_url(url: str) -> str:
    """``postgresql://`` and ``postgres://`` URLs, told to use psycopg 3."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def make_engine(url: str) -> Engine:
    """An engine for a PostgreSQL database with jobdock's settings."""
    engine = create_engine(url, pool_size=8, pool_pre_ping=True, pool_recycle=3600)

    @event.listens_for(engine, "commit")
    def _send_announcements(conn: Connection) -> None:
        # One statement for all of a transaction's announcements, just before
        # its COMMIT (they are delivered only if it commits).
        messages = conn.info.pop(ANNOUNCEMENTS, None)
        if messages:
            conn.exec_driver_sql(
                "SELECT pg_notify(%s, m) FROM unnest(%s::text[]) AS m",
                (CHANNEL, sorted(messages)),
            )

    @event.listens_for(engine, "rollback")
    def _drop_announcements(conn: Connection) -> None:
        conn.info.pop(ANNOUNCEMENTS, None)

    return engine


def backend_pid(conn: Connection | None) -> int | None:
    """The server process behind a psycopg connection, if it is connected."""
    try:
        return int(conn.connection.dbapi_connection.info.backend_pid)  # type: ignore[union-attr]
    except Exception:
        return None


def dispatch(events: Events, payload: str) -> None:
    """Raise the in-process event that a notification stands for."""
    kind, _, job_id = payload.partition(":")
    if kind == "work":
        events.work_available()
    elif kind == "job":
        events.job_changed(job_id)
    elif kind in ("cancel", "kill"):
        events.cancel_requested(job_id, kill=kind == "kill")
    elif kind == "schedules":
        events.schedules_changed()


class Listener:
    """LISTENs on a connection of its own, on a thread of its own, and
    reconnects with backoff when the database goes away.

    What it hears is coalesced: notifications that arrive before the event
    loop has taken the last ones join them, each payload once (a burst of
    finished jobs wakes a claim loop once, not once per job)."""

    def __init__(self, url: str, events: Events, own_pid: Callable[[], int | None]) -> None:
        self._dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        self._events = events
        # Our own writes raised their events in this process already.
        self._own_pid = own_pid
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._heard: dict[str, None] = {}
        self._heard_lock = threading.Lock()
        self._listening = threading.Event()

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="jobdock-listen", daemon=True)
        self._thread.start()

    async def listening(self, timeout: float) -> bool:
        """Wait (up to ``timeout``) until the listener hears the channel;
        whether it does. The wake-up of its first connection has then been
        raised: what another process writes from here on wakes this one."""
        heard = await asyncio.get_running_loop().run_in_executor(
            None, self._listening.wait, timeout
        )
        await asyncio.sleep(0)  # the connection's wake-up, posted before
        return heard

    async def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._thread.join)

    def _post(self, fn: Callable[[], None]) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(fn)

    def _hear(self, payload: str) -> None:
        with self._heard_lock:
            first = not self._heard
            self._heard[payload] = None
        if first:
            self._post(self._dispatch_heard)

    def _dispatch_heard(self) -> None:
        with self._heard_lock:
            heard, self._heard = self._heard, {}
        for payload in heard:
            dispatch(self._events, payload)

    def _run(self) -> None:
        backoff = 0.1
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._dsn, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    backoff = 0.1
                    # Whatever happened while we were not listening is found by
                    # looking again.
                    self._post(self._events.anything_changed)
                    self._listening.set()
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=0.1):
                            if note.pid != self._own_pid():
                                self._hear(note.payload)
            except psycopg.Error as exc:
                if self._stop.is_set():
                    return
                _log.warning("lost the PostgreSQL notification connection: %s", exc)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
