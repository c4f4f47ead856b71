"""The API's one table of status codes, and the handlers that render every
error as ``{"error": {"code": ..., "message": ...}}``."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import Send

from jobdock.documents import too_deep
from jobdock.errors import (
    ConfigError,
    Forbidden,
    HeaderTimeout,
    IllegalTransition,
    InvalidJson,
    InvalidRequest,
    InvalidSpec,
    JobdockError,
    JobNotFound,
    RequestTooLarge,
    ScheduleExists,
    ScheduleNotFound,
    SecretNotFound,
    SecretsUnavailable,
    StoreError,
    TemplateFailed,
    TemplateNotFound,
    TemplateSpecInvalid,
    TokenNotFound,
    Unauthenticated,
    WorkflowNotFound,
)
from jobdock.submit import describe_error

_log = logging.getLogger(__name__)

#: The HTTP status of each error; the most specific class wins.
STATUS: dict[type[JobdockError], int] = {
    InvalidSpec: 422,
    InvalidRequest: 422,
    InvalidJson: 400,
    RequestTooLarge: 413,
    HeaderTimeout: 408,
    JobNotFound: 404,
    ScheduleNotFound: 404,
    ScheduleExists: 409,
    IllegalTransition: 409,
    StoreError: 503,
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
}

#: How a client should authenticate, sent with every 401 (RFC 6750).
WWW_AUTHENTICATE = 'Bearer realm="jobdock"'


def headers_of(exc: JobdockError) -> dict[str, str]:
    """The headers that go with the error response for ``exc``."""
    if isinstance(exc, Unauthenticated):
        return {"www-authenticate": WWW_AUTHENTICATE}
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
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def render_error(exc: JobdockError) -> tuple[int, dict[str, Any]]:
    """The status and JSON body that answer ``exc``."""
    status = status_of(exc)
    if status >= 500:
        _log.error("%s: %s", exc.code, exc.message)
    return status, error_body(exc.code, exc.message, field=getattr(exc, "field", None))


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


async def _jobdock_error(_request: Request, exc: Exception) -> JSONResponse:
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
        return await _jobdock_error(request, too_deep())
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    return JSONResponse(error_body(code, str(exc.detail)), exc.status_code, headers=exc.headers)


async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
    _log.exception("unexpected error", exc_info=exc)
    return JSONResponse(error_body("internal", "internal server error; see the server log"), 500)


def install_error_handlers(app: FastAPI) -> None:
    """Render every error the API can raise in the one error format."""
    app.add_exception_handler(JobdockError, _jobdock_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
