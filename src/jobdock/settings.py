"""Settings, read once: flags > environment (``JOBDOCK_*``) > config file > defaults.

Nothing else in jobdock reads ``os.environ``; the CLI builds a Settings and
passes it down. Tests build their own.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from jobdock.errors import ConfigError
from jobdock.models import MAX_COUNT, MAX_DURATION, Duration, OptionalDuration, Resources, Size

DEFAULT_URL = "http://127.0.0.1:8080"
#: The bounds of ``job_uids``: above the uids of system and login users,
#: below what 32-bit ids and user namespaces leave (and never -1).
MIN_JOB_UID = 100_000
MAX_JOB_UID = 2**31 - 2


def _default_home() -> Path:
    data = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local/share")
    return Path(data) / "jobdock"


class RegistryAuth(BaseModel):
    """Credentials for one registry host, used when pulling its images."""

    username: str
    password: SecretStr


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

    concurrency: int = Field(64, ge=0, le=100_000, description="Jobs a worker runs at once.")
    labels: dict[str, str] = Field(
        default_factory=dict,
        description="Labels a worker offers to jobs that require them (besides arch and host).",
    )
    lease_seconds: float = Field(
        10.0, gt=0, le=86400, description="How long a claim lasts unrenewed."
    )
    heartbeat_seconds: float = Field(
        3.0, gt=0, le=3600, description="How often leases are renewed."
    )
    poll_seconds: float = Field(
        1.0, gt=0, le=3600, description="Fallback poll for new jobs and changes."
    )
    drain_seconds: float = Field(
        10.0,
        ge=0,
        le=86400,
        description="On shutdown, how long running jobs may finish before release.",
    )
    max_lost: int = Field(
        3,
        ge=0,
        le=MAX_COUNT,
        description="How often a job is requeued after losing its worker before failing.",
    )
    max_stdin_bytes: int = Field(64 * 1024 * 1024, ge=0, le=1 << 40)
    max_stdin_stream: Size = Field(
        4 * 1024**3,
        ge=0,
        le=1 << 40,
        description="The most a job's streamed stdin (stdin_stream, `jobdock run -i`) may "
        "hold, e.g. '4GiB' (413 past it); kept in the store until the job finishes.",
    )
    # -- limits on requests (docs/security.md) --
    max_request_body: Size = Field(
        10 * 1024 * 1024,
        ge=1024,
        le=1024**3,
        description="The largest request body the API reads (413 above), e.g. '10MiB'; "
        "it bounds stdin sent in a request too.",
    )
    header_timeout: Duration = Field(
        10.0,
        gt=0,
        le=3600,
        description="Seconds a connection has to send a request's complete head "
        "(method, path, headers); then it is closed.",
    )
    max_connections: int = Field(
        512,
        ge=1,
        le=100_000,
        description="The most connections (and requests in flight) the server serves at "
        "once; more are answered 503. Keep it under the open-files limit.",
    )
    run_output_limit: int = Field(
        16 * 1024 * 1024, ge=0, le=1 << 40, description="Bytes per stream returned by POST /v1/run."
    )
    # -- scheduling (docs/scheduling.md) --
    max_running: int | None = Field(
        None,
        ge=0,
        le=MAX_COUNT,
        description="The most jobs running at once in the whole store; 0 pauses.",
    )
    max_running_per_owner: int | None = Field(
        None,
        ge=0,
        le=MAX_COUNT,
        description="The most jobs of one owner running at once; default unlimited.",
    )
    concurrency_limits: dict[str, int] = Field(
        default_factory=dict,
        description="The most running jobs per concurrency_key (overrides the jobs' own); "
        "counted per owner unless the key is in shared_concurrency_keys.",
    )
    shared_concurrency_keys: list[str] = Field(
        default_factory=list,
        max_length=1000,
        description="Concurrency keys that all owners share (one count for everyone); "
        "every other key counts each owner's jobs apart.",
    )
    keep_finished: OptionalDuration = Field(
        None, description="Delete finished jobs and their logs this long after; default never."
    )
    prune_seconds: float = Field(
        60.0, gt=0, le=MAX_DURATION, description="How often finished jobs are pruned."
    )
    misfire_seconds: float = Field(
        60.0,
        gt=0,
        le=MAX_DURATION,
        description="A schedule's fire time later than this counts as missed.",
    )
    job_path: str = Field(
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        description="PATH in a process job's base environment.",
    )

    namespace: str = Field(
        "default",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$",
        description="Labels this jobdock's containers and volumes, apart from another's.",
    )
    docker_host: str = Field(
        "unix:///var/run/docker.sock",
        validation_alias=AliasChoices("JOBDOCK_DOCKER_HOST", "DOCKER_HOST", "docker_host"),
        description="The container engine (dockerd or podman's API service): unix:///path "
        "or tcp://host:port; DOCKER_HOST is read too.",
    )
    docker_tls_ca: Path | None = Field(None, description="CA certificate of a tcp engine.")
    docker_tls_cert: Path | None = Field(None, description="Client certificate for the engine.")
    docker_tls_key: Path | None = Field(None, description="Client key for the engine.")
    containers: bool = Field(
        True, description="Whether this worker runs image jobs when an engine answers."
    )
    container_init: bool = Field(
        True,
        description="Run an init as the container's PID 1 (docker run --init): stop's SIGTERM "
        "then reaches the job, and orphaned processes are reaped.",
    )
    container_runtimes: list[str] = Field(
        default_factory=lambda: ["runc"],
        description="OCI runtimes a job may name in container_runtime.",
    )
    container_networks: list[str] = Field(
        default_factory=lambda: ["none", "bridge", "default"],
        description="Networks a job may name in network ('host' only if listed).",
    )
    conjob_timeout: float | None = Field(
        1800.0, gt=0, description="Time limit of a job run through ConJob's /job/run."
    )
    registry_auth: dict[str, RegistryAuth] = Field(
        default_factory=dict,
        description="Credentials per registry host (e.g. 'registry.example.com:5000').",
    )
    max_kill_grace: Duration = Field(
        300.0,
        gt=0,
        le=86400,
        description="The longest kill_grace a job may ask for (422 above); jobs stored with "
        "a longer one are given this much between SIGTERM and SIGKILL.",
    )
    # -- confinement of process jobs (docs/isolation.md) --
    cgroups: Literal["auto", "v1", "v2", "off"] = Field(
        "auto",
        description="Run each process job in its own cgroup: detect v1/v2, force one, or off.",
    )
    cgroup_every_job: bool = Field(
        True,
        description="Give every process job a cgroup where the host has them, not only "
        "those with limits or isolation, so that its end kills even children that left "
        "its session. Off: such jobs' leftovers are found by the worker as a child "
        "subreaper instead (docs/security.md).",
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
    # -- users and security (docs/security.md) ---------------------------------

    tokens: bool = Field(
        False, description="Require an API token (Authorization: Bearer) on every request."
    )
    tls_cert: Path | None = Field(None, description="The server's certificate (PEM): serve HTTPS.")
    tls_key: Path | None = Field(None, description="The key of tls_cert (PEM).")
    tls_ca: Path | None = Field(
        None,
        description="Require client certificates issued by this CA (PEM); the user is the "
        "certificate's common name.",
    )
    admins: str = Field(
        "", description="Comma-separated users (certificate names) who are administrators."
    )
    insecure: bool = Field(
        False, description="Allow listening beyond loopback without authentication."
    )
    secret_key: SecretStr | None = Field(
        None, description="The key secrets are encrypted with (`jobdock secrets keygen`)."
    )
    # -- job identities (docs/security.md, "Job identities") -------------------------
    job_uids: str = Field(
        "2000000-2099999",
        pattern=r"^[0-9]{1,10}-[0-9]{1,10}$",
        description="With authentication on, the uids (LOW-HIGH) process jobs run as: one "
        "per owner, with a group of the same number.",
    )
    job_homes: Path = Field(
        Path("/var/lib/jobdock/homes"),
        description="Where each owner's HOME is made (one directory per uid, mode 0700), "
        "outside the server's home.",
    )
    jobs_as_server: bool = Field(
        False,
        description="With authentication on, let jobs run as the server's own user when it "
        "cannot give them identities of their own (it is not root). Every user's job can then "
        "read every other's and the server's secrets: said loudly in the log and /v1/me.",
    )
    job_run_as: dict[str, list[str]] = Field(
        default_factory=dict,
        description="With authentication on, the users and groups (names or ids) an owner's "
        'jobs may name in isolation.user/group, e.g. {"deploy-bot" = ["root"]}; no one '
        "else may name any.",
    )
    container_userns: str | None = Field(
        None,
        pattern=r"^(host|auto|keep-id|private)?(:[A-Za-z0-9=,]{1,64})?$",
        description="HostConfig.UsernsMode of image jobs' containers (podman: 'auto'); "
        "dockerd remaps user namespaces daemon-wide (userns-remap).",
    )
    # -- dispatch templates (docs/dispatch.md) ------------------------------------
    dispatch_templates_dir: Path | None = Field(
        None, description="A directory of NAME.jq files: the dispatch templates."
    )
    dispatch_templates: dict[str, str] = Field(
        default_factory=dict, description="More dispatch templates: name -> jq filter."
    )
    dispatch_env: list[str] = Field(
        default_factory=list,
        description="The server's environment variables a template sees in $env (no others).",
    )
    dispatch_headers: list[str] = Field(
        default_factory=list,
        description="Request headers a template sees in $headers (never Authorization or Cookie).",
    )
    dispatch_timeout: float = Field(
        1.0, gt=0, description="Seconds a template's filter may run (then 400)."
    )
    dispatch_max_bytes: int = Field(
        1024 * 1024, gt=0, description="The largest request body and filter output, in bytes."
    )
    dispatch_processes: int = Field(
        2, ge=1, le=64, description="Child processes that run templates' filters."
    )
    # -- metrics (docs/metrics.md) ---------------------------------------------------
    metrics_job_labels: list[str] = Field(
        default_factory=list,
        description="Job labels whose values become labels (label_KEY) of the job metrics.",
    )
    metrics_token: SecretStr | None = Field(
        None,
        description="With authentication on, a bearer token that may read /metrics "
        "(besides admins), for Prometheus.",
    )
    token: SecretStr | None = Field(None, description="The API token a client sends.")
    ca: Path | None = Field(
        None, description="The CA a client checks the server's certificate with."
    )
    cert: Path | None = Field(None, description="A client's certificate (PEM), for mutual TLS.")
    key: Path | None = Field(None, description="The key of a client's certificate (PEM).")

    # -- the Slurm runtime (issue 24; docs/slurm.md) -----------------------------
    runtime: Literal["process", "slurm"] = Field(
        "process",
        description="What runs a worker's process jobs: this machine ('process') or a "
        "Slurm cluster ('slurm': each attempt submitted with sbatch).",
    )
    slurm_partition: str | None = Field(
        None, max_length=128, description="The partition jobs go to (default: Slurm's own)."
    )
    slurm_account: str | None = Field(None, max_length=128, description="sbatch --account.")
    slurm_qos: str | None = Field(None, max_length=128, description="sbatch --qos.")
    slurm_allowed: dict[str, list[str]] = Field(
        default_factory=dict,
        description="What a job may choose with its labels slurm.partition, slurm.account "
        "and slurm.qos: e.g. {partition = ['main', 'gpu']}; nothing by default.",
    )
    slurm_dir: Path | None = Field(
        None,
        description="Where each attempt's script, stdin, output and exit record are kept: a "
        "directory the submit host and the nodes share (default $JOBDOCK_HOME/slurm).",
    )
    slurm_conf: str | None = Field(
        default_factory=lambda: os.environ.get("SLURM_CONF"),
        description="The slurm.conf the Slurm tools read (default: $SLURM_CONF, else Slurm's).",
    )
    slurm_poll_seconds: float = Field(
        0.25, gt=0, le=60, description="How often the Slurm runtime asks squeue and reads output."
    )

    #: Values of the ``dispatch_env`` variables, read with the settings.
    _dispatch_env_values: dict[str, str] = PrivateAttr(default_factory=dict)

    def model_post_init(self, context: Any, /) -> None:
        self._dispatch_env_values = {
            name: os.environ[name] for name in self.dispatch_env if name in os.environ
        }

    @property
    def dispatch_env_values(self) -> dict[str, str]:
        """The allow-listed variables of the server's environment that
        templates see as ``$env`` (those that are set)."""
        return dict(self._dispatch_env_values)

    @property
    def auth_enabled(self) -> bool:
        """Whether requests must say who they are (tokens or client certificates)."""
        return self.tokens or self.tls_ca is not None

    @property
    def job_identities(self) -> bool:
        """Whether process jobs run as identities of their owners' (with
        authentication on, unless ``jobs_as_server``), not as the server."""
        return self.auth_enabled and not self.jobs_as_server

    @property
    def admin_names(self) -> frozenset[str]:
        """The users named in ``admins``."""
        return frozenset(name.strip() for name in self.admins.split(",") if name.strip())

    @model_validator(mode="after")
    def _tls_files_together(self) -> Settings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key must be given together")
        if self.tls_ca is not None and self.tls_cert is None:
            raise ValueError("tls_ca (client certificates) needs tls_cert and tls_key")
        if (self.cert is None) != (self.key is None):
            raise ValueError("cert and key must be given together")
        return self

    @field_validator("concurrency_limits")
    @classmethod
    def _limits_not_negative(cls, value: dict[str, int]) -> dict[str, int]:
        for key, limit in value.items():
            if not 0 <= limit <= MAX_COUNT:
                raise ValueError(f"the limit of {key!r} must be from 0 to {MAX_COUNT}")
        return value

    @property
    def job_uid_range(self) -> tuple[int, int]:
        """The first and last uid of ``job_uids``."""
        low, _, high = self.job_uids.partition("-")
        return int(low), int(high)

    @field_validator("job_uids")
    @classmethod
    def _uids_bounded(cls, value: str) -> str:
        low, _, high = value.partition("-")
        if not MIN_JOB_UID <= int(low) <= int(high) <= MAX_JOB_UID:
            raise ValueError(f"must be LOW-HIGH with {MIN_JOB_UID} <= LOW <= HIGH <= {MAX_JOB_UID}")
        return value

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
