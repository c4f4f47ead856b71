"""docker-job-dispatcher's users switching to jobdock (docs/dispatch.md,
"docker-job-dispatcher"), against a real server: ``POST /job`` and its
default template, ``GET /job/{id}``, the health checks, ``jobs_total``, the
jq extras its filters use, and (on the test dockerd) its style of filter,
a Docker manifest, run unchanged."""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest

import engines
from jobdock import Client
from jobdock.credentials import Credentials
from jobdock.dispatch import load_templates
from jobdock.errors import ConfigError
from jobdock.settings import Settings, load_settings
from support import ServerProcess, eventually, jobdock, make_token

DOCS = Path(__file__).parents[2] / "docs" / "dispatch.md"
METRICS_TOKEN = "metrics-secret"
NAMESPACE = "ns-compat"
#: The process-job templates; ``exits`` is the default (POST /job).
TEMPLATES = {
    "exits": '{command: ["sh", "-c", "exit \\(.code // 0)"], labels: {subpath: $subpath}}',
    "extras": (
        '{command: ["true"], labels: {md5: ("abc" | @md5), sha1: @sha1, cuid: cuid2, '
        'cuid_again: cuid2, PATH: $PATH, env: ($ENV | keys | join(",")), '
        'jq_env: (env | keys | join(","))}}'
    ),
}


def docs_manifest_example() -> str:
    """The jq block of docs/dispatch.md's docker-job-dispatcher section."""
    section = DOCS.read_text().split("## docker-job-dispatcher", 1)[1]
    found = re.search(r"```jq\n(.*?)```", section, re.S)
    assert found, "docs/dispatch.md shows no docker-job-dispatcher filter"
    return found.group(1)


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ServerProcess, dict[str, str]]]:
    home = tmp_path_factory.mktemp("compat")
    tokens = {user: make_token(home, user) for user in ("alice", "bob")}
    server = ServerProcess(
        home,
        args=("--tokens",),
        dispatch_templates=json.dumps(TEMPLATES),
        dispatch_default_template="exits",
        dispatch_env='["JOB_ENV_*", "REGION"]',
        metrics_token=METRICS_TOKEN,
        namespace=NAMESPACE,
        # No engine here: ready then asks only the store.
        containers="false",
    )
    server.env.update(JOB_ENV_A="1", JOB_ENV_B="2", REGION="eu", JOB_SECRET="hunter2")
    server.start()
    yield server, tokens
    server.stop()


def as_user(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def summary(server: ServerProcess, token: str, ref: str) -> httpx.Response:
    headers = as_user(token) if token else {}
    return httpx.get(f"{server.url}/job/{ref}", headers=headers, timeout=30)


def test_post_job_runs_the_default_template_and_get_job_says_how_it_ended(
    served: tuple[ServerProcess, dict[str, str]],
) -> None:
    server, tokens = served
    alice = tokens["alice"]
    created = httpx.post(f"{server.url}/job", json={"code": 3}, headers=as_user(alice))
    assert created.status_code == 201, created.text
    job = created.json()
    assert job["spec"]["command"] == ["sh", "-c", "exit 3"]

    ended = eventually(
        lambda: (
            (got := summary(server, alice, job["id"]).json())["status"] != "Created"
            and got["status"] != "Up"
            and got
        ),
        what="the job's end",
    )
    assert ended == {
        "id": job["id"],
        "created": int(job_created(job)),
        "status": "Exited (3)",
    }
    # A path whose first segment is no template runs the default too.
    other = httpx.post(f"{server.url}/job/any/where", json={}, headers=as_user(alice))
    assert other.status_code == 201, other.text
    assert other.json()["labels"] == {"subpath": "any/where"}
    eventually(lambda: summary(server, alice, other.json()["id"]).json()["status"] == "Exited (0)")


def job_created(job: dict[str, object]) -> float:
    return datetime.fromisoformat(str(job["created_at"])).timestamp()


def test_get_job_is_404_for_an_unknown_job_and_for_another_users(
    served: tuple[ServerProcess, dict[str, str]],
) -> None:
    server, tokens = served
    created = httpx.post(f"{server.url}/job", json={}, headers=as_user(tokens["alice"]))
    assert created.status_code == 201
    unknown = summary(server, tokens["alice"], "no-such-job")
    theirs = summary(server, tokens["bob"], created.json()["id"])
    for response in (unknown, theirs):
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
    assert "no-such-job" in unknown.json()["error"]["message"]
    anonymous = httpx.get(f"{server.url}/job/{created.json()['id']}")
    assert anonymous.status_code == 401


def test_the_health_checks_need_no_credentials(
    served: tuple[ServerProcess, dict[str, str]],
) -> None:
    server, _ = served
    for path in ("/health/live", "/health/ready"):
        response = httpx.get(server.url + path)
        assert response.status_code == 204, response.text
        assert response.content == b""


def test_jobs_total_counts_ended_jobs_by_exit_status_in_the_namespace(
    served: tuple[ServerProcess, dict[str, str]],
) -> None:
    server, tokens = served
    with Client(server.url, credentials=Credentials(token=tokens["bob"])) as client:
        for code in (0, 0, 7):
            client.wait(client.dispatch("exits", {"code": code}).id)

    def metric(action: str, status: str) -> float:
        text = httpx.get(
            f"{server.url}/metrics", headers={"authorization": f"Bearer {METRICS_TOKEN}"}
        ).text
        wanted = f'jobs_total{{action="{action}",namespace="{NAMESPACE}",status="{status}"}} '
        lines = [line for line in text.splitlines() if line.startswith(wanted)]
        return float(lines[0].split()[-1]) if lines else 0.0

    assert metric("die", "7") >= 1
    assert metric("die", "0") >= 2
    assert metric("create", "") >= 3
    assert metric("start", "") >= metric("die", "7") + metric("die", "0")


def test_the_jq_extras_and_env_prefixes(served: tuple[ServerProcess, dict[str, str]]) -> None:
    server, tokens = served
    with Client(server.url, credentials=Credentials(token=tokens["alice"])) as client:
        spec = client.test_template("extras", {"x": [1, 2]}, path="/job/extras/a/")
    labels = spec["labels"]
    assert labels["md5"] == hashlib.md5(b"abc").hexdigest()
    assert labels["sha1"] == hashlib.sha1(b'{"x":[1,2]}').hexdigest()
    assert re.fullmatch(r"[a-z][a-z0-9]{23}", labels["cuid"])
    assert labels["cuid_again"] == labels["cuid"]
    assert labels["PATH"] == "/job/extras/a"
    # JOB_ENV_* by prefix and REGION by name; JOB_SECRET is allowed by neither.
    assert labels["env"] == labels["jq_env"] == "JOB_ENV_A,JOB_ENV_B,REGION"


def test_a_filter_using_what_jobdock_lacks_is_refused_at_start_naming_it(tmp_path: Path) -> None:
    for program, named in (
        ('{command: ["true"], name: @sha256}', "@sha256"),
        ('{command: ["true"], name: ("x" | @sha512)} # @md5 is known', "@sha512"),
        ("{command: [ksuid]}", "ksuid/0"),
    ):
        with pytest.raises(ConfigError, match=re.escape(named)):
            load_templates(Settings(dispatch_templates={"t": program}))
    # A format inside a string is text, not a format.
    load_templates(Settings(dispatch_templates={"t": '{command: ["echo", "a@sha256"]}'}))
    with pytest.raises(ConfigError, match="dispatch_default_template"):
        load_templates(Settings(dispatch_default_template="nope"))
    # A prefix, never the whole environment.
    for pattern in ("*", "A*B*", "*_KEY"):
        with pytest.raises(ConfigError, match="dispatch_env"):
            load_settings(dispatch_env=[pattern])
    done = jobdock(
        "serve",
        "--home",
        str(tmp_path),
        env={"JOBDOCK_DISPATCH_TEMPLATES": json.dumps({"t": "{name: @sha256}"})},
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "@sha256" in done.stderr


def test_post_job_without_a_default_template_is_404(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, dispatch_templates=json.dumps(TEMPLATES)).start()
    try:
        response = httpx.post(f"{server.url}/job", json={})
        assert response.status_code == 404
        assert "dispatch_default_template" in response.json()["error"]["message"]
        assert httpx.post(f"{server.url}/job/nope", json={}).status_code == 404
    finally:
        server.stop()


# -- on the test dockerd -------------------------------------------------------


def manifest_server(home: Path, docker_host: str, program: str) -> ServerProcess:
    templates = home / "templates"
    templates.mkdir(parents=True)
    (templates / "hello.jq").write_text(program)
    server = ServerProcess(
        home,
        docker_host=docker_host,
        namespace=engines.NAMESPACE,
        dispatch_templates_dir=str(templates),
        dispatch_default_template="hello",
        dispatch_env='["JOB_*"]',
    )
    server.env.update(JOB_IMAGE=engines.BUSYBOX, JOB_ENV_GREETING="hi", OTHER="no")
    return server.start()


def run_example_request(server: ServerProcess) -> dict[str, object]:
    """The dispatcher's README example request, then its job once ended."""
    body = {"args": ["Hello", "world!"]}
    created = httpx.post(f"{server.url}/job", json=body, timeout=30)
    assert created.status_code == 201, created.text
    job = created.json()
    assert job["spec"]["image"] == engines.BUSYBOX
    assert job["spec"]["env"] == {"GREETING": "hi"}
    # Its Name finds it, as the dispatcher's id does.
    name = job["name"]
    eventually(
        lambda: summary(server, "", name).json()["status"] == "Exited (0)",
        timeout=60,
        what="the container's end",
    )
    with Client(server.url) as client:
        output = b"".join(chunk for _, chunk in client.logs(job["id"]))
    assert output == b"Hello world!\n"
    again = httpx.post(f"{server.url}/job", json=body, timeout=30)
    assert again.status_code == 200 and again.json()["id"] == job["id"]
    return job


def test_a_dispatcher_style_filter_runs_unchanged_on_docker(
    dockerd: engines.Engine, tmp_path: Path
) -> None:
    server = manifest_server(tmp_path, dockerd.url, docs_manifest_example())
    try:
        job = run_example_request(server)
        assert str(job["name"]).startswith("hello-")
        spec = job["spec"]
        assert isinstance(spec, dict)
        assert spec["entrypoint"] == ["echo"] and spec["command"] == ["Hello", "world!"]
        assert spec["retry"]["max_attempts"] == 2
        assert spec["labels"] == {"requested_at": "/job"}
        refused = httpx.post(
            f"{server.url}/v1/templates/hello/test",
            json={"body": {"args": ["x"]}},
        )
        assert refused.status_code == 200
    finally:
        server.stop()


@pytest.mark.skipif(
    "JOBDOCK_TEST_DISPATCHER_FILTER" not in os.environ,
    reason="set JOBDOCK_TEST_DISPATCHER_FILTER to docker-job-dispatcher's "
    "src/default_filter.jq (it is not copied into this repository)",
)
def test_the_dispatchers_own_default_filter_runs_unchanged(
    dockerd: engines.Engine, tmp_path: Path
) -> None:
    program = Path(os.environ["JOBDOCK_TEST_DISPATCHER_FILTER"]).read_text()
    server = manifest_server(tmp_path, dockerd.url, program)
    try:
        job = run_example_request(server)
        assert str(job["name"]).startswith("demo-job-")
    finally:
        server.stop()


def test_a_manifest_field_jobdock_cannot_honour_is_refused_naming_it(tmp_path: Path) -> None:
    program = '{Image: "busybox", Cmd: ["true"], HostConfig: {Binds: ["/:/host"]}}'
    server = ServerProcess(tmp_path, dispatch_templates=json.dumps({"m": program})).start()
    try:
        response = httpx.post(f"{server.url}/job/m", json={})
        assert response.status_code == 400
        error = response.json()["error"]
        assert error["code"] == "invalid_spec" and error["field"] == "HostConfig.Binds"
    finally:
        server.stop()


def test_ready_is_503_while_the_container_engine_does_not_answer(
    dockerd: engines.Engine, tmp_path: Path
) -> None:
    proxy = engines.SocketProxy(dockerd.socket).restore()
    server = ServerProcess(tmp_path, docker_host=proxy.url, namespace=engines.NAMESPACE).start()
    try:
        assert httpx.get(f"{server.url}/health/ready").status_code == 204
        proxy.cut()
        down = httpx.get(f"{server.url}/health/ready", timeout=30)
        assert down.status_code == 503
        assert down.json()["error"]["code"] == "not_ready"
        assert "container engine" in down.json()["error"]["message"]
        assert httpx.get(f"{server.url}/health/live").status_code == 204
        proxy.restore()
        eventually(lambda: httpx.get(f"{server.url}/health/ready").status_code == 204)
    finally:
        server.stop()
        proxy.remove()
