"""``/v1/workflows``: submit, list, read and cancel workflows.

A workflow belongs to the user who submitted it, and so do its steps' jobs;
a user sees only their own (another's is answered as one that does not
exist), an admin everyone's.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from jobdock.api.auth import principal
from jobdock.api.context import planner_of, policy_of, store_of
from jobdock.api.errors import JSON_BODY, responses
from jobdock.errors import IllegalTransition, InvalidRequest, InvalidSpec, WorkflowNotFound
from jobdock.models import WorkflowState
from jobdock.models.workflow import Workflow, WorkflowPage, WorkflowSpec
from jobdock.submit import submit_workflow
from jobdock.workflows import load_document

router = APIRouter(prefix="/v1")


def _document_schema() -> dict[str, Any]:
    """WorkflowSpec's JSON schema with its one definition (StepSpec) inlined:
    the body is read by the route itself (JSON or YAML), so the model is
    nowhere else in the OpenAPI document's components."""
    schema = WorkflowSpec.model_json_schema()
    definitions = schema.pop("$defs", {})
    schema["properties"]["steps"]["items"] = definitions["StepSpec"]
    return schema


_DOCUMENT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            kind: {"schema": _document_schema()}
            for kind in ("application/json", "application/yaml")
        },
    }
}


def _json(workflow: Workflow, status: int = 200) -> Response:
    return Response(workflow.model_dump_json(), status, media_type="application/json")


async def _visible(request: Request, workflow_id: str) -> Workflow:
    """The workflow, if the request's user may see it; else WorkflowNotFound."""
    workflow = await store_of(request).get_workflow(workflow_id)
    if not principal(request).may_see(workflow.owner):
        raise WorkflowNotFound(workflow_id)
    return workflow


@router.post(
    "/workflows",
    status_code=201,
    response_model=Workflow,
    summary="Submit a workflow",
    openapi_extra=_DOCUMENT_BODY,
    responses=responses(*JSON_BODY, InvalidSpec),
)
async def create_workflow(request: Request) -> Response:
    """Check a workflow document (JSON, or YAML with content type
    ``application/yaml``) and start it: 201 and the workflow, its first
    steps' jobs queued. A bad document answers 422 naming the field."""
    kind = request.headers.get("content-type", "")
    spec = load_document(await request.body(), yaml="yaml" in kind)
    state = request.app.state
    workflow = await submit_workflow(
        store_of(request), spec, policy_of(state), principal(request).name, plan=planner_of(state)
    )
    return _json(workflow, 201)


@router.get(
    "/workflows",
    response_model=WorkflowPage,
    summary="List workflows, newest first",
    responses=responses(InvalidRequest),
)
async def list_workflows(
    request: Request,
    state: Annotated[list[WorkflowState], Query()] = [],  # noqa: B006 (FastAPI copies it)
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    cursor: str | None = Query(None, pattern=r"^\d{1,18}$"),
) -> WorkflowPage:
    """Your workflows (an admin's: everyone's) with their steps, newest first."""
    who = principal(request)
    return await store_of(request).list_workflows(
        states=state, owner=None if who.admin else who.name, limit=limit, cursor=cursor
    )


@router.get(
    "/workflows/{workflow_id}",
    response_model=Workflow,
    summary="Get a workflow",
    responses=responses(WorkflowNotFound),
)
async def get_workflow(workflow_id: str, request: Request) -> Workflow:
    """The workflow with each step's state, job, attempt, times and output."""
    return await _visible(request, workflow_id)


@router.post(
    "/workflows/{workflow_id}/cancel",
    response_model=Workflow,
    summary="Cancel a workflow",
    responses=responses(WorkflowNotFound, IllegalTransition),
)
async def cancel_workflow(workflow_id: str, request: Request) -> Workflow:
    """Start no more steps, stop the running ones, revert the completed ones
    (newest first); it ends ``cancelled``. One already stopping is answered
    as it is; a finished one with 409."""
    await _visible(request, workflow_id)
    return await store_of(request).cancel_workflow(
        workflow_id, time.time(), actor=principal(request).name, plan=planner_of(request.app.state)
    )
