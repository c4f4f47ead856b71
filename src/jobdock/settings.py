"""Settings, read once: flags > environment (``JOBDOCK_*``) > config file > defaults.

Nothing else in jobdock reads ``os.environ``; the CLI builds a Settings and
passes it down. Tests build their own.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
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

from jobdock.client_config import DEFAULT_URL
from jobdock.errors import ConfigError
from jobdock.models import MAX_COUNT, MAX_DURATION, Duration, OptionalDuration, Resources, Size
from jobdock.pool_settings import PoolSettings

#: The bounds of ``job_uids``: above the uids of system and login users,
#: below what 32-bit ids and user namespaces leave (and never -1).
MIN_JOB_UID = 100_000
MAX_JOB_UID = 2**31 - 2
#: An origin as browsers send it: scheme://host[:port], nothing after.
_ORIGIN = re.compile(
    r"https?://[A-Za-z0-9.-]+(?::[0-9]{1,5})?|https?://\[[0-9A-Fa-f:.]+\](?::[0-9]{1,5})?"
)


def _default_home() -> Path:
    data = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local/share")
    return Path(data) / "jobdock"


class RegistryAuth(BaseModel):
    """Credentials for one registry host, used when pulling its images."""

    username: str
    password: SecretStr


class SubmitRate(BaseModel):
    """One user's rate limit on submits (``submit_rate_overrides``)."""

    model_config = ConfigDict(extra="forbid")

    rate: float = Field(ge=0, le=1e6, description="Submits per second (0: no limit).")
    burst: int = Field(0, ge=0, le=1_000_000, description="Submits at once (0: the rate).")


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
    label_checks: dict[str, str] = Field(
        default_factory=dict,
        max_length=64,
        description="A shell command per label (one of labels), asked before the worker "
        "claims a job that requires that label: exit 0 means it can take one now; any other "
        "exit, or no answer within label_check_timeout, means not now (docs/scheduling.md).",
    )
    label_check_timeout: Duration = Field(
        5.0,
        gt=0,
        le=300,
        description="How long a label check may take; one still running is killed and "
        "counts as 'not now'.",
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
    worker_processes: int = Field(
        0,
        ge=0,
        le=64,
        description="jobdock serve: run the worker in this many processes of its own "
        "beside the API's (0: in the API's process). More than one core to use: 1.",
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
    # -- ConJob's /job/run (docs/containers.md#conjobs-interface) --
    conjob_timeout: float | None = Field(
        1800.0,
        gt=0,
        le=MAX_DURATION,
        description="Time limit of a job run through ConJob's /job/run (its maxTimeoutSeconds).",
    )
    conjob_kill_grace: Duration = Field(
        60.0,
        gt=0,
        le=86400,
        description="Seconds between SIGTERM and SIGKILL when a /job/run job times out "
        "(ConJob's maxKillTimeoutSeconds); max_kill_grace where that is less.",
    )
    conjob_max_concurrent_runs: int | None = Field(
        5,
        ge=1,
        le=MAX_COUNT,
        description="Runs of /job/run at once on this server (ConJob's maxConcurrentRuns); "
        "none: no limit.",
    )
    conjob_max_requests_per_second: int | None = Field(
        5,
        ge=1,
        le=MAX_COUNT,
        description="Runs of /job/run started in any one second (ConJob's "
        "maxGlobalRequestsPerSecond); none: no limit.",
    )
    conjob_over_limit: Literal["reject", "queue"] = Field(
        "reject",
        description="A /job/run over a limit: answered 503 REJECTED at once, as ConJob does, "
        "or held until the limits allow it.",
    )
    conjob_container_runtime: str | None = Field(
        None,
        description="The OCI runtime of /job/run's containers (ConJob's CONTAINER_RUNTIME); "
        "one of container_runtimes. None: the engine's default.",
    )
    # -- browsers on other sites (docs/security.md, api/cors.py) --
    cors_origins: list[str] = Field(
        default_factory=list,
        description="Origins (scheme://host[:port], or '*') whose pages may call the API "
        "from a browser, with an API token; none by default.",
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
    tls_min_version: Literal["1.2", "1.3"] = Field(
        "1.3",
        description="The oldest TLS version the server accepts: 1.3 (as tjob requires), "
        "or 1.2 for older clients.",
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
        description="The server's environment variables a template sees in $env (no others); "
        "a name ending in '*' allows every variable with that prefix, e.g. 'JOB_ENV_*'.",
    )
    dispatch_default_template: str | None = Field(
        None, description="The template POST /job (no path) runs, as docker-job-dispatcher does."
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
    # -- rate limits on submits (docs/security.md, "Rate limits") ------------------
    submit_rate: float = Field(
        0.0, ge=0, le=1e6, description="Submits per second each owner may make (0: no limit)."
    )
    submit_burst: int = Field(
        0, ge=0, le=1_000_000, description="Submits an owner may make at once (0: submit_rate)."
    )
    submit_rate_server: float = Field(
        0.0, ge=0, le=1e6, description="Submits per second of all owners together (0: no limit)."
    )
    submit_burst_server: int = Field(
        0, ge=0, le=1_000_000, description="Submits of all owners at once (0: submit_rate_server)."
    )
    submit_rate_overrides: dict[str, SubmitRate] = Field(
        default_factory=dict,
        description="Per user (whose tokens): {rate, burst} instead of submit_rate, e.g. "
        '{"ci-bot" = {rate = 50, burst = 100}}; rate 0: no limit for that user.',
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
    # -- operating it: logs, traces, webhooks (docs/operating.md) ---------------------
    log_format: Literal["human", "json"] = Field(
        "human",
        description="The server's and worker's log lines: one human format, or one "
        "JSON object per line.",
    )
    tracing: bool | None = Field(
        None,
        description="Export OpenTelemetry traces over OTLP; default: on when "
        "OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set (and "
        "OTEL_SDK_DISABLED is not true). The OTEL_* variables configure the exporter.",
    )
    webhook_allow: list[str] = Field(
        default_factory=list,
        max_length=1000,
        description="URL prefixes (scheme://host[:port][/path]) webhooks may be sent to; a "
        "job naming any other is refused (422). Empty: no webhooks.",
    )
    webhooks: list[str] = Field(
        default_factory=list,
        max_length=10,
        description="Webhooks of jobs that name none (the server's default); allowed as given.",
    )
    webhook_secret: SecretStr | None = Field(
        None, description="The HMAC-SHA256 key of webhooks' X-Jobdock-Signature header."
    )
    webhook_tries: int = Field(5, ge=1, le=20, description="Tries per webhook before giving up.")
    webhook_backoff: Duration = Field(
        1.0, gt=0, le=3600, description="Seconds before a webhook's second try; doubled each try."
    )
    webhook_timeout: Duration = Field(
        10.0, gt=0, le=300, description="Seconds one webhook request may take."
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
    pools: list[PoolSettings] = Field(
        default_factory=list,
        max_length=64,
        description="Machine pools ([[pools]]): machines started for jobs that require "
        "their labels, and stopped after (docs/machines.md).",
    )
    # -- docker-job's API (docs/machines.md#docker-jobs-api) --
    dockerjob_api: bool = Field(
        True, description="Serve docker-job's POST /schedule, GET /list and GET /status/{id}."
    )
    dockerjob_pool: str | None = Field(
        None,
        description="The [[pools]] entry whose labels the jobs of docker-job's POST /schedule "
        "require; none: they run on any worker that runs images.",
    )
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
            name: value
            for name, value in os.environ.items()
            if any(_env_allowed(name, pattern) for pattern in self.dispatch_env)
        }

    @property
    def dispatch_env_values(self) -> dict[str, str]:
        """The allow-listed variables of the server's environment that
        templates see as ``$env`` (those that are set)."""
        return dict(self._dispatch_env_values)

    @property
    def tracing_enabled(self) -> bool:
        """Whether traces are exported: ``tracing``, else whether the standard
        OTEL_* environment names an OTLP endpoint (and does not disable the SDK)."""
        if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
            return False
        if self.tracing is not None:
            return self.tracing
        return any(
            os.environ.get(name)
            for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        )

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

    @field_validator("dispatch_env")
    @classmethod
    def _env_patterns(cls, value: list[str]) -> list[str]:
        for pattern in value:
            if not pattern.rstrip("*") or "*" in pattern.rstrip("*"):
                raise ValueError(
                    f"{pattern!r}: give a variable's name, or a prefix and '*' (e.g. 'JOB_ENV_*')"
                )
        return value

    @model_validator(mode="after")
    def _conjob_runtime_allowed(self) -> Settings:
        runtime = self.conjob_container_runtime
        if runtime is not None and runtime not in self.container_runtimes:
            raise ValueError(f"conjob_container_runtime {runtime!r} is not in container_runtimes")
        return self

    @field_validator("cors_origins")
    @classmethod
    def _origins_syntax(cls, value: list[str]) -> list[str]:
        for origin in value:
            if origin != "*" and not _ORIGIN.fullmatch(origin):
                raise ValueError(f"{origin!r} is not an origin (scheme://host[:port]) or '*'")
        return value

    @field_validator("tls_min_version", mode="before")
    @classmethod
    def _tls_version_as_text(cls, value: object) -> object:
        # TOML's tls_min_version = 1.2 is a float.
        return str(value) if isinstance(value, float) else value

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
    def _pool_names_unique(self) -> Settings:
        names = [pool.name for pool in self.pools]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"pools: the name {name!r} is used twice")
        if self.pools and not self.tokens:
            raise ValueError(
                "pools: machines get agent tokens of their own, so [[pools]] needs tokens = true"
            )
        if self.dockerjob_pool is not None and self.dockerjob_pool not in names:
            raise ValueError(f"dockerjob_pool: there is no pool {self.dockerjob_pool!r}")
        return self

    @model_validator(mode="after")
    def _heartbeat_within_lease(self) -> Settings:
        if self.heartbeat_seconds >= self.lease_seconds:
            raise ValueError("heartbeat_seconds must be shorter than lease_seconds")
        return self

    @model_validator(mode="after")
    def _checks_of_offered_labels(self) -> Settings:
        for key, command in self.label_checks.items():
            if key not in self.labels:
                raise ValueError(f"label_checks: {key!r} is not one of this worker's labels")
            if not command.strip() or len(command) > 4096:
                raise ValueError(f"label_checks: the check of {key!r} must be 1-4096 characters")
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


def _env_allowed(name: str, pattern: str) -> bool:
    """Whether ``dispatch_env``'s ``pattern`` (a name, or a prefix and ``*``) allows ``name``."""
    if pattern.endswith("*"):
        return name.startswith(pattern[:-1])
    return name == pattern


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
