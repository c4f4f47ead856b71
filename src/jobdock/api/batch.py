"""``POST /v1/jobs/batch``: many jobs in one request, created in order, all
or none (docs/api.md). Each spec is checked as a single submit checks it
(the server's policy, the owner's secrets, its idempotency key), and the
first that fails is answered 422 naming its index (``jobs.3.command``)
with nothing created. A batch of n jobs spends n of the owner's submit
rate (api/rates.py); the body is bounded as every request's is
(``max_request_body``) and holds at most 1000 specs.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from starlette.datastructures import State

from jobdock.api.auth import principal
from jobdock.api.context import policy_of, store_of, waiting_of
from jobdock.api.errors import responses
from jobdock.api.jobs import SUBMIT_ERRORS
from jobdock.api.rates import take_batch
from jobdock.api.submit_path import DirectRoute
from jobdock.errors import RateLimited
from jobdock.models import MAX_BATCH, JobList, parse_batch
from jobdock.rates import OwnerAndServer
from jobdock.submit import submit_jobs

router = APIRouter(prefix="/v1")

_BATCH_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "title": "JobBatch",
                    "type": "object",
                    "required": ["jobs"],
                    "additionalProperties": False,
                    "properties": {
                        "jobs": {
                            "type": "array",
                            "maxItems": MAX_BATCH,
                            "items": {"$ref": "#/components/schemas/JobSpec"},
                        }
                    },
                }
            }
        },
    }
}


def _limits_of(state: State) -> OwnerAndServer:
    limits: OwnerAndServer = state.submit_limits
    return limits


async def create_jobs(request: Request) -> Response:
    """Store several jobs, in order, and queue them: 201 and the jobs in the
    batch's order (one with an ``idempotency_key`` submitted before is the
    existing job), or an error and none of them."""
    specs = parse_batch(await request.body())
    take_batch(request.scope, _limits_of(request.app.state), len(specs))
    policy = policy_of(request.app.state)
    owner = principal(request).name
    submitted = await submit_jobs(store_of(request), specs, policy, owner)
    jobs = [one.job for one in submitted]
    await waiting_of(request).explain(jobs)
    created = any(one.created for one in submitted) or not submitted
    body = JobList(jobs=jobs).model_dump_json()
    return Response(body, 201 if created else 200, media_type="application/json")


router.add_api_route(
    "/jobs/batch",
    create_jobs,
    methods=["POST"],
    status_code=201,
    response_model=JobList,
    summary="Submit several jobs at once",
    openapi_extra=_BATCH_BODY,
    responses={
        200: {"model": JobList, "description": "Every job's idempotency_key made it before."},
        **SUBMIT_ERRORS,
        **responses(RateLimited),
    },
    route_class_override=DirectRoute,
)
