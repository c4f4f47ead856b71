"""The tables of the job store, as SQLAlchemy Core objects.

Times are epoch seconds (floats): portable between SQLite and PostgreSQL and
cheap to compare. The Alembic migrations under ``migrations/`` create exactly
these tables; a test checks that the two agree.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    false,
)

metadata = MetaData()

#: SQLite only autoincrements an INTEGER PRIMARY KEY; PostgreSQL wants BIGINT.
_SEQ = BigInteger().with_variant(Integer(), "sqlite")

jobs = Table(
    "jobs",
    metadata,
    Column("seq", _SEQ, primary_key=True, autoincrement=True),
    Column("id", String(32), nullable=False, unique=True),
    Column("name", String(200)),
    Column("state", String(16), nullable=False),
    Column("spec", Text, nullable=False),
    Column("labels", JSON, nullable=False),
    Column("stdin", LargeBinary),
    Column("stdin_bytes", Integer, nullable=False, default=0),
    Column("on_worker_lost", String(16), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("started_at", Float),
    Column("finished_at", Float),
    Column("exit_code", Integer),
    Column("signal", Integer),
    Column("reason", String(16)),
    Column("message", Text),
    # The number of the latest attempt; it is also that attempt's fencing token.
    Column("attempt", Integer, nullable=False, default=0),
    Column("worker_id", String(64)),
    Column("lease_expires_at", Float),
    Column("cancel_requested", Boolean, nullable=False, default=False),
    # A stop that kills at once, without the grace (migration 0009).
    Column("kill_requested", Boolean, nullable=False, default=False, server_default=false()),
    Column("lost_count", Integer, nullable=False, default=0),
    # Labels a worker must have to claim the job (JSON object), or NULL.
    Column("requires", JSON),
    # Who submitted the job: a user name from a token or a client certificate.
    Column("owner", String(128), nullable=False, server_default="anonymous"),
    # -- scheduling (migration 0004, docs/scheduling.md) --
    Column("priority", Integer, nullable=False, default=0, server_default="0"),
    # Scheduled: its run_at; retrying: when the next attempt may start.
    Column("not_before", Float),
    Column("idempotency_key", String(200)),
    Column("concurrency_key", String(200)),
    Column("concurrency_limit", Integer),
    # Deadlines (epoch): start by (queue_timeout), finish by (total_timeout).
    Column("start_by", Float),
    Column("finish_by", Float),
    Column("keep_for", Float),
    # Failed attempts that spent the retry budget.
    Column("failures", Integer, nullable=False, default=0, server_default="0"),
    # -- operating (migration 0014, docs/operating.md) --
    # The submit request's X-B3-TraceId, and the traceparent its attempts continue.
    Column("trace_id", String(32)),
    Column("traceparent", String(64)),
    # Set while the job's webhooks are owed: 0 until it ends; then, while a
    # server delivers them, the end of that server's claim on the delivery.
    Column("hooks_due", Float),
    Index("ix_jobs_state_seq", "state", "seq"),
    Index("ix_jobs_name", "name"),
    Index("ix_jobs_worker", "worker_id"),
)

# The new indexes are partial, so that a job costs an index entry (and a
# page written at commit) only where it needs one.
#: The claim's order: highest priority first, then submission order.
Index("ix_jobs_claim", jobs.c.state, jobs.c.priority.desc(), jobs.c.seq)
#: One job per owner and idempotency key: a key is its owner's own (ON
#: CONFLICT names this index's columns and condition).
IDEMPOTENT = jobs.c.idempotency_key.is_not(None)
Index(
    "ux_jobs_idempotency_key",
    jobs.c.owner,
    jobs.c.idempotency_key,
    unique=True,
    sqlite_where=IDEMPOTENT,
    postgresql_where=IDEMPOTENT,
)
#: Finished jobs by age, for retention.
Index(
    "ix_jobs_finished",
    jobs.c.finished_at,
    sqlite_where=jobs.c.finished_at.is_not(None),
    postgresql_where=jobs.c.finished_at.is_not(None),
)
#: Jobs waiting for a time: ``not_before`` is set exactly while a job is
#: scheduled or retrying (every move out of those states clears it), so
#: this small partial index finds the due ones.
Index(
    "ix_jobs_due",
    jobs.c.not_before,
    sqlite_where=jobs.c.not_before.is_not(None),
    postgresql_where=jobs.c.not_before.is_not(None),
)
#: Jobs whose webhooks are owed.
Index(
    "ix_jobs_hooks_due",
    jobs.c.hooks_due,
    sqlite_where=jobs.c.hooks_due.is_not(None),
    postgresql_where=jobs.c.hooks_due.is_not(None),
)
#: Jobs under a concurrency key: counted and claimed under the limits.
Index(
    "ix_jobs_key",
    jobs.c.state,
    jobs.c.concurrency_key,
    sqlite_where=jobs.c.concurrency_key.is_not(None),
    postgresql_where=jobs.c.concurrency_key.is_not(None),
)

attempts = Table(
    "attempts",
    metadata,
    Column("job_id", String(32), primary_key=True),
    Column("number", Integer, primary_key=True),
    Column("worker_id", String(64)),
    Column("host", String(255)),
    Column("pid", Integer),
    # The process's start time in clock ticks since boot, so that a pid that
    # was reused by an unrelated process is never signalled.
    Column("pid_start", BigInteger),
    Column("started_at", Float),
    Column("finished_at", Float),
    Column("exit_code", Integer),
    Column("signal", Integer),
    Column("reason", String(16)),
    Column("message", Text),
    Column("stdout_bytes", BigInteger, nullable=False, default=0),
    Column("stderr_bytes", BigInteger, nullable=False, default=0),
    # How the attempt was confined ('cgroup v1+namespaces', 'none'), the
    # limits that applied (JSON object) and what it used.
    Column("isolation", String(32)),
    Column("limits", JSON),
    Column("peak_memory", BigInteger),
    Column("cpu_seconds", Float),
    # What the attempt really ran (models.AttemptInputs as JSON: the image's
    # digest, command, env names, stdin's hash...), written when it started.
    Column("inputs", JSON),
    # The cluster engine's job that runs the attempt (a Slurm job id), and
    # what the engine last said of it ('PENDING (Resources)').
    Column("engine_job", String(64)),
    Column("engine_state", String(255)),
    Index("ix_attempts_host_finished", "host", "finished_at"),
    # A pool's machine's attempts, by its agent's worker id (migration 0019).
    Index("ix_attempts_worker", "worker_id"),
)

log_chunks = Table(
    "log_chunks",
    metadata,
    Column("job_id", String(32), primary_key=True),
    Column("attempt", Integer, primary_key=True),
    # Order of arrival across both streams.
    Column("seq", Integer, primary_key=True),
    Column("stream", SmallInteger, nullable=False),
    # Byte offsets just past this chunk: in its own stream, and in both streams merged.
    Column("end_offset", BigInteger, nullable=False),
    Column("merged_end", BigInteger, nullable=False),
    Column("data", LargeBinary, nullable=False),
    # When the chunk arrived (seconds since the epoch); NULL before migration 0010.
    Column("at", Float),
    Index("ix_log_chunks_stream", "job_id", "attempt", "stream", "end_offset"),
)

# The stdin of a job submitted with stdin_stream (migration 0011), in the
# pieces it arrived in, kept until the job finishes: every attempt reads it
# from the start. The last row of a closed input has ``eof`` set.
stdin_chunks = Table(
    "stdin_chunks",
    metadata,
    Column("job_id", String(32), primary_key=True),
    Column("seq", Integer, primary_key=True),
    # Bytes of the input up to the end of this piece.
    Column("end_offset", BigInteger, nullable=False),
    Column("data", LargeBinary, nullable=False),
    Column("eof", Boolean, nullable=False, default=False),
)

workers = Table(
    "workers",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("host", String(255), nullable=False),
    Column("labels", JSON, nullable=False),
    Column("concurrency", Integer, nullable=False),
    Column("started_at", Float, nullable=False),
    Column("heartbeat_at", Float, nullable=False),
    Column("stopped_at", Float),
)

# -- users: tokens, secrets and the audit log (migration 0003) -------------------

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("user_name", String(128), nullable=False),
    Column("admin", Boolean, nullable=False),
    # sha256 of the whole token (hex); the token itself is never stored.
    Column("hash", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float),
    Column("revoked_at", Float),
    # The token's own rate limit on submits (api/rates.py); NULL: its user's.
    Column("submit_rate", Float),
    Column("submit_burst", Integer),
    # An agent token (migration 0018) reaches the agent routes only.
    Column("agent", Boolean, nullable=False, server_default=false()),
)

user_secrets = Table(
    "secrets",
    metadata,
    Column("owner", String(128), primary_key=True),
    Column("name", String(64), primary_key=True),
    # Encrypted with the server's secret key (Fernet: AES-128-CBC + HMAC-SHA256).
    Column("value", LargeBinary, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("seq", _SEQ, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False),
    Column("actor", String(128), nullable=False),
    Column("action", String(32), nullable=False),
    # The job, token or secret acted on.
    Column("target", String(200), nullable=False),
)

schedules = Table(
    "schedules",
    metadata,
    # Names are per owner (migration 0009): one user's names tell nothing of,
    # and take nothing from, another's.
    Column("name", String(100), primary_key=True),
    # Who added the schedule: its jobs are theirs.
    Column("owner", String(128), primary_key=True, server_default="anonymous"),
    Column("cron", String(200), nullable=False),
    Column("tz", String(64), nullable=False),
    # The JobSpec of every fire, as JSON.
    Column("spec", Text, nullable=False),
    Column("overlap", String(16), nullable=False),
    Column("catchup", String(16), nullable=False),
    Column("paused", Boolean, nullable=False, default=False),
    Column("created_at", Float, nullable=False),
    Column("next_fire_at", Float),
    Column("last_fire_at", Float),
    Column("last_job_id", String(32)),
)

# -- workflows (migration 0006, docs/workflows.md) -------------------------------

workflows = Table(
    "workflows",
    metadata,
    Column("seq", _SEQ, primary_key=True, autoincrement=True),
    Column("id", String(32), nullable=False, unique=True),
    Column("name", String(100), nullable=False),
    # Who submitted it: its steps' jobs are theirs.
    Column("owner", String(128), nullable=False),
    Column("state", String(16), nullable=False),
    # The parameters it was submitted with (JSON object).
    Column("params", Text, nullable=False),
    Column("concurrency", Integer, nullable=False),
    Column("created_at", Float, nullable=False),
    # When a process last moved it on.
    Column("advanced_at", Float),
    Column("finished_at", Float),
    Column("error", Text),
    # How many times a failed round may run again, and the round it is in
    # (migration 0013).
    Column("retries", Integer, nullable=False, server_default="0"),
    Column("round", Integer, nullable=False, server_default="1"),
    Index("ix_workflows_state", "state"),
    Index("ix_workflows_owner_seq", "owner", "seq"),
)

workflow_steps = Table(
    "workflow_steps",
    metadata,
    Column("workflow_id", String(32), primary_key=True),
    Column("name", String(64), primary_key=True),
    # Its place in the document: ready steps start in this order.
    Column("position", Integer, nullable=False),
    # JSON: the names of the steps it needs; its job and revert (job specs
    # with the parameters in, outputs still to fill in), the revert or NULL.
    Column("needs", Text, nullable=False),
    Column("action", Text, nullable=False),
    Column("revert", Text),
    Column("state", String(16), nullable=False),
    Column("job_id", String(32)),
    Column("revert_job_id", String(32)),
    # The last line of its job's stdout, as JSON, once it succeeded.
    Column("output", Text),
    # 1, 2, ...: the order in which steps succeeded; reverts run backwards.
    Column("completed", Integer),
    Column("error", Text),
)

#: The earlier rounds of a workflow, each failed and reverted (migration
#: 0013): its error and its steps as they ended (JSON, WorkflowStep records).
workflow_rounds = Table(
    "workflow_rounds",
    metadata,
    Column("workflow_id", String(32), primary_key=True),
    Column("number", Integer, primary_key=True),
    Column("error", Text),
    Column("ended_at", Float, nullable=False),
    Column("steps", Text, nullable=False),
)

# -- what deleted jobs contributed to the metrics (migration 0007, docs/metrics.md) --

#: Deleted jobs by the dimensions of the job counters. ``labels`` is the
#: jobs' whole label object, so that the counters can be cut by whichever
#: labels ``metrics_job_labels`` names at a later scrape; ``key`` is the
#: sha256 of (state, reason, runtime, labels), one row each.
metrics_tally_jobs = Table(
    "metrics_tally_jobs",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("state", String(16), nullable=False),
    Column("reason", String(16)),
    Column("runtime", String(16), nullable=False),
    Column("labels", JSON, nullable=False),
    Column("jobs", BigInteger, nullable=False),
    Column("started", BigInteger, nullable=False),
)

#: Deleted attempts and histogram observations: (``attempts``, reason),
#: (``retries``, ''), and (``queue_wait`` or ``run_duration``, a bucket's
#: bound, ``count`` or ``sum``).
metrics_tally = Table(
    "metrics_tally",
    metadata,
    Column("metric", String(32), primary_key=True),
    Column("label", String(32), primary_key=True),
    Column("value", Float, nullable=False),
)

# -- job identities (migration 0008, docs/security.md "Job identities") --

#: The uid each owner's process jobs run as (with a group of the same
#: number), allocated once from ``job_uids`` and kept, so that every worker
#: sharing the store runs an owner's jobs as the same uid.
job_identities = Table(
    "job_identities",
    metadata,
    Column("owner", String(128), primary_key=True),
    Column("uid", BigInteger, nullable=False, unique=True),
)

#: Each try of each webhook of a job (migration 0014): the delivery log.
webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("seq", _SEQ, primary_key=True, autoincrement=True),
    Column("job_id", String(32), nullable=False),
    Column("url", Text, nullable=False),
    Column("try_number", Integer, nullable=False),
    Column("at", Float, nullable=False),
    # The receiver's HTTP status, or NULL when none answered.
    Column("status", Integer),
    Column("ok", Boolean, nullable=False),
    Column("error", Text),
    Column("seconds", Float, nullable=False),
    Index("ix_webhook_deliveries_job", "job_id", "seq"),
)

# -- machine pools: machines started for jobs (migration 0019) -------------------

# One row per machine the autoscaler started (docs/machines.md); ended ones
# stay for ``jobdock machines --since``.
machines = Table(
    "machines",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("pool", String(40), nullable=False),
    Column("state", String(16), nullable=False),
    Column("provider_id", String(255)),
    Column("token_id", String(64)),
    Column("jobs_done", Integer, nullable=False, default=0),
    Column("requested_at", Float, nullable=False),
    Column("booted_at", Float),
    Column("last_busy_at", Float),
    Column("stopping_at", Float),
    Column("stopped_at", Float),
    Column("error", Text),
    Column("server", String(255)),
    Index("ix_machines_pool_state", "pool", "state"),
)

# What the autoscaler last decided for each pool, and its back-off.
machine_pools = Table(
    "machine_pools",
    metadata,
    Column("name", String(40), primary_key=True),
    Column("failures", Integer, nullable=False, default=0),
    Column("backoff_until", Float),
    Column("last_error", Text),
    Column("last_decision", Text),
    Column("decided_at", Float),
)

# Named leases among the API servers sharing the store: the one holder of
# ``autoscaler`` acts; taken or renewed with one conditional UPDATE.
leases = Table(
    "leases",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("holder", String(255), nullable=False),
    Column("expires_at", Float, nullable=False),
)
