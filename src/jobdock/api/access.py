"""``/v1/me``, ``/v1/secrets``, ``/v1/tokens`` and ``/v1/audit``: who you are,
your secrets, and what administrators manage."""

from __future__ import annotations

import time
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field

from jobdock.api.auth import principal, require_admin
from jobdock.api.context import settings_of, store_of
from jobdock.api.errors import JSON_BODY, responses
from jobdock.auth import check_rate, check_user_name, create_token
from jobdock.errors import (
    Forbidden,
    InvalidRequest,
    RequestTooLarge,
    SecretNotFound,
    SecretsUnavailable,
    TokenNotFound,
)
from jobdock.identities import warning as identities_warning
from jobdock.models import Duration, check_secret_name, timestamp
from jobdock.models.access import AuditPage, CreatedToken, SecretInfo, SecretList, TokenInfo
from jobdock.vault import MAX_SECRET_BYTES, Vault

router = APIRouter(prefix="/v1")


def _secret_name(name: str) -> str:
    try:
        return check_secret_name(name)
    except ValueError as exc:
        raise InvalidRequest(f"name: {exc}", field="name") from None


# -- who am I ------------------------------------------------------------------------


class Identity(BaseModel):
    """The user a request acts for, and how the server knew."""

    name: str
    admin: bool = Field(description="Sees and acts on every user's jobs.")
    auth: Literal["none", "token", "certificate"] = Field(
        description="'none': the server has no authentication (everyone is this user)."
    )
    warning: str | None = Field(
        None,
        description="To admins only: how this server's configuration weakens the walls "
        "between users' jobs (e.g. jobs_as_server), if it does.",
    )


@router.get(
    "/me",
    response_model=Identity,
    response_model_exclude_none=True,  # 'warning' only where there is one
    summary="Who you are",
)
async def whoami(request: Request) -> Identity:
    """Your user name, whether you are an administrator, and how you were
    authenticated (the dashboard shows it, and offers admins every owner)."""
    who = principal(request)
    how: Literal["none", "token", "certificate"] = "none"
    if settings_of(request).auth_enabled:
        how = "token" if "authorization" in request.headers else "certificate"
    said = identities_warning(settings_of(request)) if who.admin else None
    return Identity(name=who.name, admin=who.admin, auth=how, warning=said)


# -- secrets -----------------------------------------------------------------------


@router.put(
    "/secrets/{name}",
    status_code=204,
    summary="Set one of your secrets",
    responses=responses(RequestTooLarge, InvalidRequest, SecretsUnavailable),
    openapi_extra={"requestBody": {"required": True, "content": {"application/octet-stream": {}}}},
)
async def set_secret(name: str, request: Request) -> Response:
    """Store the request body as the value of your secret ``name``,
    encrypted with the server's key (replacing any earlier value)."""
    await save_secret(request, _secret_name(name))
    return Response(status_code=204)


async def save_secret(request: Request, name: str) -> None:
    """Store the request's body as the caller's secret ``name``, encrypted
    (InvalidRequest when empty or too long)."""
    value = await request.body()
    if not value:
        raise InvalidRequest("the secret's value (the request body) is empty", field="value")
    if len(value) > MAX_SECRET_BYTES:
        raise InvalidRequest(f"the secret is longer than {MAX_SECRET_BYTES} bytes", field="value")
    vault: Vault = request.app.state.vault
    stored = vault.encrypt(value)
    await store_of(request).set_secret(principal(request).name, name, stored, time.time())


@router.get("/secrets", response_model=SecretList, summary="List your secrets")
async def list_secrets(request: Request) -> SecretList:
    """The names of your secrets and when they were set; never their values."""
    rows = await store_of(request).list_secrets(principal(request).name)
    return SecretList(
        secrets=[
            SecretInfo(name=name, created_at=timestamp(created), updated_at=timestamp(updated))
            for name, created, updated in rows
        ]
    )


@router.delete(
    "/secrets/{name}",
    status_code=204,
    summary="Delete one of your secrets",
    responses=responses(SecretNotFound),
)
async def delete_secret(name: str, request: Request) -> Response:
    """Delete your secret ``name``; jobs that reference it fail to start."""
    await store_of(request).delete_secret(principal(request).name, name, time.time())
    return Response(status_code=204)


# -- tokens (admins) -----------------------------------------------------------------


class TokenRequest(BaseModel):
    """A token to create."""

    user: str
    admin: bool = False
    expires: Duration | None = Field(None, description="Valid for this long, e.g. '30d'.")
    submit_rate: float | None = Field(
        None,
        ge=0,
        le=1e6,
        description="The token's own submits per second (0: no limit), not its user's.",
    )
    submit_burst: int | None = Field(
        None, ge=1, le=1_000_000, description="The token's submits at once (default: the rate)."
    )


class TokenList(BaseModel):
    """Every API token, without the tokens themselves."""

    tokens: list[TokenInfo]


@router.post(
    "/tokens",
    status_code=201,
    response_model=CreatedToken,
    summary="Create a token",
    responses=responses(*JSON_BODY, Forbidden, InvalidRequest),
)
async def new_token(body: TokenRequest, request: Request) -> CreatedToken:
    """Create an API token (admins only). The token is in this answer and
    nowhere else: the server keeps only its hash."""
    who = require_admin(request)
    try:
        check_user_name(body.user)
    except ValueError as exc:
        raise InvalidRequest(f"user: {exc}", field="user") from None
    try:
        check_rate(body.submit_rate, body.submit_burst)
    except ValueError as exc:
        raise InvalidRequest(str(exc), field="submit_rate") from None
    return await create_token(
        store_of(request),
        body.user,
        admin=body.admin,
        expires_in=body.expires,
        actor=who.name,
        submit_rate=body.submit_rate,
        submit_burst=body.submit_burst,
    )


@router.get(
    "/tokens", response_model=TokenList, summary="List tokens", responses=responses(Forbidden)
)
async def list_tokens(request: Request) -> TokenList:
    """Every API token (admins only): ids, users, expiry and revocation."""
    require_admin(request)
    return TokenList(tokens=await store_of(request).list_tokens())


@router.post(
    "/tokens/{token_id}/revoke",
    status_code=204,
    summary="Revoke a token",
    responses=responses(Forbidden, TokenNotFound),
)
async def revoke_token(token_id: str, request: Request) -> Response:
    """Revoke a token for good (admins only)."""
    who = require_admin(request)
    await store_of(request).revoke_token(token_id, time.time(), who.name)
    return Response(status_code=204)


# -- audit (admins) -------------------------------------------------------------------


@router.get(
    "/audit",
    response_model=AuditPage,
    summary="Read the audit log",
    responses=responses(Forbidden, InvalidRequest),
)
async def audit(
    request: Request,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    cursor: str | None = Query(None, pattern=r"^\d{1,18}$"),
) -> AuditPage:
    """Who submitted and who stopped which job, and who changed tokens and
    secrets; newest first (admins only)."""
    require_admin(request)
    return await store_of(request).list_audit(limit=limit, cursor=cursor)
