"""The job spec ``jobdock run`` submits, built from its options: what to
run, when (scheduling), within which limits and isolation, with which
secrets. A bad option stops the command with exit status 2, in the order
the options are checked here (the first bad one is the one named).

Imports the models and the CLI's own option parsing.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from jobdock.cli.arguments import duration, pairs
from jobdock.cli.exits import fail
from jobdock.models.units import parse_duration

#: Scheduling options that go into the spec as they are (None: not given).
_SCHEDULING = (
    "at",
    "priority",
    "retries",
    "idempotency_key",
    "concurrency_key",
    "concurrency_limit",
)
#: Scheduling options that are durations.
_DEADLINES = ("queue_timeout", "total_timeout", "keep_for")


def spec_of(options: Mapping[str, Any]) -> dict[str, Any]:
    """The spec from ``jobdock run``'s options, by their parameter names."""
    spec: dict[str, Any] = {"command": options["command"] or []}
    spec.update(_scheduling(options))
    spec.update(_confinement(options))
    if options["output_limit"] is not None:
        spec["output_limit"] = options["output_limit"]
        spec["on_output_limit"] = "drop" if options["drop_output"] else "stop"
    if options["interactive"]:
        # Sent as it is read, once the job is submitted (cli/stdin.py).
        spec["stdin_stream"] = True
    spec.update(_program(options))
    return spec


#: The fields whose keys a job file and the options both give are merged
#: (an option's key wins); any other field given as an option replaces the file's.
_MERGED = ("env", "labels", "requires", "resources")


def with_job_file(path: str, options_spec: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """The job file's spec (its variables from this environment, then
    ``overrides``), with the fields the options gave put over it. A bad
    file stops the command with exit status 2 and one line naming it."""
    import os

    from jobdock.jobfiles import JobFileError, load_job_file

    try:
        spec = load_job_file(path, os.environ, overrides)
    except JobFileError as exc:
        fail(exc.message, 2)
    for key, value in options_spec.items():
        if key == "command" and not value:
            continue
        if key in _MERGED and isinstance(spec.get(key), dict):
            spec[key] = {**spec[key], **value}
        else:
            spec[key] = value
    return spec


def _program(options: Mapping[str, Any]) -> dict[str, Any]:
    """The fields saying what runs, and how, that were given."""
    entrypoint = options["entrypoint"]
    fields = {
        "env": pairs(options["env"], "--env"),
        "labels": pairs(options["label"], "--label"),
        "requires": pairs(options["require"], "--require"),
        "cwd": options["workdir"],
        "timeout": duration(options["timeout"], "--timeout"),
        "kill_grace": duration(options["kill_grace"], "--kill-grace"),
        "name": options["name"],
        "on_worker_lost": options["on_worker_lost"],
        "image": options["image"],
        "entrypoint": [entrypoint] if entrypoint is not None else None,
        "pull": options["pull"],
        "container_runtime": options["runtime"],
        "caches": [_cache(item) for item in options["cache"] or ()],
        "secrets": _secret_refs(options["secret"], options["secret_file"]),
    }
    return {key: value for key, value in fields.items() if value}


#: An --at this far in the past is still "now" (as the server's PAST_TOLERANCE).
_PAST_TOLERANCE = 1.0


def parse_at(value: str, now: float, *, allow_past: bool = False) -> str:
    """An RFC 3339 time from ``--at``: one with an offset, or ``+DURATION``
    from ``now``; one in the past only with ``allow_past``. Raises ValueError."""
    if value.startswith("+"):
        moment = datetime.fromtimestamp(now + parse_duration(value[1:])).astimezone()
    else:
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a time like 2026-12-01T10:00:00+01:00") from None
        if moment.tzinfo is None:
            raise ValueError(f"{value!r} has no offset (add one, e.g. +01:00 or Z)")
    if not allow_past and moment.timestamp() < now - _PAST_TOLERANCE:
        raise ValueError(
            f"{moment.isoformat()} is in the past (add --allow-past to start the job at once)"
        )
    return moment.isoformat()


def _scheduling(options: Mapping[str, Any]) -> dict[str, Any]:
    """The scheduling fields of the spec that were given."""
    given = {key: options[key] for key in _SCHEDULING}
    given |= {key: duration(options[key], "--" + key.replace("_", "-")) for key in _DEADLINES}
    spec = {key: value for key, value in given.items() if value is not None}
    if "at" in spec:
        try:
            allow_past = bool(options["allow_past"])
            spec["run_at"] = parse_at(spec.pop("at"), time.time(), allow_past=allow_past)
        except ValueError as exc:
            fail(f"--at: {exc}", 2)
        if allow_past:
            spec["allow_past"] = True
    if "retries" in spec:
        spec["retry"] = {"max_attempts": spec.pop("retries") + 1}
    return spec


def _confinement(options: Mapping[str, Any]) -> dict[str, Any]:
    """The limit and isolation fields of the spec: an image job's network
    and user are the container's; a process job's are its isolation's.
    Options for process jobs only are an error with ``--image``."""
    isolate = options["isolate"]
    process_only = {
        "--io-read-bps": options["io_read_bps"],
        "--io-write-bps": options["io_write_bps"],
        "--isolate" if isolate else "--no-isolate": isolate,
        "--group": options["group"],
        "--readonly": options["readonly"] or None,
        "--rootfs": options["rootfs"],
    }
    resources = {key: options[key] for key in ("cpus", "memory", "pids")}
    spec: dict[str, Any] = {}
    if options["image"] is not None:
        given = [flag for flag, value in process_only.items() if value is not None]
        if given:
            fail(
                f"{given[0]} applies to process jobs only (a container is isolated by its "
                "engine; see --network and --user)",
                2,
            )
        spec |= {"network": options["network"], "user": options["user"]}
    else:
        resources |= {key: options[key] for key in ("io_read_bps", "io_write_bps")}
        isolation = _isolation(options)
        if isolation or isolate:
            spec["isolation"] = isolation or True
        elif isolate is False:
            spec["isolation"] = False
    spec["resources"] = {key: value for key, value in resources.items() if value is not None}
    return {key: value for key, value in spec.items() if value not in (None, {})}


def _isolation(options: Mapping[str, Any]) -> dict[str, Any]:
    isolation: dict[str, Any] = {key: options[key] for key in ("network", "user", "group")}
    if options["rootfs"] is not None:
        isolation["filesystem"] = {"rootfs": options["rootfs"]}
    elif options["readonly"]:
        isolation["filesystem"] = "readonly"
    return {key: value for key, value in isolation.items() if value is not None}


def _secret_refs(env: list[str] | None, files: list[str] | None) -> list[dict[str, str]]:
    refs = [{"name": k, "env": v} for k, v in pairs(env, "--secret").items()]
    refs += [{"name": k, "file": v} for k, v in pairs(files, "--secret-file").items()]
    return refs


def _cache(item: str) -> dict[str, str]:
    name, sep, path = item.partition(":")
    if not sep or not name or not path:
        fail(f"--cache {item!r} is not NAME:PATH", 2)
    return {"name": name, "path": path}
