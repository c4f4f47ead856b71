"""The job model: what a user asks for (JobSpec), what jobdock records (Job,
Attempt), and the states a job moves through with their legal transitions.

This module imports nothing from jobdock; everything else builds on it.
"""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)


class JobState(StrEnum):
    """Where a job is in its life. Terminal states never change again."""

    SCHEDULED = "scheduled"
    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})
ACTIVE_STATES = frozenset(
    {JobState.SCHEDULED, JobState.QUEUED, JobState.RUNNING, JobState.RETRYING}
)

#: The one definition of which state may follow which. The store's conditional
#: writes name their expected source states from this table.
TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    # scheduled/queued/retrying -> failed: a deadline passed before it (re)started.
    JobState.SCHEDULED: frozenset({JobState.QUEUED, JobState.CANCELLED, JobState.FAILED}),
    JobState.QUEUED: frozenset({JobState.RUNNING, JobState.CANCELLED, JobState.FAILED}),
    # running -> queued: the attempt's worker was lost and the job is requeued.
    JobState.RUNNING: frozenset(
        {
            JobState.SUCCEEDED,
            JobState.FAILED,
            JobState.CANCELLED,
            JobState.QUEUED,
            JobState.RETRYING,
        }
    ),
    JobState.RETRYING: frozenset({JobState.QUEUED, JobState.CANCELLED, JobState.FAILED}),
    JobState.SUCCEEDED: frozenset(),
    JobState.FAILED: frozenset(),
    JobState.CANCELLED: frozenset(),
}


def can_transition(source: JobState, target: JobState) -> bool:
    """Whether a job in ``source`` may move to ``target``."""
    return target in TRANSITIONS[source]


def sources_of(target: JobState) -> tuple[JobState, ...]:
    """The states from which a job may move to ``target``."""
    return tuple(s for s, targets in TRANSITIONS.items() if target in targets)


class Reason(StrEnum):
    """Why an attempt (and so a job) ended."""

    EXITED = "exited"
    SIGNALED = "signaled"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    SPAWN_ERROR = "spawn_error"
    WORKER_LOST = "worker_lost"
    #: Killed for using more memory than its limit.
    OOM = "oom"
    #: Stopped for writing more output than its limit.
    OUTPUT_LIMIT = "output_limit"
    #: Its container image could not be found or pulled.
    IMAGE_NOT_FOUND = "image_not_found"
    #: Not started (or not finished) by its deadline.
    DEADLINE = "deadline"
    #: Its stored record no longer loads (it was written by an older
    #: jobdock, or by hand); it was not run.
    INVALID_RECORD = "invalid_record"


class Stream(StrEnum):
    """An output stream of a job."""

    STDOUT = "stdout"
    STDERR = "stderr"


STREAM_NUMBERS = {Stream.STDOUT: 1, Stream.STDERR: 2}
STREAMS_BY_NUMBER = {1: Stream.STDOUT, 2: Stream.STDERR}

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


#: The longest duration jobdock takes (100 years): every time it is added
#: to stays a date the store can keep and the API can show.
MAX_DURATION = 100 * 365 * 86400.0
#: The largest size jobdock takes (8 PiB): an exact integer in JSON and in
#: the store's 64-bit columns.
MAX_SIZE = 1 << 53


def parse_duration(value: str | float | int) -> float:
    """Seconds from a number of seconds or a string like ``90``, ``1.5s``,
    ``10m``, ``1h30m`` or ``500ms``, at most :data:`MAX_DURATION`. Raises
    ValueError naming the problem."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError("a duration must be a number of seconds or a string like '10m'")
    if isinstance(value, int | float):
        # An int too large for a float is longer than any duration taken.
        seconds = float(value) if abs(value) <= MAX_DURATION else MAX_DURATION * 2
    else:
        text = value.strip().lower()
        try:
            seconds = float(text)
        except ValueError:
            pos = 0
            seconds = 0.0
            for match in _DURATION_PART.finditer(text):
                if match.start() != pos:
                    break
                seconds += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
                pos = match.end()
            if pos != len(text) or not text:
                raise ValueError(
                    f"{value!r} is not a duration (use seconds or units ms, s, m, h, d: '1h30m')"
                ) from None
    if seconds != seconds or seconds < 0 or seconds == float("inf"):
        raise ValueError("a duration must be a finite number of seconds, zero or more")
    if seconds > MAX_DURATION:
        raise ValueError(f"a duration must be at most {MAX_DURATION:.0f} seconds (100 years)")
    return seconds


def _duration_or_none(value: Any) -> Any:
    return None if value is None else parse_duration(value)


_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)")
_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(value: str | int | float) -> int:
    """Bytes from a number or a string like ``512``, ``64m``, ``1.5G`` or
    ``256MiB`` (units are powers of 1024, as Docker's), at most
    :data:`MAX_SIZE`. Raises ValueError."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError("a size must be a number of bytes or a string like '64m'")
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError("a size must be a whole number of bytes")
        size = int(value) if abs(value) <= MAX_SIZE else MAX_SIZE + 1
    elif isinstance(value, int):
        size = value
    else:
        match = _SIZE.fullmatch(value.strip().lower())
        if match is None:
            raise ValueError(f"{value!r} is not a size (use bytes or units k, m, g, t: '64m')")
        amount = float(match.group(1)) * _SIZE_UNITS[match.group(2)]
        size = int(amount) if amount <= MAX_SIZE else MAX_SIZE + 1
    if size < 0:
        raise ValueError("a size must not be negative")
    if size > MAX_SIZE:
        raise ValueError(f"a size must be at most {MAX_SIZE} bytes (8 PiB)")
    return size


Duration = Annotated[float, BeforeValidator(parse_duration)]
OptionalDuration = Annotated[float | None, BeforeValidator(_duration_or_none)]

Size = Annotated[int, BeforeValidator(parse_size)]


#: The reasons a retry policy may name: every way an attempt can fail.
RetryReason = Literal[
    "exited",
    "signaled",
    "timeout",
    "oom",
    "output_limit",
    "spawn_error",
    "image_not_found",
    "worker_lost",
]

_DEFAULT_RETRY_REASONS: tuple[RetryReason, ...] = ("exited", "signaled", "timeout", "oom")


class Backoff(BaseModel):
    """The wait before retry n: ``initial * multiplier**(n-1)``, at most
    ``max``, then moved by up to ``jitter`` (a fraction) either way."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    initial: Duration = Field(1.0, description="Wait before the first retry, e.g. '1s'.")
    multiplier: float = Field(2.0, ge=1.0, le=100.0, description="Growth of the wait per retry.")
    max: Duration = Field(3600.0, description="The longest wait, e.g. '10m'.")
    jitter: float = Field(
        0.1, ge=0.0, le=1.0, description="Random spread of each wait, as a fraction of it."
    )


class RetryPolicy(BaseModel):
    """When and how often a failed job is run again."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_attempts: int = Field(
        3, ge=1, le=1000, description="Attempts in all, the first included, that may fail."
    )
    backoff: Backoff = Field(default_factory=Backoff)
    on_reasons: list[RetryReason] = Field(
        default_factory=lambda: list(_DEFAULT_RETRY_REASONS),
        description="Which failures retry: exited (a non-zero exit), signaled, timeout, oom, "
        "output_limit, spawn_error, image_not_found, worker_lost.",
    )
    on_exit_codes: list[int] | None = Field(
        None, description="Retry an 'exited' failure only for these exit codes (default: any)."
    )
    count_worker_lost: bool = Field(
        False,
        description="Whether an attempt lost with its worker spends an attempt of the budget "
        "(and is retried with backoff); by default it is run again at once, for free, up to "
        "the server's max_lost.",
    )


#: The most cores a job may ask for (the kernel's CFS quota stays in range).
MAX_CPUS = 4096.0
#: The most processes a job may ask for (Linux's highest pid_max).
MAX_PIDS = 1 << 22
#: The largest count a spec may give (a signed 32-bit column).
MAX_COUNT = 2**31 - 1


class Resources(BaseModel):
    """Limits for one attempt of a job; each is unlimited when not given."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cpus: float | None = Field(
        None, gt=0, le=MAX_CPUS, description="CPU time as a number of cores, e.g. 0.5."
    )
    memory: Size | None = Field(None, gt=0, description="Memory in bytes, or '256m', '1g'.")
    pids: int | None = Field(
        None, ge=1, le=MAX_PIDS, description="The most processes/threads at once."
    )
    io_read_bps: Size | None = Field(None, gt=0, description="Disk read bytes per second.")
    io_write_bps: Size | None = Field(None, gt=0, description="Disk write bytes per second.")


#: A worker that can run image jobs offers this label (see JobSpec.requirements).
CONTAINER_LABEL = "jobdock.io/container"

# An image reference as Docker reads it: [registry[:port]/]path[:tag][@digest].
_IMAGE = re.compile(
    r"(?:(?P<registry>[a-zA-Z0-9.-]+(?::[0-9]+)?)/)?"
    r"(?P<path>[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"(?:@(?P<digest>[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-fA-F0-9]{32,}))?"
)
_ENGINE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_CACHE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def normalize_image(reference: str) -> str:
    """The image reference with ':latest' added when it names no tag or
    digest. Raises ValueError for what is not a valid reference."""
    match = _IMAGE.fullmatch(reference)
    if match is None or len(reference) > 512:
        raise ValueError(
            f"{reference!r} is not a valid image reference (like 'busybox', "
            "'registry.example.com:5000/team/app:1.2' or 'app@sha256:...')"
        )
    registry = match.group("registry")
    is_path = registry is not None and not (
        "." in registry or ":" in registry or registry == "localhost"
    )
    # 'library/busybox': the first part is a path component, not a registry;
    # it must then follow the path rules (lower case).
    if is_path and not re.fullmatch(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*", str(registry)):
        raise ValueError(f"{reference!r} is not a valid image reference (use lower case)")
    if match.group("tag") is None and match.group("digest") is None:
        return f"{reference}:latest"
    return reference


class Cache(BaseModel):
    """A named volume kept between runs: the same owner and name get the same
    volume, mounted at ``path``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="1-64 letters, digits, '_', '.' or '-'.")
    path: str = Field(description="Where the cache is mounted in the container (absolute).")

    @field_validator("name")
    @classmethod
    def _name_syntax(cls, value: str) -> str:
        if not _CACHE_NAME.fullmatch(value):
            raise ValueError("must be 1-64 letters, digits, '_', '.' or '-'")
        return value

    @field_validator("path")
    @classmethod
    def _path_absolute(cls, value: str) -> str:
        if not value.startswith("/") or ":" in value or "\0" in value:
            raise ValueError("must be an absolute path without ':'")
        return value


#: The owner of jobs submitted when the server has no authentication.
ANONYMOUS = "anonymous"

_SECRET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
_FILE_NAME = re.compile(r"[A-Za-z0-9._-]{1,255}")


def check_secret_name(name: str) -> str:
    """``name`` if it is a valid secret name; raises ValueError naming the rule."""
    if not _SECRET_NAME.fullmatch(name):
        raise ValueError(
            f"{name!r} is not a secret name (1-63 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit)"
        )
    return name


class SecretRef(BaseModel):
    """A secret of the job's owner, given to the job as an environment
    variable, a file in ``$JOBDOCK_SECRETS_DIR``, or both."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="The name of one of the owner's secrets.")
    env: str | None = Field(None, description="An environment variable to hold the value.")
    file: str | None = Field(
        None, description="A file name in the directory named by $JOBDOCK_SECRETS_DIR."
    )

    @field_validator("name")
    @classmethod
    def _name_syntax(cls, value: str) -> str:
        return check_secret_name(value)

    @field_validator("env")
    @classmethod
    def _env_syntax(cls, value: str | None) -> str | None:
        if value is not None and not _ENV_NAME.fullmatch(value):
            raise ValueError(f"{value!r} is not a valid environment variable name")
        return value

    @field_validator("file")
    @classmethod
    def _file_syntax(cls, value: str | None) -> str | None:
        if value is not None and (not _FILE_NAME.fullmatch(value) or value in (".", "..")):
            raise ValueError(
                f"{value!r} must be a plain file name (letters, digits, '.', '_', '-')"
            )
        return value

    @model_validator(mode="after")
    def _env_or_file(self) -> SecretRef:
        if self.env is None and self.file is None:
            raise ValueError("say how the job gets the secret: env, file or both")
        return self


class RootFilesystem(BaseModel):
    """Run the job in this directory as its root file system."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rootfs: str = Field(description="Absolute path of a directory holding the job's root.")

    @field_validator("rootfs")
    @classmethod
    def _rootfs_absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must be an absolute path")
        return value


class Isolation(BaseModel):
    """Namespaces for a process job: it runs as PID 1 of its own PID
    namespace (with its own /proc), in new mount, UTS and IPC namespaces."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    network: Literal["none", "host"] = Field(
        "none", description="none: a network namespace with only loopback; host: the host's."
    )
    user: str | None = Field(
        None, max_length=256, description="User (name or uid) to run as; default root."
    )
    group: str | None = Field(
        None, max_length=256, description="Group (name or gid); default the user's."
    )
    filesystem: Literal["host", "readonly"] | RootFilesystem = Field(
        "host",
        description="host: the host's file system; readonly: the host's, read-only, with a "
        "private writable /tmp; {rootfs: DIR}: DIR as the root.",
    )


#: The longest kill_grace a spec may give (a server may allow less).
MAX_KILL_GRACE = 86400.0
_CONTAINER_USER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*(?::[A-Za-z0-9_][A-Za-z0-9_.-]*)?")
_LABEL_KEY = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._/-]{0,61}[A-Za-z0-9])?")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _nul_in(value: Any, where: str) -> str | None:
    """The dotted place of the first string holding a NUL byte in ``value``
    (``where`` names ``value`` itself), or None."""
    if isinstance(value, str):
        return where if "\0" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            part = str(key) if _FIELD_PART.fullmatch(str(key)) else None
            found = _nul_in(key, where) or _nul_in(item, f"{where}.{part}" if part else where)
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = _nul_in(item, f"{where}.{index}")
            if found is not None:
                return found
    return None


_FIELD_PART = re.compile(r"[a-z_][a-z0-9_]*")


class JobSpec(BaseModel):
    """What a user asks jobdock to run. Unknown fields are rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    command: list[str] = Field(
        default_factory=list,
        description="The program and its arguments (argv); not run by a shell. For an image "
        "job, the arguments that replace the image's CMD (optional).",
    )
    stdin: str | None = Field(None, description="Text given to the job on its standard input.")
    stdin_base64: str | None = Field(
        None, description="Bytes given to the job on its standard input, base64-encoded."
    )
    env: dict[str, str] = Field(
        default_factory=dict, description="Environment variables, added to the job's base env."
    )
    cwd: str | None = Field(None, description="Absolute working directory; default '/'.")
    timeout: OptionalDuration = Field(
        None, description="Wall-clock limit of one attempt, seconds or '10m'; none by default."
    )
    kill_grace: Duration = Field(
        10.0,
        le=MAX_KILL_GRACE,
        description="Seconds between SIGTERM and SIGKILL on stop or timeout (at most a day).",
    )
    name: str | None = Field(None, max_length=200, description="A name to find the job by.")
    labels: dict[str, str] = Field(default_factory=dict, description="key=value labels.")
    on_worker_lost: Literal["requeue", "fail"] = Field(
        "requeue",
        description="What happens when the worker running the job dies: run it again, or fail.",
    )
    requires: dict[str, str] = Field(
        default_factory=dict,
        description="Labels a worker must have to run the job, e.g. {'gpu': 'nvidia'}.",
    )
    resources: Resources = Field(
        default_factory=Resources, description="Limits on cpu, memory, processes and io."
    )
    image: str | None = Field(
        None,
        description="Run the job as a container of this image; ':latest' is added when no "
        "tag or digest is given.",
    )
    entrypoint: list[str] | None = Field(
        None, description="Replaces the image's ENTRYPOINT (image jobs only)."
    )
    user: str | None = Field(
        None, max_length=256, description="user[:group] inside the container (image jobs only)."
    )
    network: str | None = Field(
        None, description="Container network: 'none', 'bridge', 'host' or a network name."
    )
    container_runtime: str | None = Field(
        None, description="The OCI runtime (e.g. 'runc', 'sysbox-runc'); the server allows which."
    )
    pull: Literal["always", "if-not-present", "never"] = Field(
        "if-not-present", description="When to pull the image before running it."
    )
    caches: list[Cache] = Field(
        default_factory=list,
        description="Named volumes kept between runs of the same owner, mounted at a path.",
    )
    secrets: list[SecretRef] = Field(
        default_factory=list,
        description="The owner's secrets given to the job, as env vars or files.",
    )
    # -- scheduling (docs/scheduling.md) --
    priority: int = Field(
        0, ge=-(2**31), le=2**31 - 1, description="Higher starts first; then submission order."
    )
    run_at: AwareDatetime | None = Field(
        None, description="Start no earlier than this time (RFC 3339 with an offset)."
    )
    allow_past: bool = Field(
        False, description="Accept a run_at in the past (the job is queued at once)."
    )
    retry: RetryPolicy | None = Field(None, description="Run a failed job again; none by default.")
    idempotency_key: str | None = Field(
        None,
        min_length=1,
        max_length=200,
        description="A second submit with the same key returns the first job instead.",
    )
    concurrency_key: str | None = Field(
        None,
        min_length=1,
        max_length=200,
        description="Jobs sharing a key run at most concurrency_limit at once.",
    )
    concurrency_limit: int | None = Field(
        None,
        ge=0,
        le=MAX_COUNT,
        description="The limit of the job's concurrency_key, unless the server configures "
        "one for that key; default 1. 0 pauses starting.",
    )
    queue_timeout: OptionalDuration = Field(
        None, description="Fail with reason 'deadline' if not started this long after it is due."
    )
    total_timeout: OptionalDuration = Field(
        None,
        description="Fail with reason 'deadline' if not finished, retries included, this long "
        "after it is due.",
    )
    keep_for: OptionalDuration = Field(
        None, description="Delete the job and its logs this long after it finished."
    )
    # -- limits and isolation of process jobs (docs/isolation.md) --
    isolation: Isolation | bool | None = Field(
        None,
        description="Namespaces for the job: true or an object to isolate it, false not to; "
        "default: as the server is configured.",
    )
    output_limit: Size | None = Field(
        None, gt=0, description="The most bytes of output (both streams) kept, e.g. '100m'."
    )
    on_output_limit: Literal["stop", "drop"] = Field(
        "stop",
        description="Past output_limit: stop the job (reason output_limit), or drop the rest.",
    )

    @model_validator(mode="before")
    @classmethod
    def _no_nul(cls, data: Any) -> Any:
        # A NUL byte cannot reach an argv, an environment, a path or the
        # store (PostgreSQL's text refuses it); only stdin may hold one.
        if isinstance(data, dict):
            for key, value in data.items():
                where = _nul_in(value, str(key))
                if where is not None and key not in ("stdin", "stdin_base64"):
                    raise ValueError(f"{where}: must not contain NUL bytes")
        return data

    @field_validator("user")
    @classmethod
    def _user_syntax(cls, value: str | None) -> str | None:
        if value is not None and not _CONTAINER_USER.fullmatch(value):
            raise ValueError(f"{value!r} is not user[:group] (names or numeric ids)")
        return value

    @field_validator("command")
    @classmethod
    def _command_has_program(cls, value: list[str]) -> list[str]:
        if value and not value[0]:
            raise ValueError("the program (first element) must not be empty")
        if "\0" in "".join(value):
            raise ValueError("arguments must not contain NUL bytes")
        return value

    @field_validator("image")
    @classmethod
    def _image_reference(cls, value: str | None) -> str | None:
        return None if value is None else normalize_image(value)

    @field_validator("network", "container_runtime")
    @classmethod
    def _engine_name(cls, value: str | None) -> str | None:
        if value is not None and not _ENGINE_NAME.fullmatch(value):
            raise ValueError(f"{value!r} is not a valid name")
        return value

    @field_validator("env")
    @classmethod
    def _env_names(cls, value: dict[str, str]) -> dict[str, str]:
        for key, val in value.items():
            if not _ENV_NAME.fullmatch(key):
                raise ValueError(f"{key!r} is not a valid environment variable name")
            if "\0" in val:
                raise ValueError(f"the value of {key} contains a NUL byte")
        return value

    @field_validator("cwd")
    @classmethod
    def _cwd_absolute(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/"):
            raise ValueError("must be an absolute path")
        return value

    @field_validator("labels", "requires")
    @classmethod
    def _label_syntax(cls, value: dict[str, str]) -> dict[str, str]:
        for key, val in value.items():
            if not _LABEL_KEY.fullmatch(key):
                raise ValueError(
                    f"label key {key!r} must be 1-63 letters, digits, '.', '_', '/' or '-', "
                    "starting and ending with a letter or digit"
                )
            if len(val) > 256:
                raise ValueError(f"the value of label {key!r} is longer than 256 characters")
        return value

    @field_validator("concurrency_key")
    @classmethod
    def _key_syntax(cls, value: str | None) -> str | None:
        if value is not None and not _LABEL_KEY.fullmatch(value):
            raise ValueError(
                "must be 1-63 letters, digits, '.', '_', '/' or '-', "
                "starting and ending with a letter or digit"
            )
        return value

    @field_validator("stdin_base64")
    @classmethod
    def _valid_base64(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                base64.b64decode(value, validate=True)
            except ValueError:
                raise ValueError("is not valid base64") from None
        return value

    @field_validator("secrets")
    @classmethod
    def _distinct_targets(cls, value: list[SecretRef]) -> list[SecretRef]:
        envs = [ref.env for ref in value if ref.env]
        files = [ref.file for ref in value if ref.file]
        for kind, targets in (("env", envs), ("file", files)):
            if len(set(targets)) != len(targets):
                raise ValueError(f"two secrets have the same {kind}")
        return value

    @model_validator(mode="after")
    def _one_stdin(self) -> JobSpec:
        if self.stdin is not None and self.stdin_base64 is not None:
            raise ValueError("give stdin or stdin_base64, not both")
        return self

    @model_validator(mode="after")
    def _command_or_image(self) -> JobSpec:
        # "FIELD: message": the field is named in the error (see
        # submit.describe_error), though the check spans several fields.
        if self.image is None:
            if not self.command:
                raise ValueError("command: give a command, or an image to run")
            for name in ("entrypoint", "user", "network", "container_runtime"):
                if getattr(self, name) is not None:
                    raise ValueError(f"{name}: applies to image jobs only")
            if self.caches:
                raise ValueError("caches: apply to image jobs only")
        elif self.resources.io_read_bps or self.resources.io_write_bps:
            raise ValueError("resources: io limits are not supported for image jobs")
        elif self.isolation not in (None, False):
            raise ValueError(
                "isolation: applies to process jobs only (containers are isolated by the "
                "engine; use network and user)"
            )
        if len({cache.name for cache in self.caches}) != len(self.caches):
            raise ValueError("caches: each cache may be named once")
        return self

    def requirements(self) -> dict[str, str]:
        """The labels a worker must have to run this job: the spec's own
        ``requires``, and a container engine for an image job."""
        if self.image is None:
            return self.requires
        return {**self.requires, CONTAINER_LABEL: "yes"}

    def stdin_bytes(self) -> bytes:
        """The bytes the job reads on its standard input."""
        if self.stdin_base64 is not None:
            return base64.b64decode(self.stdin_base64)
        return (self.stdin or "").encode()

    def without_stdin(self) -> JobSpec:
        """This spec with its input removed (it is stored and shown separately)."""
        if self.stdin is None and self.stdin_base64 is None:
            return self
        return self.model_copy(update={"stdin": None, "stdin_base64": None})


class Attempt(BaseModel):
    """One try at running a job, claimed by one worker under one fencing token."""

    number: int = Field(description="1 for the first attempt; also the attempt's fencing token.")
    worker: str | None = None
    pid: int | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    exit_code: int | None = None
    signal: int | None = None
    reason: Reason | None = None
    message: str | None = None
    stdout_bytes: int = 0
    stderr_bytes: int = 0
    isolation: str | None = Field(
        None, description="How the attempt was confined, e.g. 'cgroup v1+namespaces', or 'none'."
    )
    limits: dict[str, Any] | None = Field(None, description="The limits that applied.")
    peak_memory: int | None = Field(None, description="Peak memory use in bytes.")
    cpu_seconds: float | None = Field(None, description="CPU time used (user and system).")


def _or_empty_spec(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """A record's spec, or an empty one where it does not load: a job or
    schedule stored before today's checks is shown (its message says why;
    see store/records.py), and a client can still read a list holding it."""
    try:
        return handler(value)
    except ValidationError:
        return JobSpec.model_construct()


class Job(BaseModel):
    """The record of a job: its spec, where it is, and how it ended."""

    id: str
    name: str | None = None
    owner: str = Field(ANONYMOUS, description="The user who submitted the job.")
    state: JobState
    labels: dict[str, str] = Field(default_factory=dict)
    spec: JobSpec
    stdin_bytes: int = Field(0, description="Size of the input given on stdin.")
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    exit_code: int | None = None
    signal: int | None = None
    reason: Reason | None = None
    message: str | None = None
    attempt: int = Field(0, description="The number of the latest attempt (0: never started).")
    cancel_requested: bool = False
    next_attempt_at: datetime | None = Field(
        None, description="While retrying: when the next attempt may start."
    )
    attempts: list[Attempt] = Field(default_factory=list)

    @field_validator("spec", mode="wrap")
    @classmethod
    def _spec_as_far_as_it_loads(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        return _or_empty_spec(value, handler)

    @property
    def terminal(self) -> bool:
        return self.state.terminal


class JobPage(BaseModel):
    """One page of a job listing, newest first."""

    jobs: list[Job]
    next_cursor: str | None = Field(
        None, description="Pass as `cursor` to get the next page; null on the last page."
    )


class WorkerRecord(BaseModel):
    """A worker: where it runs, what it offers, and whether it is alive."""

    id: str
    host: str
    labels: dict[str, str]
    concurrency: int
    started_at: datetime
    heartbeat_at: datetime
    stopped_at: datetime | None = None
    state: Literal["alive", "lost", "stopped"] = Field(
        description="lost: no heartbeat for longer than a lease; its jobs go to other workers."
    )
    running: list[str] = Field(
        default_factory=list,
        description="Ids of the jobs it runs; of your own jobs only, unless you are an admin.",
    )
    busy: int = Field(0, description="How many jobs it runs, everyone's.")


class WorkerList(BaseModel):
    """The workers known to the store."""

    workers: list[WorkerRecord]


_SCHEDULE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


class ScheduleSpec(BaseModel):
    """A job to submit at the times of a cron expression (docs/scheduling.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="Unique name: letters, digits, '.', '_', '-'.")
    cron: str = Field(
        max_length=200,
        description="Five fields (minute hour day month weekday), or six with seconds last.",
    )
    tz: str = Field(
        "UTC", max_length=64, description="The IANA time zone the cron fields are read in."
    )
    job: JobSpec = Field(description="The job submitted at each fire time.")
    overlap: Literal["allow", "forbid", "replace"] = Field(
        "allow",
        description="While the previous run is active: start another (allow), skip this "
        "fire (forbid), or stop the previous one and start (replace).",
    )
    catchup: Literal["skip", "once"] = Field(
        "skip",
        description="Fire times missed while no worker ran: skip them, or run once for them.",
    )
    paused: bool = False

    @field_validator("name")
    @classmethod
    def _name_syntax(cls, value: str) -> str:
        if not _SCHEDULE_NAME.fullmatch(value):
            raise ValueError(
                "must be 1-100 letters, digits, '.', '_' or '-', starting with a letter or digit"
            )
        return value

    @field_validator("job")
    @classmethod
    def _job_not_timed(cls, value: JobSpec) -> JobSpec:
        if value.run_at is not None or value.idempotency_key is not None:
            raise ValueError("a schedule's job sets no run_at or idempotency_key of its own")
        return value


class Schedule(ScheduleSpec):
    """A schedule with what jobdock knows of its fire times."""

    owner: str = Field(ANONYMOUS, description="The user who added it; its jobs are theirs.")
    created_at: datetime
    next_fire_at: datetime | None = Field(None, description="The next fire time.")
    last_fire_at: datetime | None = Field(None, description="The latest fire time handled.")
    last_job_id: str | None = Field(None, description="The job of the latest fire time.")

    @field_validator("job", mode="wrap")
    @classmethod
    def _job_as_far_as_it_loads(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        return _or_empty_spec(value, handler)


class ScheduleList(BaseModel):
    """The schedules, by name."""

    schedules: list[Schedule]


class PruneResult(BaseModel):
    """What a prune deleted."""

    deleted: int = Field(description="Finished jobs deleted with their attempts and logs.")


class RunResult(BaseModel):
    """The answer of a synchronous run: the finished job and its output."""

    job: Job
    stdout: str
    stderr: str
    truncated: bool = Field(False, description="True if output was cut at the size limit.")


def timestamp(epoch: float | None) -> datetime | None:
    """A UTC datetime from epoch seconds (the store keeps times as floats)."""
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC)


# -- workflows (docs/workflows.md) ------------------------------------------------------


class WorkflowState(StrEnum):
    """Where a workflow is. ``reverting`` and ``cancelling`` stop its running
    steps, then run the reverts of its completed steps, newest first."""

    RUNNING = "running"
    REVERTING = "reverting"
    CANCELLING = "cancelling"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REVERT_FAILED = "revert_failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return not WORKFLOW_TRANSITIONS[self]


#: Legal moves of a workflow. ``revert_failed`` is final: it waits for a human.
WORKFLOW_TRANSITIONS: dict[WorkflowState, frozenset[WorkflowState]] = {
    WorkflowState.RUNNING: frozenset(
        {WorkflowState.SUCCEEDED, WorkflowState.REVERTING, WorkflowState.CANCELLING}
    ),
    WorkflowState.REVERTING: frozenset({WorkflowState.FAILED, WorkflowState.REVERT_FAILED}),
    WorkflowState.CANCELLING: frozenset({WorkflowState.CANCELLED, WorkflowState.REVERT_FAILED}),
    WorkflowState.SUCCEEDED: frozenset(),
    WorkflowState.FAILED: frozenset(),
    WorkflowState.REVERT_FAILED: frozenset(),
    WorkflowState.CANCELLED: frozenset(),
}


class StepState(StrEnum):
    """Where one step of a workflow is: its job's progress, then its revert's."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    #: Never started: the workflow stopped first.
    SKIPPED = "skipped"
    REVERTING = "reverting"
    REVERTED = "reverted"
    REVERT_FAILED = "revert_failed"


#: Legal moves of a step (pending -> failed: its job spec could not be made).
STEP_TRANSITIONS: dict[StepState, frozenset[StepState]] = {
    StepState.PENDING: frozenset({StepState.RUNNING, StepState.SKIPPED, StepState.FAILED}),
    StepState.RUNNING: frozenset({StepState.SUCCEEDED, StepState.FAILED, StepState.CANCELLED}),
    StepState.SUCCEEDED: frozenset({StepState.REVERTING}),
    StepState.REVERTING: frozenset({StepState.REVERTED, StepState.REVERT_FAILED}),
    StepState.FAILED: frozenset(),
    StepState.CANCELLED: frozenset(),
    StepState.SKIPPED: frozenset(),
    StepState.REVERTED: frozenset(),
    StepState.REVERT_FAILED: frozenset(),
}


def workflow_sources(target: WorkflowState) -> tuple[WorkflowState, ...]:
    """The states from which a workflow may move to ``target``."""
    return tuple(s for s, targets in WORKFLOW_TRANSITIONS.items() if target in targets)


def step_sources(target: StepState) -> tuple[StepState, ...]:
    """The states from which a step may move to ``target``."""
    return tuple(s for s, targets in STEP_TRANSITIONS.items() if target in targets)
