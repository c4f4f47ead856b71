"""The API's one table of status codes, and the handlers that render every
error as ``{"error": {"code": ..., "message": ...}}``."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException
from starlette.types import Send

from jobdock.errors import (
    AmbiguousReference,
    CannotStart,
    ConfigError,
    CrossOrigin,
    FencedOff,
    Forbidden,
    HeaderTimeout,
    IllegalTransition,
    InvalidJson,
    InvalidRequest,
    InvalidSpec,
    JobdockError,
    JobNotFound,
    NotReady,
    PoolNotFound,
    RateLimited,
    RequestTooLarge,
    ScheduleExists,
    ScheduleNotFound,
    SecretNotFound,
    SecretsUnavailable,
    StdinClosed,
    StdinTooLarge,
    StoreError,
    TemplateFailed,
    TemplateNotFound,
    TemplateSpecInvalid,
    TokenNotFound,
    Unauthenticated,
    WorkflowNotFound,
)
from jobdock.models.parsing import describe_error, too_deep

_log = logging.getLogger(__name__)

#: The HTTP status of each error; the most specific class wins.
STATUS: dict[type[JobdockError], int] = {
    InvalidSpec: 422,
    InvalidRequest: 422,
    InvalidJson: 400,
    RequestTooLarge: 413,
    HeaderTimeout: 408,
    JobNotFound: 404,
    AmbiguousReference: 400,
    ScheduleNotFound: 404,
    ScheduleExists: 409,
    IllegalTransition: 409,
    FencedOff: 409,
    StdinClosed: 409,
    StdinTooLarge: 413,
    StoreError: 503,
    CannotStart: 503,
    ConfigError: 500,
    Unauthenticated: 401,
    Forbidden: 403,
    SecretNotFound: 404,
    TokenNotFound: 404,
    SecretsUnavailable: 501,
    WorkflowNotFound: 404,
    TemplateNotFound: 404,
    TemplateFailed: 400,
    TemplateSpecInvalid: 400,
    RateLimited: 429,
    NotReady: 503,
    PoolNotFound: 404,
}

#: How a client should authenticate, sent with every 401 (RFC 6750).
WWW_AUTHENTICATE = 'Bearer realm="jobdock"'


def headers_of(exc: JobdockError) -> dict[str, str]:
    """The headers that go with the error response for ``exc``."""
    if isinstance(exc, Unauthenticated):
        return {"www-authenticate": WWW_AUTHENTICATE}
    if isinstance(exc, RateLimited):
        return {"retry-after": str(max(1, math.ceil(exc.retry_after)))}
    return {}


_HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
}


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    """The JSON body of an error response."""
    error: dict[str, Any] = {"code": code, "message": message}
    error.update({key: value for key, value in extra.items() if value is not None})
    return {"error": error}


def status_of(exc: JobdockError) -> int:
    """The HTTP status that answers ``exc``."""
    return status_of_class(type(exc))


def status_of_class(error: type[JobdockError]) -> int:
    """The HTTP status that answers errors of class ``error``."""
    for cls in error.__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


# -- the error responses, as the OpenAPI document declares them ----------------------


class ErrorDetail(BaseModel):
    """What went wrong."""

    code: str = Field(description="For programs, e.g. 'not_found' or 'invalid_spec'.")
    message: str = Field(description="For people; names the field at fault.")
    field: str | None = Field(None, description="The field or parameter at fault, if one is.")
    candidates: list[str] | None = Field(
        None, description="The ids an ambiguous job reference matches (ambiguous_reference)."
    )
    retry_after: float | None = Field(
        None, description="Seconds until a retry may pass (rate_limited; as Retry-After)."
    )


class ErrorResponse(BaseModel):
    """The body of every error the API answers."""

    error: ErrorDetail


#: The OpenAPI ``responses`` of a route: status -> description and model.
Responses = dict[int | str, dict[str, Any]]

#: What every route but ``/healthz`` may answer: it is behind authentication
#: (api/auth.py), behind the same-origin check (api/origin.py), and reads the store.
GUARDED: tuple[type[JobdockError], ...] = (Unauthenticated, CrossOrigin, StoreError)
#: What a route that reads a JSON body may answer besides its own errors.
JSON_BODY: tuple[type[JobdockError], ...] = (InvalidJson, RequestTooLarge)


def responses(*raised: type[JobdockError]) -> Responses:
    """The OpenAPI ``responses`` of a route that may raise ``raised``: one
    entry per status, whose description lists the error codes answered with
    it, each with the ``{"error": {...}}`` model. Routes declare the errors
    they answer with this, so that the statuses come from STATUS alone."""
    codes: dict[int, dict[str, str]] = {}
    for cls in raised:
        default = (cls.__doc__ or cls.code).strip().splitlines()[0]
        codes.setdefault(status_of_class(cls), {}).setdefault(cls.code, default)
    return {
        status: {
            "model": ErrorResponse,
            "description": " ".join(f"`{code}`: {text}" for code, text in sorted(found.items())),
        }
        for status, found in sorted(codes.items())
    }


def drop_framework_validation(document: dict[str, Any]) -> dict[str, Any]:
    """Remove the 422 that FastAPI adds to every route with parameters
    (with its own ``HTTPValidationError`` body, which jobdock never sends):
    a route that can answer 422 declares it with :func:`responses`."""
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            answer = operation.get("responses", {}).get("422", {})
            if "HTTPValidationError" in json.dumps(answer):
                del operation["responses"]["422"]
    schemas = document.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    return document


def render_error(exc: JobdockError) -> tuple[int, dict[str, Any]]:
    """The status and JSON body that answer ``exc``."""
    status = status_of(exc)
    if status >= 500:
        _log.error("%s: %s", exc.code, exc.message)
    return status, error_body(
        exc.code,
        exc.message,
        field=getattr(exc, "field", None),
        candidates=getattr(exc, "candidates", None),
        retry_after=getattr(exc, "retry_after", None),
    )


async def send_json(
    send: Send, status: int, payload: bytes, headers: Mapping[str, str] | None = None
) -> None:
    """Answer a JSON ``payload`` straight from ASGI middleware (which has no
    Response classes to hand)."""
    head = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    head += [(key.encode(), value.encode()) for key, value in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": payload})


async def send_error(send: Send, exc: JobdockError) -> None:
    """Answer ``exc`` from ASGI middleware, as the handlers below would."""
    status, body = render_error(exc)
    await send_json(send, status, json.dumps(body).encode(), headers_of(exc))


async def jobdock_error(_request: Request, exc: Exception) -> JSONResponse:
    """The one error body (and status and headers) for a JobdockError."""
    assert isinstance(exc, JobdockError)
    status, body = render_error(exc)
    return JSONResponse(body, status, headers=headers_of(exc))


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0]
    if first.get("type") == "json_invalid":
        return JSONResponse(error_body("invalid_json", "the body is not valid JSON"), 400)
    where = str(first.get("loc", ("body",))[0])
    field, message = describe_error(first, skip=1)
    code = "invalid_spec" if where == "body" else "invalid_request"
    return JSONResponse(error_body(code, message, field=field), 422)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    if isinstance(exc.__cause__, RecursionError):
        # FastAPI parsing a model's body with json.loads, which recursed.
        return await jobdock_error(request, too_deep())
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    return JSONResponse(error_body(code, str(exc.detail)), exc.status_code, headers=exc.headers)


async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
    _log.exception("unexpected error", exc_info=exc)
    return JSONResponse(error_body("internal", "internal server error; see the server log"), 500)


def install_error_handlers(app: FastAPI) -> None:
    """Render every error the API can raise in the one error format."""
    app.add_exception_handler(JobdockError, jobdock_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
