"""How one attempt of a job executes: a small interface and its implementations."""

from jobdock.models.outcome import ExitStatus
from jobdock.runtimes.base import Execution, Runtime
from jobdock.runtimes.process import ProcessExecution, ProcessRuntime

__all__ = ["Execution", "ExitStatus", "ProcessExecution", "ProcessRuntime", "Runtime"]
