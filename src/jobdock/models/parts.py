"""The parts of a job spec: its retry policy and backoff, resource limits,
container caches, secret references and process isolation.

Imports only jobdock.models.units and .fields.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from jobdock.models.base import Model
from jobdock.models.fields import Duration, Size
from jobdock.models.units import MAX_CPUS, MAX_PIDS

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


class Backoff(Model):
    """The wait before retry n: ``initial * multiplier**(n-1)``, at most
    ``max``, then moved by up to ``jitter`` (a fraction) either way."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    initial: Duration = Field(1.0, description="Wait before the first retry, e.g. '1s'.")
    multiplier: float = Field(2.0, ge=1.0, le=100.0, description="Growth of the wait per retry.")
    max: Duration = Field(3600.0, description="The longest wait, e.g. '10m'.")
    jitter: float = Field(
        0.1, ge=0.0, le=1.0, description="Random spread of each wait, as a fraction of it."
    )


class RetryPolicy(Model):
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


class Resources(Model):
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


# An image reference as Docker reads it: [registry[:port]/]path[:tag][@digest].
_IMAGE = re.compile(
    r"(?:(?P<registry>[a-zA-Z0-9.-]+(?::[0-9]+)?)/)?"
    r"(?P<path>[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"(?:@(?P<digest>[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-fA-F0-9]{32,}))?"
)
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


class Cache(Model):
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


#: What an environment variable's name may be (of a job's env, or a secret's).
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: The environment variable that names an attempt's directory of secret files.
SECRETS_DIR_ENV = "JOBDOCK_SECRETS_DIR"
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


class SecretRef(Model):
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
        if value is not None and not ENV_NAME.fullmatch(value):
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


class RootFilesystem(Model):
    """Run the job in this directory as its root file system."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rootfs: str = Field(description="Absolute path of a directory holding the job's root.")

    @field_validator("rootfs")
    @classmethod
    def _rootfs_absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must be an absolute path")
        return value


class Isolation(Model):
    """Namespaces for a process job: it runs in its own PID namespace (with
    its own /proc and /dev; an init is PID 1), in new mount, UTS and IPC
    namespaces."""

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
    sandbox: Literal["bwrap", "gvisor"] = Field(
        "bwrap",
        description="bwrap: namespaces of the host's kernel (bubblewrap); gvisor: gVisor's "
        "user-space kernel (runsc do), whose file system is the host's (or the rootfs) under a "
        "private writable overlay, and whose jobs run as root inside it (no user or group).",
    )

    @model_validator(mode="after")
    def _gvisor_gives_what_it_can(self) -> Isolation:
        if self.sandbox != "gvisor":
            return self
        for name in ("user", "group"):
            if getattr(self, name) is not None:
                raise ValueError(
                    f"{name}: sandbox gvisor runs the job as root inside its own kernel; "
                    f"it takes no {name}"
                )
        if self.filesystem == "host" and "filesystem" in self.model_fields_set:
            raise ValueError(
                "filesystem: sandbox gvisor never writes to the host's file system: "
                "use readonly (its writes go to a private overlay) or {rootfs: DIR}"
            )
        return self
