"""How the server and workers write their log: one format for every line,
jobdock's and uvicorn's alike (uvicorn logs through the root logger, see
``cli/server.py``), either for people (``human``) or one JSON object per
line (``json``, ``--log-format json``).

Every line carries the ids of what it is about, when they are known
(``correlation.py``): ``trace_id`` (the request's X-B3-TraceId), ``job_id``
and ``attempt``.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from jobdock.correlation import current_job, current_trace
from jobdock.settings import Settings

HUMAN = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: The ids a record may carry, from ``extra=`` or the context.
ID_FIELDS = ("trace_id", "job_id", "attempt")


def ids_of(record: logging.LogRecord) -> dict[str, Any]:
    """The ids of a record: those given in ``extra=``, else the context's."""
    ids: dict[str, Any] = {}
    trace, job = current_trace(), current_job()
    if trace is not None:
        ids["trace_id"] = trace.b3
    if job is not None:
        ids["job_id"] = job.job_id
        if job.attempt is not None:
            ids["attempt"] = job.attempt
    for name in ID_FIELDS:
        value = getattr(record, name, None)
        if value is not None:
            ids[name] = value
    return ids


class HumanFormatter(logging.Formatter):
    """``TIME LEVEL LOGGER: MESSAGE [trace=... job=... attempt=...]``."""

    def __init__(self) -> None:
        super().__init__(HUMAN)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ids = ids_of(record)
        if not ids:
            return line
        said = " ".join(f"{name.removesuffix('_id')}={value}" for name, value in ids.items())
        head, newline, rest = line.partition("\n")
        return f"{head} [{said}]{newline}{rest}"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time`` (UTC, ISO 8601), ``level``,
    ``logger``, ``message``, the ids, and ``exception`` (its traceback)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **ids_of(record),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def configure_logging(settings: Settings) -> None:
    """Send every logger's lines to stderr in the settings' format and level."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if settings.log_format == "json" else HumanFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    # uvicorn says its start and stop as "uvicorn.error"; they are no errors.
    logging.getLogger("uvicorn.error").addFilter(_as_uvicorn)
    for noisy in ("alembic", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _as_uvicorn(record: logging.LogRecord) -> bool:
    record.name = "uvicorn"
    return True
