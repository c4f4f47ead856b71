"""Tasks: Python functions run as jobs, as Celery users expect::

    # mytasks.py, importable on the worker
    import jobdock

    @jobdock.task
    def add(x: int, y: int) -> int:
        return x + y

    run = add.submit(2, 3)      # a job on the server
    run.result(timeout=60)      # 5

A task is a one-step workflow whose step is a ``call`` (docs/workflows.md):
the worker runs ``python -m jobdock.call mytasks:add '{"x": 2, "y": 3}'``,
and the value the function returns, printed as JSON on its last line of
stdout, is the step's output and the run's result. So the arguments and the
result must be JSON (a tuple comes back a list), and the function must be
importable by the worker's Python as ``module:name``.
"""

from __future__ import annotations

import inspect
import json
import threading
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, Generic, ParamSpec, Self, TypeVar, cast, overload

from jobdock.client import Client
from jobdock.errors import JobdockError
from jobdock.handles import JobHandle
from jobdock.models import Flow, Stream, Workflow, WorkflowState

P = ParamSpec("P")
R = TypeVar("R")

#: The one step of a task's workflow.
STEP = "call"
#: How much of a failed task's stderr its TaskFailed keeps (the traceback's end).
_STDERR_KEPT = 16 * 1024

_default: Client | None = None
_default_lock = threading.Lock()


def _default_client() -> Client:
    """One client for tasks not bound to one, made from the environment
    (JOBDOCK_URL, JOBDOCK_TOKEN, ...) at the first submit."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Client()
        return _default


class TaskFailed(JobdockError):
    """The task's function raised, or its job failed: ``.error`` says how
    (the step's error), ``.traceback`` is the end of its stderr (the Python
    traceback), ``.workflow`` the finished workflow."""

    code = "task_failed"

    def __init__(self, target: str, workflow: Workflow, traceback: str) -> None:
        step = workflow.steps[0] if workflow.steps else None
        self.workflow = workflow
        self.error = (step.error if step else None) or workflow.error or workflow.state.value
        self.traceback = traceback
        last = traceback.strip().splitlines()[-1:] or [self.error]
        super().__init__(f"task {target} failed: {last[0]}")


class TaskRun(Generic[R]):
    """A submitted call of a task: its workflow's ``id``; ``result()`` waits
    for the function's return value."""

    def __init__(self, task: str, workflow: Workflow, client: Client) -> None:
        self.task = task
        self.id = workflow.id
        self.client = client

    def __repr__(self) -> str:
        return f"<TaskRun {self.task} {self.id}>"

    def workflow(self) -> Workflow:
        """The task's workflow record, read now (``.state``, ``.steps[0]``)."""
        return self.client.workflow(self.id)

    def job(self) -> JobHandle | None:
        """The handle of the job that runs the call (its logs, its exit code),
        once it has started; None before."""
        steps = self.workflow().steps
        job_id = steps[0].job_id if steps else None
        return None if job_id is None else self.client.get(job_id)

    def wait(self, timeout: float | None = None) -> Workflow:
        """Wait until the call has ended and return its workflow record
        (succeeded, failed or cancelled); after ``timeout`` seconds raise
        WaitTimeout (a TimeoutError)."""
        return self.client.wait_workflow(self.id, timeout)

    def result(self, timeout: float | None = None) -> R:
        """Wait until the call has ended and return what the function
        returned (as JSON reads it back); raise TaskFailed if it raised or its
        job failed, WaitTimeout after ``timeout`` seconds."""
        workflow = self.wait(timeout)
        if workflow.state is not WorkflowState.SUCCEEDED:
            raise TaskFailed(self.task, workflow, self._stderr(workflow))
        return cast(R, workflow.steps[0].output)

    def cancel(self) -> Workflow:
        """Stop the call (its job is stopped); returns the workflow record."""
        return self.client.cancel_workflow(self.id)

    def _stderr(self, workflow: Workflow) -> str:
        job_id = workflow.steps[0].job_id if workflow.steps else None
        if job_id is None:
            return ""
        data = b"".join(piece for _, piece in self.client.logs(job_id, stream=Stream.STDERR))
        return data[-_STDERR_KEPT:].decode(errors="replace")


class _Task(Generic[P, R]):
    """What a task of either kind does but be called."""

    def __init__(
        self,
        function: Callable[P, Any],
        *,
        job: Mapping[str, Any] | None = None,
        client: Client | None = None,
    ) -> None:
        _check_parameters(function)
        self.function = function
        self.job = dict(job or {})
        self.client = client
        self.__doc__ = function.__doc__
        self.__name__ = getattr(function, "__name__", "task")
        self.__module__ = function.__module__
        self.__qualname__ = getattr(function, "__qualname__", self.__name__)
        self.__wrapped__ = function

    def __repr__(self) -> str:
        return f"<Task {self.__module__}:{self.__qualname__}>"

    @property
    def target(self) -> str:
        """``module:name``, how the worker finds the function."""
        if self.__module__ == "__main__" or "." in self.__qualname__:
            raise TypeError(
                f"task {self.__qualname__} must be defined at the top of an importable "
                f"module (not in __main__, a class or a function) to run on a worker"
            )
        return f"{self.__module__}:{self.__qualname__}"

    def using(self, client: Client) -> Self:
        """The same task, submitted through ``client``."""
        return type(self)(self.function, job=self.job, client=client)

    def flow(self, *args: P.args, **kwargs: P.kwargs) -> Flow:
        """The one-step workflow that runs this call (to submit it yourself)."""
        arguments = _arguments(self.function, args, kwargs)
        name = self.target.replace(":", ".")[-100:].lstrip(".-_") or "task"
        return Flow(name, concurrency=1).call(STEP, self.target, arguments, **self.job)

    def submit(self, *args: P.args, **kwargs: P.kwargs) -> TaskRun[R]:
        """Run the function with these arguments as a job; returns at once."""
        client = self.client or _default_client()
        workflow = client.submit_workflow(self.flow(*args, **kwargs))
        return TaskRun(self.target, workflow, client)


class Task(_Task[P, R]):
    """A function that can also run as a job: call it as before, or
    ``submit(...)`` it (see :func:`task`); ``submit(...).result()`` is what
    the call returns."""

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Call the function here, in this process (on the worker, the call
        step does this)."""
        result: R = self.function(*args, **kwargs)
        return result


class AsyncTask(_Task[P, R]):
    """A coroutine function that can also run as a job (the worker runs it
    to its end); ``submit(...).result()`` is what it returns."""

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, R]:
        """Call the function here (a coroutine to await)."""
        coroutine: Coroutine[Any, Any, R] = self.function(*args, **kwargs)
        return coroutine


@overload
def task(  # type: ignore[overload-overlap]  # a coroutine function is a callable too
    function: Callable[P, Coroutine[Any, Any, R]], *, job: Mapping[str, Any] | None = None
) -> AsyncTask[P, R]: ...


@overload
def task(function: Callable[P, R], *, job: Mapping[str, Any] | None = None) -> Task[P, R]: ...


@overload
def task(
    function: None = None, *, job: Mapping[str, Any] | None = None
) -> Callable[[Callable[P, R]], Task[P, R]]: ...


def task(
    function: Callable[P, Any] | None = None, *, job: Mapping[str, Any] | None = None
) -> _Task[P, Any] | Callable[[Callable[P, R]], Task[P, R]]:
    """Make a function a :class:`Task`: ``@jobdock.task``, or
    ``@jobdock.task(job={...})`` with fields of its job spec (``env``,
    ``timeout``, ``retry``, ``resources``, ...; for example
    ``{"env": {"PYTHONPATH": "/srv/app"}}`` where the module is not installed
    on the worker)."""
    if function is None:

        def decorate(inner: Callable[P, R]) -> Task[P, R]:
            made: Task[P, R] = _make(inner, job)  # type: ignore[assignment]
            return made

        return decorate
    return _make(function, job)


def _make(function: Callable[P, Any], job: Mapping[str, Any] | None) -> _Task[P, Any]:
    if inspect.iscoroutinefunction(function):
        return AsyncTask(function, job=job)
    return Task(function, job=job)


def _check_parameters(function: Callable[..., Any]) -> None:
    """The call step passes arguments by keyword: refuse what cannot take them."""
    for parameter in inspect.signature(function).parameters.values():
        if parameter.kind in (parameter.POSITIONAL_ONLY, parameter.VAR_POSITIONAL):
            raise TypeError(
                f"task parameter {parameter.name!r} cannot be passed by keyword "
                "(a task's arguments are sent as a JSON object)"
            )


def _arguments(
    function: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]
) -> dict[str, Any]:
    """The call's arguments by name, as JSON gives them back; TypeError as a
    call of the function would raise, or for a value JSON cannot hold."""
    signature = inspect.signature(function)
    bound = signature.bind(*args, **kwargs)
    arguments: dict[str, Any] = {}
    for name, value in bound.arguments.items():
        if signature.parameters[name].kind is inspect.Parameter.VAR_KEYWORD:
            arguments.update(value)
        else:
            arguments[name] = value
    try:
        text = json.dumps(arguments, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"a task's arguments must be JSON: {exc}") from None
    if "{{" in text:
        # The workflow would read it as a {{ reference }}.
        raise ValueError("a task's arguments may not contain '{{'")
    loaded: dict[str, Any] = json.loads(text)
    return loaded
