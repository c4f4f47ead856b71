"""jobdock: run Linux processes as jobs behind an HTTP API, a CLI and a library."""

from jobdock.client import AsyncClient, Client
from jobdock.client_errors import (
    Forbidden,
    IllegalTransition,
    InvalidRequest,
    JobNotFound,
    NotFound,
    ScheduleExists,
    ScheduleNotFound,
    SecretNotFound,
    TemplateNotFound,
    Unauthenticated,
    WaitTimeout,
    WorkflowNotFound,
)
from jobdock.errors import (
    ApiError,
    InvalidSpec,
    JobdockError,
    ServerUnreachable,
)
from jobdock.handles import AsyncJobHandle, JobHandle
from jobdock.models import (
    Attempt,
    Flow,
    Job,
    JobPage,
    JobSpec,
    JobState,
    Reason,
    RunResult,
    Stream,
    Workflow,
    WorkflowSpec,
)
from jobdock.sandbox import Sandbox, SandboxResult
from jobdock.tasks import AsyncTask, Task, TaskFailed, TaskRun, task
from jobdock.version import __version__

__all__ = [
    "ApiError",
    "AsyncClient",
    "AsyncJobHandle",
    "AsyncTask",
    "Attempt",
    "Client",
    "Flow",
    "Forbidden",
    "IllegalTransition",
    "InvalidRequest",
    "InvalidSpec",
    "Job",
    "JobHandle",
    "JobNotFound",
    "JobPage",
    "JobSpec",
    "JobState",
    "JobdockError",
    "NotFound",
    "Reason",
    "RunResult",
    "Sandbox",
    "SandboxResult",
    "ScheduleExists",
    "ScheduleNotFound",
    "SecretNotFound",
    "ServerUnreachable",
    "Stream",
    "Task",
    "TaskFailed",
    "TaskRun",
    "TemplateNotFound",
    "Unauthenticated",
    "WaitTimeout",
    "Workflow",
    "WorkflowNotFound",
    "WorkflowSpec",
    "__version__",
    "task",
]
