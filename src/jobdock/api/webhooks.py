"""``GET /v1/jobs/{id}/webhooks``: a job's webhook delivery log (webhooks.py)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from jobdock.api.auth import check_visible, principal
from jobdock.api.context import store_of
from jobdock.api.errors import responses
from jobdock.errors import AmbiguousReference, JobNotFound
from jobdock.models.jobs import WebhookDeliveries

router = APIRouter(prefix="/v1")


@router.get(
    "/jobs/{job_id}/webhooks",
    response_model=WebhookDeliveries,
    summary="A job's webhook deliveries",
    responses=responses(JobNotFound, AmbiguousReference),
)
async def job_webhooks(job_id: str, request: Request) -> WebhookDeliveries:
    """Every try of each of the job's webhooks, oldest first: when, the
    receiver's status, whether it took it, and why not."""
    store = store_of(request)
    job_id = await check_visible(store, principal(request), job_id)
    return WebhookDeliveries(deliveries=await store.list_deliveries(job_id))
