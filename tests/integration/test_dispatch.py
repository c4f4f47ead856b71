"""Dispatch templates (docs/dispatch.md) against a real server: the docs'
example end to end, what a filter may see, and filters that misbehave."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from test_auth import make_token

from jobdock import Client
from jobdock.dispatch import load_templates
from jobdock.errors import ConfigError
from jobdock.settings import Settings
from support import ServerProcess

JOBDOCK = [sys.executable, "-m", "jobdock"]
DOCS = Path(__file__).parents[2] / "docs" / "dispatch.md"

#: Templates besides the docs' example, by name.
TEMPLATES = {
    "envdump": '{command: ["true"], labels: ($env + {jq_env: (env | keys | join(",")), '
    'jq_ENV: ($ENV | keys | join(",")), headers: ($headers | keys | join(","))})}',
    "loop": "def f: f; f",
    "huge": "[range(1e9)]",
    "long": '{command: ["true"], name: ("x" * 2000000)}',
    "many": "range(1e9)",
    "fails": 'error("no build for \\(.ref)")',
    "greedy": '{command: ["true"], resources: {memory: "8g"}}',
    "notalist": '{command: "echo hi"}',
    "echo": '{command: ["echo", .msg]}',
}


def docs_example() -> str:
    """The first jq block of docs/dispatch.md: the template the docs show."""
    found = re.search(r"```jq\n(.*?)```", DOCS.read_text(), re.S)
    assert found, "docs/dispatch.md has no jq example"
    return found.group(1)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    home = tmp_path_factory.mktemp("dispatch")
    templates = home / "templates"
    templates.mkdir()
    (templates / "build.jq").write_text(docs_example())
    for name, program in TEMPLATES.items():
        (templates / f"{name}.jq").write_text(program)
    proc = ServerProcess(
        home,
        dispatch_templates_dir=str(templates),
        dispatch_env='["REGION"]',
        dispatch_headers='["X-Event", "Authorization"]',
        max_resources='{"memory": "1g"}',
    )
    proc.env.update(REGION="eu-west", SECRET_TOKEN="hunter2")
    proc.start()
    yield proc
    proc.stop()


def post(server: ServerProcess, path: str, body: object = None, **kwargs: object) -> httpx.Response:
    return httpx.post(server.url + path, json=body, timeout=30, **kwargs)  # type: ignore[arg-type]


def test_the_docs_example_builds_and_a_repost_returns_the_same_job(server: ServerProcess) -> None:
    headers = {"x-event": "push"}
    first = post(server, "/job/build/acme/app", {"ref": "v1.2"}, headers=headers)
    assert first.status_code == 201, first.text
    job = first.json()
    assert job["name"] == "build acme/app"
    assert job["labels"] == {"template": "build", "event": "push"}

    with Client(server.url) as client:
        done = client.wait(job["id"], timeout=60)
        out = b"".join(data for _, data in client.logs(job["id"]))
    assert done.state == "succeeded", done
    assert out == b"building acme/app at v1.2 in eu-west\n"

    again = post(server, "/v1/dispatch/build/acme/app", {"ref": "v1.2"}, headers=headers)
    assert again.status_code == 200, again.text
    assert again.json()["id"] == job["id"]


def test_a_filter_sees_only_the_allow_listed_variables_and_headers(
    server: ServerProcess,
) -> None:
    response = post(
        server,
        "/v1/dispatch/envdump",
        {},
        headers={"x-event": "push", "authorization": "Bearer secret", "x-other": "1"},
    )
    assert response.status_code == 201, response.text
    labels = response.json()["labels"]
    assert labels == {
        "REGION": "eu-west",
        "jq_env": "REGION",
        "jq_ENV": "REGION",
        "headers": "x-event",
    }
    assert "hunter2" not in response.text
    assert "SECRET_TOKEN" not in response.text


@pytest.mark.parametrize(
    ("template", "code"),
    [
        ("loop", "template_timeout"),
        ("huge", "template_timeout|template_failed"),
        ("long", "template_output_too_large"),
        ("many", "template_failed"),
    ],
)
def test_a_malicious_filter_is_stopped_and_the_server_stays_healthy(
    server: ServerProcess, template: str, code: str
) -> None:
    with Client(server.url) as client:
        before = len(client.list(limit=1000).jobs)
    started = time.monotonic()
    response = post(server, f"/v1/dispatch/{template}", {})
    elapsed = time.monotonic() - started
    assert response.status_code == 400, response.text
    assert re.fullmatch(code, response.json()["error"]["code"]), response.text
    # dispatch_timeout is 1 s; a generous bound for a loaded machine.
    assert elapsed < 15
    assert httpx.get(server.url + "/healthz", timeout=10).status_code == 200
    # The filter processes are back: a good template works at once.
    echoed = post(server, "/v1/dispatch/echo", {"msg": "still here"})
    assert echoed.status_code == 201, echoed.text
    with Client(server.url) as client:
        assert len(client.list(limit=1000).jobs) == before + 1


def test_errors_of_a_filter_name_what_went_wrong(server: ServerProcess) -> None:
    failed = post(server, "/v1/dispatch/fails", {"ref": "v9"})
    assert failed.status_code == 400
    assert failed.json()["error"]["code"] == "template_failed"
    assert "no build for v9" in failed.json()["error"]["message"]

    invalid = post(server, "/v1/dispatch/notalist", {})
    assert invalid.status_code == 400
    assert invalid.json()["error"]["code"] == "invalid_spec"
    assert invalid.json()["error"]["field"] == "command"

    missing = post(server, "/v1/dispatch/nope", {})
    assert missing.status_code == 404

    not_json = httpx.post(server.url + "/job/echo", content=b"{nope", timeout=30)
    assert not_json.status_code == 400
    assert not_json.json()["error"]["code"] == "invalid_json"


def test_a_template_cannot_grant_more_than_the_server_allows(server: ServerProcess) -> None:
    with Client(server.url) as client:
        before = len(client.list(limit=1000).jobs)
    response = post(server, "/v1/dispatch/greedy", {})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_spec"
    assert error["field"] == "resources.memory"
    with Client(server.url) as client:
        assert len(client.list(limit=1000).jobs) == before


def test_conjobs_route_is_still_conjobs(server: ServerProcess) -> None:
    # /job/run is ConJob's: it wants an image, it does not look for a template.
    response = post(server, "/job/run")
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "image"


def test_template_test_prints_the_spec_without_submitting(server: ServerProcess) -> None:
    with Client(server.url) as client:
        before = len(client.list(limit=1000).jobs)
    args = ["--path", "/job/build/acme/lib", "--header", "X-Event=tag", "--url", server.url]
    done = subprocess.run(
        [*JOBDOCK, "template", "test", "build", *args],
        input='{"ref": "v2"}',
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    spec = json.loads(done.stdout)
    assert spec["env"] == {"REPO": "acme/lib", "REF": "v2", "REGION": "eu-west"}
    assert spec["labels"] == {"template": "build", "event": "tag"}
    with Client(server.url) as client:
        assert len(client.list(limit=1000).jobs) == before
        assert client.templates() == sorted(["build", *TEMPLATES])

    refused = subprocess.run(
        [*JOBDOCK, "template", "test", "greedy", "--url", server.url],
        input="",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 1
    assert refused.stderr.count("\n") == 1
    assert "resources.memory" in refused.stderr


def test_a_template_that_does_not_compile_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "broken.jq").write_text("{command: [\n")
    with pytest.raises(ConfigError, match="broken"):
        load_templates(Settings(dispatch_templates_dir=tmp_path))
    with pytest.raises(ConfigError, match="reserved"):
        load_templates(Settings(dispatch_templates={"run": "."}))
    with pytest.raises(ConfigError, match="mod"):
        load_templates(Settings(dispatch_templates={"mod": 'import "x" as x; .'}))


def test_a_dispatched_job_belongs_to_its_caller(tmp_path: Path) -> None:
    alice = make_token(tmp_path, "alice")
    server = ServerProcess(
        tmp_path,
        args=("--tokens",),
        dispatch_templates=json.dumps({"echo": TEMPLATES["echo"]}),
    ).start()
    try:
        anonymous = post(server, "/job/echo", {"msg": "hi"})
        assert anonymous.status_code == 401
        response = post(
            server, "/job/echo", {"msg": "hi"}, headers={"authorization": f"Bearer {alice}"}
        )
        assert response.status_code == 201, response.text
        assert response.json()["owner"] == "alice"
    finally:
        server.stop()
