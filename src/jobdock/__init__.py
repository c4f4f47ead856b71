"""jobdock: run Linux processes as jobs behind an HTTP API, a CLI and a library."""

from jobdock.client import AsyncClient, Client
from jobdock.errors import (
    ApiError,
    IllegalTransition,
    InvalidSpec,
    JobdockError,
    JobNotFound,
    ServerUnreachable,
)
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
from jobdock.version import __version__

__all__ = [
    "ApiError",
    "AsyncClient",
    "Attempt",
    "Client",
    "Flow",
    "IllegalTransition",
    "InvalidSpec",
    "Job",
    "JobNotFound",
    "JobPage",
    "JobSpec",
    "JobState",
    "JobdockError",
    "Reason",
    "RunResult",
    "Sandbox",
    "SandboxResult",
    "ServerUnreachable",
    "Stream",
    "Workflow",
    "WorkflowSpec",
    "__version__",
]
