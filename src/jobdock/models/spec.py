"""What a user asks for: a job's spec (JobSpec) and a schedule's
(ScheduleSpec), with the checks that span their fields.

Imports only its siblings jobdock.models.parts, .units and .fields.
"""

from __future__ import annotations

import base64
import re
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from jobdock.models.base import Model
from jobdock.models.fields import Duration, OptionalDuration, Size
from jobdock.models.parts import (
    ENV_NAME,
    Cache,
    Isolation,
    Resources,
    RetryPolicy,
    SecretRef,
    normalize_image,
)
from jobdock.models.units import MAX_COUNT

#: A worker that can run image jobs offers this label (see JobSpec.requirements).
CONTAINER_LABEL = "jobdock.io/container"

_ENGINE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
#: The longest kill_grace a spec may give (a server may allow less).
MAX_KILL_GRACE = 86400.0
_CONTAINER_USER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*(?::[A-Za-z0-9_][A-Za-z0-9_.-]*)?")
_LABEL_KEY = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._/-]{0,61}[A-Za-z0-9])?")


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


class JobSpec(Model):
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
    stdin_stream: bool = Field(
        False,
        description="The job's standard input is sent after the submit, as it is read "
        "(POST /v1/jobs/ID/stdin, as `jobdock run -i` does); the job may start before it "
        "arrives, and reads it as it comes.",
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
    secrets_path: str | None = Field(
        None,
        max_length=1024,
        description="Image jobs: where the directory of the job's secret files appears in "
        "the container, read-only (default: the path in $JOBDOCK_SECRETS_DIR).",
    )
    remove_image: bool = Field(
        False,
        description="Image jobs: remove the image from the engine after the run, unless "
        "another container uses it (ConJob's remove_image).",
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
    webhooks: list[Annotated[str, StringConstraints(min_length=1, max_length=2000)]] = Field(
        default_factory=list,
        max_length=10,
        description="URLs POSTed the job's record when it ends (signed, retried); each must "
        "be within the server's webhook_allow. Default: the server's webhooks.",
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

    @field_validator("secrets_path")
    @classmethod
    def _secrets_path_absolute(cls, value: str | None) -> str | None:
        if value is not None and (
            not value.startswith("/") or ":" in value or "\0" in value or value.rstrip("/") == ""
        ):
            raise ValueError("must be an absolute path without ':', not '/'")
        return value

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
            if not ENV_NAME.fullmatch(key):
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
        if self.stdin_stream and (self.stdin is not None or self.stdin_base64 is not None):
            raise ValueError("stdin_stream: give stdin_stream or the stdin itself, not both")
        return self

    @model_validator(mode="after")
    def _command_or_image(self) -> JobSpec:
        # "FIELD: message": the field is named in the error (see
        # parsing.describe_error), though the check spans several fields.
        if self.image is None:
            if not self.command:
                raise ValueError("command: give a command, or an image to run")
            for name in ("entrypoint", "user", "network", "container_runtime", "secrets_path"):
                if getattr(self, name) is not None:
                    raise ValueError(f"{name}: applies to image jobs only")
            if self.remove_image:
                raise ValueError("remove_image: applies to image jobs only")
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


_SCHEDULE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


class ScheduleSpec(Model):
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
