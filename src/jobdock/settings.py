"""Settings, read once: flags > environment (``JOBDOCK_*``) > config file > defaults.

Nothing else in jobdock reads ``os.environ``; the CLI builds a Settings and
passes it down. Tests build their own.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from jobdock.errors import ConfigError
from jobdock.models import Resources, Size

DEFAULT_URL = "http://127.0.0.1:8080"


def _default_home() -> Path:
    data = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local/share")
    return Path(data) / "jobdock"


class Settings(BaseSettings):
    """Everything a jobdock server, worker or client is configured with."""

    model_config = SettingsConfigDict(env_prefix="JOBDOCK_", extra="forbid")

    config: Path | None = Field(None, description="A TOML config file (JOBDOCK_CONFIG).")
    home: Path = Field(default_factory=_default_home, description="Where jobdock keeps its data.")
    db: str | None = Field(
        None, description="Store URL; default: the SQLite file $JOBDOCK_HOME/jobdock.db."
    )
    sqlite_synchronous: Literal["OFF", "NORMAL", "FULL", "EXTRA"] = Field(
        "NORMAL",
        description="SQLite's synchronous mode in WAL: NORMAL survives a crash of jobdock, "
        "FULL also a power loss.",
    )
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    url: str = Field(DEFAULT_URL, description="The server a client talks to.")
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    concurrency: int = Field(64, ge=0, description="Jobs a worker runs at once.")
    labels: dict[str, str] = Field(
        default_factory=dict,
        description="Labels a worker offers to jobs that require them (besides arch and host).",
    )
    lease_seconds: float = Field(10.0, gt=0, description="How long a claim lasts unrenewed.")
    heartbeat_seconds: float = Field(3.0, gt=0, description="How often leases are renewed.")
    poll_seconds: float = Field(1.0, gt=0, description="Fallback poll for new jobs and changes.")
    drain_seconds: float = Field(
        10.0, ge=0, description="On shutdown, how long running jobs may finish before release."
    )
    max_lost: int = Field(
        3, ge=0, description="How often a job is requeued after losing its worker before failing."
    )
    max_stdin_bytes: int = Field(64 * 1024 * 1024, ge=0)
    run_output_limit: int = Field(
        16 * 1024 * 1024, ge=0, description="Bytes per stream returned by POST /v1/run."
    )
    job_path: str = Field(
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        description="PATH in a process job's base environment.",
    )

    # -- confinement of process jobs (docs/isolation.md) --
    cgroups: Literal["auto", "v1", "v2", "off"] = Field(
        "auto",
        description="Run each process job in its own cgroup: detect v1/v2, force one, or off.",
    )
    cgroup_parent: str | None = Field(
        None, description="The parent group of the jobs; default jobdock-<hash of home>."
    )
    unisolated: Literal["run", "refuse"] = Field(
        "run",
        description="When limits or isolation a job asks for cannot be enforced here: run it "
        "without (its attempt says isolation 'none'), or refuse it (422).",
    )
    isolate_by_default: bool = Field(
        False, description="Isolate process jobs in namespaces unless their spec says otherwise."
    )
    allow_host_network: bool = Field(True, description="Whether isolated jobs may ask for it.")
    default_resources: Resources = Field(
        default_factory=Resources, description="Limits of jobs that do not set their own."
    )
    max_resources: Resources = Field(
        default_factory=Resources, description="The most a job may ask for; 422 above."
    )
    default_output_limit: Size | None = Field(None, gt=0)
    max_output_limit: Size | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _heartbeat_within_lease(self) -> Settings:
        if self.heartbeat_seconds >= self.lease_seconds:
            raise ValueError("heartbeat_seconds must be shorter than lease_seconds")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        config_file = init_settings().get("config") or env_settings().get("config")
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if config_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(config_file)))
        return tuple(sources)

    @property
    def db_url(self) -> str:
        """The SQLAlchemy URL of the store."""
        if self.db:
            return self.db
        return f"sqlite:///{self.home / 'jobdock.db'}"


def load_settings(**flags: Any) -> Settings:
    """Build Settings from flags (None means not given), env and config file.

    Raises ConfigError with a one-line message on bad values.
    """
    given = {key: value for key, value in flags.items() if value is not None}
    config = given.get("config") or os.environ.get("JOBDOCK_CONFIG")
    if config and not Path(config).is_file():
        raise ConfigError(f"config file {config} does not exist")
    try:
        return Settings(**given)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "settings"
        raise ConfigError(f"invalid setting {where}: {first['msg']}") from None
