"""ConJob's secrets: ``POST /secrets?image=NAME:TAG`` stores the body for the
caller and that image; the caller's later ``/job/run`` of that image finds
it read-only at ``/run/build/secrets/secrets``.

ConJob keeps each image's secrets in a Docker volume that any run could
mount; jobdock keeps them as one of the caller's own secrets (encrypted
with the server's key, masked in output, listed by ``GET /v1/secrets``),
named after the image, so another user's run of the same image never sees
them.
"""

from __future__ import annotations

import hashlib
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from pydantic import ValidationError

from jobdock.api.access import save_secret
from jobdock.api.errors import responses
from jobdock.errors import InvalidRequest, RequestTooLarge, SecretsUnavailable
from jobdock.models import SecretRef
from jobdock.models.parts import normalize_image
from jobdock.store.protocol import Store

router = APIRouter(tags=["ConJob"])

#: Where a run's ConJob secrets are mounted, and the file's name in it.
SECRETS_DIR = "/run/build/secrets"
SECRETS_FILE = "secrets"


def secret_name(image: str) -> str:
    """The name of the caller's secret that holds ConJob's secrets of
    ``image`` (a normalized reference): ``conjob-`` and a hash of it."""
    return "conjob-" + hashlib.sha256(image.encode()).hexdigest()[:32]


async def secret_ref(store: Store, owner: str, image: str) -> dict[str, str] | None:
    """The reference that gives a run of ``image`` by ``owner`` their ConJob
    secrets of it, or None when they have stored none."""
    name = secret_name(image)
    names = {row[0] for row in await store.list_secrets(owner)}
    if name not in names:
        return None
    return SecretRef(name=name, file=SECRETS_FILE).model_dump(exclude_none=True)


@router.post(
    "/secrets",
    summary="Store your secrets for an image's ConJob runs",
    response_class=Response,
    responses=responses(InvalidRequest, RequestTooLarge, SecretsUnavailable),
    openapi_extra={"requestBody": {"required": True, "content": {"text/plain": {}}}},
)
async def create_secrets(
    request: Request,
    image: Annotated[str, Query(description="The image, NAME:TAG, whose runs get the secrets.")],
) -> Response:
    """Store the body for your later ``/job/run`` of ``image``: it appears
    read-only at ``/run/build/secrets/secrets`` (replacing any earlier one)."""
    try:
        reference = normalize_image(image)
    except (ValueError, ValidationError) as exc:
        raise InvalidRequest(f"image: {exc}", field="image") from None
    await save_secret(request, secret_name(reference))
    return Response(status_code=200)
