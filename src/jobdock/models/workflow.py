"""Workflows as a user writes them and as jobdock shows them: the document
(WorkflowSpec and its StepSpecs, also built in Python with Flow) and the
records of a workflow and its steps (docs/workflows.md).

Imports only jobdock.errors (through parsing) and its siblings.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Unpack

from pydantic import ConfigDict, Field, ValidationError, field_validator

from jobdock.models.base import Model
from jobdock.models.jobs import ANONYMOUS
from jobdock.models.parsing import invalid_spec
from jobdock.models.states import JobState, StepState, WorkflowState

if TYPE_CHECKING:
    from jobdock.models.spec_fields import StepFields

_STEP_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}")
_WORKFLOW_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_PARAM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: The most times a workflow may be run again after a failed round.
MAX_RETRIES = 10


class StepSpec(Model):
    """One step: the job it runs, the steps it needs first, and the job that
    undoes it. ``job`` and ``revert`` are job specs; either may instead name a
    Python function, ``{"call": "module:function", "args": {...}}``, with
    other job fields (env, timeout, retry, ...) beside it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="Unique in the workflow: letters, digits, '_' or '-'.")
    job: dict[str, Any] = Field(description="The step's job spec, or a call.")
    revert: dict[str, Any] | None = Field(
        None, description="Run if the workflow fails or is cancelled after this step succeeded."
    )
    needs: list[str] = Field(
        default_factory=list, description="Steps that must succeed before this one starts."
    )

    @field_validator("name")
    @classmethod
    def _name_syntax(cls, value: str) -> str:
        if not _STEP_NAME.fullmatch(value):
            raise ValueError(
                "must be 1-63 letters, digits, '_' or '-', starting with one of the first two"
            )
        return value


class WorkflowSpec(Model):
    """A workflow document: what ``POST /v1/workflows`` takes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="A name to find the workflow by.")
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="Parameters and their values ({{ params.NAME }}); null: must be given.",
    )
    concurrency: int = Field(4, ge=1, le=1000, description="The most steps running at once.")
    retries: int = Field(
        0,
        ge=0,
        le=MAX_RETRIES,
        description="After a round failed and was reverted, run the whole workflow again "
        "from its first steps, up to this many times (TaskFlow's Times around a flow).",
    )
    steps: list[StepSpec] = Field(min_length=1, max_length=500)

    @field_validator("name")
    @classmethod
    def _name_syntax(cls, value: str) -> str:
        if not _WORKFLOW_NAME.fullmatch(value):
            raise ValueError("must be 1-100 letters, digits, '.', '_' or '-'")
        return value

    @field_validator("params")
    @classmethod
    def _param_names(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name in value:
            if not _PARAM_NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not a parameter name (letters, digits, '_')")
        return value

    def with_params(self, values: Mapping[str, Any]) -> WorkflowSpec:
        """This document with some parameters given values."""
        return self.model_copy(update={"params": {**self.params, **values}})


def document(data: Any) -> WorkflowSpec:
    """A workflow document from parsed JSON; raises InvalidSpec naming the
    first bad field."""
    try:
        return WorkflowSpec.model_validate(data)
    except ValidationError as exc:
        raise invalid_spec(exc) from None


class WorkflowStep(Model):
    """A step as it stands, with the jobs that ran it and its revert."""

    name: str
    needs: list[str] = Field(default_factory=list)
    state: StepState
    has_revert: bool = False
    job_id: str | None = Field(None, description="The job that runs the step, once started.")
    job_state: JobState | None = None
    attempt: int = Field(0, description="The step job's latest attempt.")
    started_at: datetime | None = None
    finished_at: datetime | None = None
    revert_job_id: str | None = None
    revert_state: JobState | None = None
    revert_attempt: int = 0
    output: Any = Field(None, description="The last line of its stdout, as JSON.")
    error: str | None = Field(None, description="Why the step failed, or its revert did.")
    completed: int | None = Field(
        None, description="Order in which the step succeeded (1 first); reverts run backwards."
    )


class WorkflowRound(Model):
    """An earlier round of a workflow that failed and was reverted, with its
    steps as they ended."""

    number: int = Field(description="1 for the first round.")
    error: str | None = Field(None, description="Why the round failed.")
    ended_at: datetime
    steps: list[WorkflowStep] = Field(default_factory=list)


class Workflow(Model):
    """The record of a workflow and its steps (those of its current round)."""

    id: str
    name: str
    owner: str = ANONYMOUS
    state: WorkflowState
    params: dict[str, Any] = Field(default_factory=dict)
    concurrency: int
    created_at: datetime
    finished_at: datetime | None = None
    error: str | None = Field(None, description="Why it failed, or which revert failed.")
    retries: int = Field(0, description="How many times a failed round may run again.")
    round: int = Field(1, description="The round it is in: 1, then 2 after a retry, ...")
    steps: list[WorkflowStep] = Field(default_factory=list)
    rounds: list[WorkflowRound] = Field(
        default_factory=list, description="The earlier rounds, each failed and reverted."
    )

    @property
    def terminal(self) -> bool:
        return self.state.terminal


class WorkflowPage(Model):
    """One page of a workflow listing, newest first."""

    workflows: list[Workflow]
    next_cursor: str | None = None


class Flow:
    """Builds a :class:`WorkflowSpec` step by step::

    flow = (
        Flow("deploy", params={"version": None})
        .step("build", ["make", "VERSION={{ params.version }}"], revert=["make", "clean"])
        .call("notify", "myteam.hooks:notify", {"what": "built"}, needs=["build"])
    )
    client.submit_workflow(flow, params={"version": "1.2"})
    """

    def __init__(
        self,
        name: str,
        *,
        params: Mapping[str, Any] | None = None,
        concurrency: int = 4,
        retries: int = 0,
    ) -> None:
        self.name = name
        self.params = dict(params or {})
        self.concurrency = concurrency
        self.retries = retries
        self._steps: list[dict[str, Any]] = []

    def step(
        self,
        name: str,
        command: Sequence[str] | None = None,
        *,
        needs: Sequence[str] = (),
        revert: Sequence[str] | Mapping[str, Any] | None = None,
        **job: Unpack[StepFields],
    ) -> Flow:
        """Add a step that runs ``command`` (other job spec fields as keywords,
        e.g. ``image=``, ``timeout=``, ``retry=``); ``revert`` is a command or
        a whole job spec."""
        action: dict[str, Any] = dict(job)
        if command is not None:
            action["command"] = list(command)
        return self._add(name, action, needs, revert)

    def call(
        self,
        name: str,
        function: str,
        args: Mapping[str, Any] | None = None,
        *,
        needs: Sequence[str] = (),
        revert: Sequence[str] | Mapping[str, Any] | None = None,
        **job: Unpack[StepFields],
    ) -> Flow:
        """Add a step that calls ``function`` ('module:function') with
        ``args`` as keyword arguments, in a Python subprocess on the worker
        (other job spec fields as keywords, as for :meth:`step`)."""
        action: dict[str, Any] = {**job, "call": function, "args": dict(args or {})}
        return self._add(name, action, needs, revert)

    def _add(
        self,
        name: str,
        action: dict[str, Any],
        needs: Sequence[str],
        revert: Sequence[str] | Mapping[str, Any] | None,
    ) -> Flow:
        step: dict[str, Any] = {"name": name, "job": action, "needs": list(needs)}
        if revert is not None:
            step["revert"] = (
                dict(revert) if isinstance(revert, Mapping) else {"command": list(revert)}
            )
        self._steps.append(step)
        return self

    def spec(self) -> WorkflowSpec:
        """The document; raises InvalidSpec naming the first bad field."""
        return document(
            {
                "name": self.name,
                "params": self.params,
                "concurrency": self.concurrency,
                "retries": self.retries,
                "steps": self._steps,
            }
        )
