"""The foundation every layer builds on: what a user asks for, what jobdock
records, and the rules that need nothing but these values.

- ``states``: JobState, Reason, Stream, workflow and step states, and the
  one table of legal transitions of each;
- ``units``: durations and sizes and their bounds;
- ``parts`` and ``spec``: JobSpec and its parts (Resources, RetryPolicy,
  Backoff, Isolation, Cache, SecretRef, ...), and ScheduleSpec;
- ``jobs``: Job, Attempt and the other records the API shows;
- ``records``: what the store takes and gives (NewJob, Claim, LogChunk, ...);
- ``outcome``: how an attempt ended (ExitStatus, Outcome) and the rules
  from one to the other;
- ``access``: tokens, audit entries and secrets as listed;
- ``workflow``: the workflow document (WorkflowSpec, Flow) and its records;
- ``parsing``: a spec from JSON, and pydantic's errors as jobdock's;
- ``base``: the models' base class (each builds its validator on first use).

``from jobdock.models import X`` is the way to reach any of them. Each
name is loaded from its module on first use (PEP 562), so that a module
that needs only ``states`` or ``units`` (the CLI's start-up) does not load
pydantic and every model. The package imports nothing of jobdock's but
jobdock.errors.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jobdock.models.access import (
        AuditEntry,
        AuditPage,
        CreatedToken,
        SecretInfo,
        SecretList,
        StoredToken,
        TokenInfo,
    )
    from jobdock.models.fields import Duration, OptionalDuration, Size
    from jobdock.models.jobs import (
        ANONYMOUS,
        Attempt,
        AttemptInputs,
        Job,
        JobPage,
        PruneResult,
        RunResult,
        Schedule,
        ScheduleList,
        WorkerList,
        WorkerRecord,
    )
    from jobdock.models.outcome import (
        Accounting,
        ExitStatus,
        Outcome,
        describe_exit,
        outcome_of,
    )
    from jobdock.models.parsing import (
        MAX_DEPTH,
        describe_error,
        invalid_spec,
        not_json,
        parse_spec,
        too_deep,
    )
    from jobdock.models.parts import (
        ENV_NAME,
        SECRETS_DIR_ENV,
        Backoff,
        Cache,
        Isolation,
        Resources,
        RetryPolicy,
        RetryReason,
        RootFilesystem,
        SecretRef,
        check_secret_name,
        normalize_image,
    )
    from jobdock.models.records import (
        BUCKETS,
        Advanced,
        Claim,
        FirePlan,
        HeartbeatReply,
        Histogram,
        JobCount,
        Limits,
        LogChunk,
        LogRead,
        LostAttempt,
        NewJob,
        NewStep,
        NewWorkflow,
        Started,
        StdinRead,
        StoreMetrics,
        WorkerInfo,
    )
    from jobdock.models.spec import (
        CONTAINER_LABEL,
        MAX_KILL_GRACE,
        JobSpec,
        ScheduleSpec,
    )
    from jobdock.models.spec_fields import RunFields, StepFields
    from jobdock.models.states import (
        ACTIVE_STATES,
        STEP_TRANSITIONS,
        STREAM_NUMBERS,
        STREAMS_BY_NUMBER,
        TERMINAL_STATES,
        TRANSITIONS,
        WORKFLOW_TRANSITIONS,
        JobState,
        Reason,
        StepState,
        Stream,
        WorkflowState,
        can_transition,
        sources_of,
        step_sources,
        workflow_sources,
    )
    from jobdock.models.units import (
        MAX_COUNT,
        MAX_CPUS,
        MAX_DURATION,
        MAX_PIDS,
        MAX_SIZE,
        parse_duration,
        parse_size,
        timestamp,
    )
    from jobdock.models.workflow import (
        Flow,
        StepSpec,
        Workflow,
        WorkflowPage,
        WorkflowSpec,
        WorkflowStep,
        document,
    )

#: Where each public name lives: the module it is loaded from on first use.
_HOMES = {
    "RunFields": "jobdock.models.spec_fields",
    "StepFields": "jobdock.models.spec_fields",
    "AuditEntry": "jobdock.models.access",
    "AuditPage": "jobdock.models.access",
    "CreatedToken": "jobdock.models.access",
    "SecretInfo": "jobdock.models.access",
    "SecretList": "jobdock.models.access",
    "StoredToken": "jobdock.models.access",
    "TokenInfo": "jobdock.models.access",
    "Duration": "jobdock.models.fields",
    "OptionalDuration": "jobdock.models.fields",
    "Size": "jobdock.models.fields",
    "ANONYMOUS": "jobdock.models.jobs",
    "Attempt": "jobdock.models.jobs",
    "AttemptInputs": "jobdock.models.jobs",
    "Job": "jobdock.models.jobs",
    "JobPage": "jobdock.models.jobs",
    "PruneResult": "jobdock.models.jobs",
    "RunResult": "jobdock.models.jobs",
    "Schedule": "jobdock.models.jobs",
    "ScheduleList": "jobdock.models.jobs",
    "WorkerList": "jobdock.models.jobs",
    "WorkerRecord": "jobdock.models.jobs",
    "Accounting": "jobdock.models.outcome",
    "ExitStatus": "jobdock.models.outcome",
    "Outcome": "jobdock.models.outcome",
    "describe_exit": "jobdock.models.outcome",
    "outcome_of": "jobdock.models.outcome",
    "MAX_DEPTH": "jobdock.models.parsing",
    "describe_error": "jobdock.models.parsing",
    "invalid_spec": "jobdock.models.parsing",
    "not_json": "jobdock.models.parsing",
    "parse_spec": "jobdock.models.parsing",
    "too_deep": "jobdock.models.parsing",
    "Backoff": "jobdock.models.parts",
    "Cache": "jobdock.models.parts",
    "ENV_NAME": "jobdock.models.parts",
    "Isolation": "jobdock.models.parts",
    "Resources": "jobdock.models.parts",
    "RetryPolicy": "jobdock.models.parts",
    "RetryReason": "jobdock.models.parts",
    "RootFilesystem": "jobdock.models.parts",
    "SECRETS_DIR_ENV": "jobdock.models.parts",
    "SecretRef": "jobdock.models.parts",
    "check_secret_name": "jobdock.models.parts",
    "normalize_image": "jobdock.models.parts",
    "Advanced": "jobdock.models.records",
    "BUCKETS": "jobdock.models.records",
    "Claim": "jobdock.models.records",
    "FirePlan": "jobdock.models.records",
    "HeartbeatReply": "jobdock.models.records",
    "Histogram": "jobdock.models.records",
    "JobCount": "jobdock.models.records",
    "Limits": "jobdock.models.records",
    "LogChunk": "jobdock.models.records",
    "LogRead": "jobdock.models.records",
    "LostAttempt": "jobdock.models.records",
    "NewJob": "jobdock.models.records",
    "NewStep": "jobdock.models.records",
    "NewWorkflow": "jobdock.models.records",
    "Started": "jobdock.models.records",
    "StdinRead": "jobdock.models.records",
    "StoreMetrics": "jobdock.models.records",
    "WorkerInfo": "jobdock.models.records",
    "CONTAINER_LABEL": "jobdock.models.spec",
    "JobSpec": "jobdock.models.spec",
    "MAX_KILL_GRACE": "jobdock.models.spec",
    "ScheduleSpec": "jobdock.models.spec",
    "ACTIVE_STATES": "jobdock.models.states",
    "JobState": "jobdock.models.states",
    "Reason": "jobdock.models.states",
    "STEP_TRANSITIONS": "jobdock.models.states",
    "STREAMS_BY_NUMBER": "jobdock.models.states",
    "STREAM_NUMBERS": "jobdock.models.states",
    "StepState": "jobdock.models.states",
    "Stream": "jobdock.models.states",
    "TERMINAL_STATES": "jobdock.models.states",
    "TRANSITIONS": "jobdock.models.states",
    "WORKFLOW_TRANSITIONS": "jobdock.models.states",
    "WorkflowState": "jobdock.models.states",
    "can_transition": "jobdock.models.states",
    "sources_of": "jobdock.models.states",
    "step_sources": "jobdock.models.states",
    "workflow_sources": "jobdock.models.states",
    "MAX_COUNT": "jobdock.models.units",
    "MAX_CPUS": "jobdock.models.units",
    "MAX_DURATION": "jobdock.models.units",
    "MAX_PIDS": "jobdock.models.units",
    "MAX_SIZE": "jobdock.models.units",
    "parse_duration": "jobdock.models.units",
    "parse_size": "jobdock.models.units",
    "timestamp": "jobdock.models.units",
    "Flow": "jobdock.models.workflow",
    "StepSpec": "jobdock.models.workflow",
    "Workflow": "jobdock.models.workflow",
    "WorkflowPage": "jobdock.models.workflow",
    "WorkflowSpec": "jobdock.models.workflow",
    "WorkflowStep": "jobdock.models.workflow",
    "document": "jobdock.models.workflow",
}


def __getattr__(name: str) -> Any:
    """Load a public name from its module on first use, and keep it here."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'jobdock.models' has no attribute {name!r}")
    value = getattr(import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOMES})


__all__ = [
    "ACTIVE_STATES",
    "ANONYMOUS",
    "BUCKETS",
    "CONTAINER_LABEL",
    "ENV_NAME",
    "MAX_COUNT",
    "MAX_CPUS",
    "MAX_DEPTH",
    "MAX_DURATION",
    "MAX_KILL_GRACE",
    "MAX_PIDS",
    "MAX_SIZE",
    "SECRETS_DIR_ENV",
    "STEP_TRANSITIONS",
    "STREAMS_BY_NUMBER",
    "STREAM_NUMBERS",
    "TERMINAL_STATES",
    "TRANSITIONS",
    "WORKFLOW_TRANSITIONS",
    "Accounting",
    "Advanced",
    "Attempt",
    "AttemptInputs",
    "AuditEntry",
    "AuditPage",
    "Backoff",
    "Cache",
    "Claim",
    "CreatedToken",
    "Duration",
    "ExitStatus",
    "FirePlan",
    "Flow",
    "HeartbeatReply",
    "Histogram",
    "Isolation",
    "Job",
    "JobCount",
    "JobPage",
    "JobSpec",
    "JobState",
    "Limits",
    "LogChunk",
    "LogRead",
    "LostAttempt",
    "NewJob",
    "NewStep",
    "NewWorkflow",
    "OptionalDuration",
    "Outcome",
    "PruneResult",
    "Reason",
    "Resources",
    "RetryPolicy",
    "RetryReason",
    "RootFilesystem",
    "RunFields",
    "RunResult",
    "Schedule",
    "ScheduleList",
    "ScheduleSpec",
    "SecretInfo",
    "SecretList",
    "SecretRef",
    "Size",
    "Started",
    "StdinRead",
    "StepFields",
    "StepSpec",
    "StepState",
    "StoreMetrics",
    "StoredToken",
    "Stream",
    "TokenInfo",
    "WorkerInfo",
    "WorkerList",
    "WorkerRecord",
    "Workflow",
    "WorkflowPage",
    "WorkflowSpec",
    "WorkflowState",
    "WorkflowStep",
    "can_transition",
    "check_secret_name",
    "describe_error",
    "describe_exit",
    "document",
    "invalid_spec",
    "normalize_image",
    "not_json",
    "outcome_of",
    "parse_duration",
    "parse_size",
    "parse_spec",
    "sources_of",
    "step_sources",
    "timestamp",
    "too_deep",
    "workflow_sources",
]
