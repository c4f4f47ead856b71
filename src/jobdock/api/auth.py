"""Who is asking: the one place where a request gets its :class:`Principal`.

:class:`Authenticate` is the outermost of jobdock's middleware, so every
route, the submit fast path (``api/submit_path.py``) included, runs with the
principal it resolved, and a request without valid credentials never
reaches them. Routes read it with :func:`principal`; jobs of other users are
answered exactly as jobs that do not exist (:func:`check_visible`).

- No authentication configured: everyone is the local user, an admin.
- ``Authorization: Bearer TOKEN``: the token's user (whenever auth is on).
- Otherwise, with mutual TLS: the client certificate's subject common name,
  taken from the ASGI ``tls`` extension that ``api/tls.py`` adds.
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache

from cryptography import x509
from cryptography.x509.oid import NameOID
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from jobdock.api.errors import send_error
from jobdock.api.origin import CROSS_ORIGIN
from jobdock.auth import LOCAL_USER, Principal, hash_matches, token_id_of
from jobdock.errors import AmbiguousReference, Forbidden, JobNotFound, Unauthenticated
from jobdock.settings import Settings
from jobdock.store.protocol import Store

#: The scope key holding the request's Principal.
PRINCIPAL = "jobdock.principal"
#: Paths anyone may read: liveness and the API's documentation.
PUBLIC_PATHS = frozenset(
    {"/healthz", "/health/live", "/health/ready", "/", "/docs", "/docs/oauth2-redirect"}
    | {"/openapi.json"}
)
#: Paths that check credentials themselves: /metrics also takes the
#: metrics_token, which is no API token (api/metrics.py).
SELF_CHECKED_PATHS = frozenset({"/metrics"})
#: Under this prefix, the routes of ``jobdock agent`` (api/agent.py): only
#: agent tokens reach them, and they reach nothing else.
AGENT_PREFIX = "/v1/agent"
#: Under this prefix, the dashboard's pages and files: they hold no data
#: (their script asks the API, with the user's credentials).
DASHBOARD_PREFIX = "/ui"


class Authenticate:
    """ASGI middleware: resolves the principal of each request, or answers 401."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        state = scope["app"].state
        try:
            scope[PRINCIPAL] = found = await resolve(scope, state.settings, state.store)
        except Unauthenticated as exc:
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
                return
            if not is_public(scope["path"]) and scope["path"] not in SELF_CHECKED_PATHS:
                await send_error(send, exc)
                return
        else:
            refused = agent_wall(found, scope["path"], state.settings.auth_enabled)
            if refused is not None:
                if scope["type"] == "websocket":
                    await send({"type": "websocket.close", "code": 1008})
                else:
                    await send_error(send, refused)
                return
        await self.app(scope, receive, send)


def agent_wall(who: Principal, path: str, auth_enabled: bool) -> Forbidden | None:
    """Why ``who`` may not call ``path`` across the wall between agents and
    users (None: it may): an agent token reaches the agent routes only (and
    the public ones), and with authentication on only an agent token
    reaches the agent routes (docs/agents.md)."""
    agent_path = path == AGENT_PREFIX or path.startswith(AGENT_PREFIX + "/")
    if who.agent_token is not None and not agent_path and not is_public(path):
        return Forbidden("an agent token may only call the agent routes (/v1/agent/...)")
    if agent_path and auth_enabled and who.agent_token is None:
        return Forbidden(
            "the agent routes take an agent token (`jobdock tokens create NAME --agent`)"
        )
    return None


def is_public(path: str) -> bool:
    """Whether anyone may read ``path`` without credentials."""
    return (
        path in PUBLIC_PATHS or path == DASHBOARD_PREFIX or path.startswith(DASHBOARD_PREFIX + "/")
    )


async def resolve(scope: Scope, settings: Settings, store: Store) -> Principal:
    """The principal of a request; raises Unauthenticated."""
    if not settings.auth_enabled:
        return LOCAL_USER
    header = _header(scope, b"authorization")
    if header is not None:
        return await _token_principal(header, store)
    if scope.get(CROSS_ORIGIN):
        # A browser sends its client certificate whoever's page asks: a
        # page of another site must show a token (api/cors.py).
        raise Unauthenticated("a call from another site's page needs an API token")
    if settings.tls_ca is not None:
        name = client_cert_name(scope)
        if name is None:
            raise Unauthenticated("a client certificate or an API token is required")
        return Principal(name, admin=name in settings.admin_names)
    raise Unauthenticated("an API token is required (Authorization: Bearer TOKEN)")


async def _token_principal(header: str, store: Store) -> Principal:
    # Never put the token, or any part of it, in a message or a log line.
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated("the Authorization header must be 'Bearer TOKEN'")
    token_id = token_id_of(token)
    if token_id is None:
        raise Unauthenticated("the API token is malformed")
    stored = await store.find_token(token_id)
    if stored is None or not hash_matches(token, stored.hash):
        raise Unauthenticated("the API token is not valid")
    info = stored.info
    if info.revoked_at is not None:
        raise Unauthenticated("the API token has been revoked")
    if info.expires_at is not None and info.expires_at <= dt.datetime.now(dt.UTC):
        raise Unauthenticated("the API token has expired")
    rate = None
    if info.submit_rate is not None:
        rate = (info.submit_rate, info.submit_burst or 0)
    return Principal(
        info.user,
        admin=info.admin,
        submit_rate=rate,
        token_id=info.id,
        agent_token=info.id if info.agent else None,
    )


def client_cert_name(scope: Scope) -> str | None:
    """The subject common name of the verified client certificate, if any."""
    tls = scope.get("extensions", {}).get("tls") or {}
    chain = tls.get("client_cert_chain") or []
    return _common_name(chain[0]) if chain else None


@lru_cache(maxsize=1024)
def _common_name(pem: str) -> str | None:
    cert = x509.load_pem_x509_certificate(pem.encode())
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else None


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def principal_of(scope: Scope) -> Principal:
    """The principal :class:`Authenticate` resolved; without it, nobody
    (so that an app built without the middleware fails closed)."""
    found = scope.get(PRINCIPAL)
    if not isinstance(found, Principal):
        raise Unauthenticated("this request was not authenticated")
    return found


def principal(request: Request) -> Principal:
    """The user a request acts for."""
    return principal_of(request.scope)


def require_admin(request: Request) -> Principal:
    """The request's user, if an administrator; else Forbidden."""
    who = principal(request)
    if not who.admin:
        raise Forbidden()
    return who


async def check_visible(store: Store, who: Principal, ref: str) -> str:
    """The id of the job ``ref`` refers to among those ``who`` may see: its
    id, a unique prefix of its id (4 characters or more) or its name when
    no other job has it. JobNotFound when none matches (another user's job
    is answered exactly as a job that does not exist, and is never a
    candidate); AmbiguousReference, listing the candidates, when several do."""
    found = await store.resolve_job(ref, owner=None if who.admin else who.name)
    if not found:
        raise JobNotFound(ref)
    if len(found) > 1:
        raise AmbiguousReference(ref, found)
    return found[0]
