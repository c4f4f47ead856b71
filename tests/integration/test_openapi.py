"""The OpenAPI document a real server serves at ``/openapi.json`` is the
API's contract: valid OpenAPI, every reference defined, every operation
named once, and every error a route can answer declared with the one error
body (tests/integration/test_api_fuzz.py checks the server keeps to it)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate

from support import ServerProcess

Document = dict[str, Any]
#: Routes with a ``{name}`` that create what they name, so never answer 404.
CREATES_BY_NAME = {("put", "/v1/secrets/{name}")}
#: ConJob's /job/run answers a finished job's outcome with these statuses
#: (ConJob's plain text or JSON), not with jobdock's error body.
CONJOB_OUTCOMES = {"400", "404", "408", "500", "503"}


@pytest.fixture(scope="module")
def document(server: ServerProcess) -> Document:
    response = httpx.get(f"{server.url}/openapi.json")
    assert response.status_code == 200
    found: Document = response.json()
    return found


def operations(document: Document) -> Iterator[tuple[str, str, Document]]:
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            yield method, path, operation


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs(item)


def test_the_document_is_valid_openapi(document: Document) -> None:
    validate(document)


def test_every_reference_in_the_document_resolves(document: Document) -> None:
    unresolved = []
    for ref in set(refs(document)):
        assert ref.startswith("#/"), ref
        node: Any = document
        for part in ref[2:].split("/"):
            if not isinstance(node, dict) or part not in node:
                unresolved.append(ref)
                break
            node = node[part]
    assert unresolved == []


def test_every_operation_has_its_own_id(document: Document) -> None:
    ids = [operation["operationId"] for _, _, operation in operations(document)]
    assert sorted(ids) == sorted(set(ids)), [i for i in ids if ids.count(i) > 1]


def required_errors(method: str, path: str, operation: Document) -> set[str]:
    """The error statuses a route can answer, from its shape alone."""
    wanted = {"403", "503"}  # another site's request; the store unavailable
    if path not in ("/healthz", "/health/live", "/health/ready"):
        wanted.add("401")
    if "{" in path and (method, path) not in CREATES_BY_NAME:
        wanted.add("404")
    if any(p["in"] == "query" for p in operation.get("parameters", [])):
        wanted.add("422")
    body = operation.get("requestBody")
    if body is not None:
        wanted.add("413")
        if "application/json" in body.get("content", {}):
            wanted |= {"400", "422"}
    return wanted


def test_every_route_declares_the_errors_it_can_answer(document: Document) -> None:
    missing = {
        f"{method.upper()} {path}": sorted(wanted - set(operation["responses"]))
        for method, path, operation in operations(document)
        if (wanted := required_errors(method, path, operation)) - set(operation["responses"])
    }
    assert missing == {}


def test_every_error_is_declared_with_the_one_error_body(document: Document) -> None:
    other = []
    for method, path, operation in operations(document):
        for status, response in operation["responses"].items():
            if int(status) < 400 or (path == "/job/run" and status in CONJOB_OUTCOMES):
                continue
            schema = response.get("content", {}).get("application/json", {}).get("schema")
            if schema != {"$ref": "#/components/schemas/ErrorResponse"}:
                other.append(f"{method.upper()} {path} {status}")
    assert other == []
    error = document["components"]["schemas"]["ErrorDetail"]
    assert {"code", "message"} <= set(error["required"])


def test_the_submit_fast_path_answers_as_the_document_says(
    server: ServerProcess, document: Document
) -> None:
    declared = set(document["paths"]["/v1/jobs"]["post"]["responses"])
    url = f"{server.url}/v1/jobs"
    spec = {"command": ["true"], "idempotency_key": "openapi-fast-path"}
    answers = {
        "created": httpx.post(url, json=spec),
        "again": httpx.post(url, json=spec),
        "not json": httpx.post(url, content=b"{"),
        "bad spec": httpx.post(url, json={"command": []}),
    }
    statuses = {what: str(answer.status_code) for what, answer in answers.items()}
    assert statuses == {"created": "201", "again": "200", "not json": "400", "bad spec": "422"}
    assert set(statuses.values()) <= declared
