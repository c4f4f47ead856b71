"""Turning a request into a job: run a template's filter on the request's
body and submit the spec it makes as its caller, exactly as ``POST /v1/jobs``
would (the same checks, server policy, limits and owner), so that a template
never grants more than the caller may have."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from jobdock.dispatch.manifest import is_manifest, spec_of_manifest
from jobdock.dispatch.pool import FilterPool
from jobdock.dispatch.templates import Template
from jobdock.documents import load_json
from jobdock.errors import (
    InvalidRequest,
    InvalidSpec,
    TemplateNotFound,
    TemplateSpecInvalid,
)
from jobdock.models import JobSpec
from jobdock.models.parsing import describe_error
from jobdock.settings import Settings
from jobdock.store.protocol import Store
from jobdock.submit import Policy, Submitted, check_spec, submit_job

#: Headers a template never sees, even when the operator lists them.
HIDDEN_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})


@dataclass(frozen=True, slots=True)
class DispatchRequest:
    """What a template's filter sees of a request: the body (raw JSON), the
    path, query parameters (the last of a repeated one) and headers (names
    in lower case; only the allow-listed ones are passed on)."""

    body: bytes
    path: str
    query: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)


class Dispatcher:
    """The server's templates and the processes that run their filters."""

    def __init__(self, templates: Mapping[str, Template], pool: FilterPool, settings: Settings):
        self.templates = dict(templates)
        self._pool = pool
        self._settings = settings
        self.default = settings.dispatch_default_template
        self._env = settings.dispatch_env_values
        self._headers = frozenset(name.lower() for name in settings.dispatch_headers)
        self._headers -= HIDDEN_HEADERS

    def for_path(self, name: str) -> str | None:
        """The template ``POST /job/NAME/...`` runs: NAME's, else (there is
        none of that name) None, the ``dispatch_default_template``, which
        docker-job-dispatcher runs for any path."""
        return name if name in self.templates or self.default is None else None

    def _template(self, name: str | None) -> Template:
        chosen = self.default if name is None else name
        if chosen is None:
            raise TemplateNotFound("(none given, and dispatch_default_template is not set)")
        if chosen not in self.templates:
            raise TemplateNotFound(chosen)
        return self.templates[chosen]

    async def render(self, name: str | None, request: DispatchRequest) -> JobSpec:
        """The spec the template ``name`` (None: the default template) makes
        of ``request`` (not checked against the server's policy yet): the
        filter's spec, or the one its Docker manifest asks for. Raises
        TemplateNotFound, InvalidJson for a body that is not JSON,
        TemplateFailed (or its TemplateTimeout, TemplateOutputTooLarge) and
        TemplateSpecInvalid."""
        template = self._template(name)
        limit = self._settings.dispatch_max_bytes
        if len(request.body) > limit:
            raise InvalidRequest(
                f"body: {len(request.body)} bytes is more than this server accepts ({limit})",
                field="body",
            )
        value = load_json(request.body) if request.body.strip() else None
        output = await self._pool.run(template.program, value, self._variables(name, request))
        try:
            made = json.loads(output)
            if is_manifest(made):
                return JobSpec.model_validate(spec_of_manifest(made, template.name))
            return JobSpec.model_validate_json(output)
        except ValidationError as exc:
            where, message = describe_error(exc.errors()[0])
            raise TemplateSpecInvalid(
                f"template {template.name!r} made an invalid spec: {message}", field=where
            ) from None

    def _variables(self, name: str | None, request: DispatchRequest) -> dict[str, Any]:
        return {
            "path": request.path,
            "PATH": request.path.rstrip("/") or "/",
            "subpath": subpath_of(request.path, name),
            "query": dict(request.query),
            "headers": {
                key.lower(): value
                for key, value in request.headers.items()
                if key.lower() in self._headers
            },
            "env": self._env,
            "request_id": uuid.uuid4().hex,
            "body_sha256": hashlib.sha256(request.body).hexdigest(),
        }

    async def submit(
        self,
        store: Store,
        name: str | None,
        request: DispatchRequest,
        owner: str,
        policy: Policy,
    ) -> Submitted:
        """Render the template and submit its spec as ``owner`` under ``policy``."""
        spec = await self.render(name, request)
        try:
            return await submit_job(store, spec, policy, owner)
        except InvalidSpec as exc:
            raise _refused(self._template(name).name, exc) from None

    async def test(
        self, store: Store, name: str, request: DispatchRequest, owner: str, policy: Policy
    ) -> JobSpec:
        """The spec a request would submit, with the server's policy applied
        and checked as for ``owner``; nothing is stored."""
        spec = await self.render(name, request)
        try:
            return await check_spec(store, spec, policy, owner)
        except InvalidSpec as exc:
            raise _refused(name, exc) from None


def subpath_of(path: str, name: str | None) -> str:
    """What follows the template's name in a dispatch path: ``org/app`` of
    ``/job/build/org/app`` and of ``/v1/dispatch/build/org/app``; for the
    default template (``name`` None), all that follows ``/job``."""
    prefixes = ("/job",) if name is None else (f"/job/{name}", f"/v1/dispatch/{name}")
    for prefix in prefixes:
        if path == prefix or path.startswith(prefix + "/"):
            return path[len(prefix) :].strip("/")
    return ""


def _refused(name: str, exc: InvalidSpec) -> TemplateSpecInvalid:
    return TemplateSpecInvalid(
        f"template {name!r} made a spec this server refuses: {exc.message}", field=exc.field
    )
