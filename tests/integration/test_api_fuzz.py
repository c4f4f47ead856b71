"""A property-based fuzz of the API: schemathesis generates requests from
the document a real ``jobdock serve`` serves at ``/openapi.json`` (valid
and invalid bodies, parameters and paths), sends them as an ordinary user,
as an administrator and without credentials, and checks each answer: never
a 5xx, a status the document declares for that operation, its content
type, and a body that matches the declared schema.

The fuzzed jobs really run, so the server is sandboxed:

- it runs under bubblewrap with the whole file system read-only but its own
  home, a private /tmp and /dev/shm, in its own PID namespace (its jobs die
  with it), sharing only the loopback network the test reaches it on;
- its jobs' PATH (``job_path``) is an empty directory, so no command named
  without a path can be found; jobs are isolated by default
  (``isolate_by_default``: their own namespaces, no network);
- it has no container engine (``docker_host`` is a socket that does not
  exist), so image jobs wait and never run.

The seed is fixed (hypothesis' ``derandomize``) and the examples per
operation bounded, so that a run is the same every time and takes a minute
or two on two cores.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode, checks

import jobdock
from jobdock.vault import generate_key
from support import ServerProcess, in_ci, make_token

#: Examples per operation for each of whom they are sent as; the run's
#: length scales with them. Without credentials every answer is the same
#: 401, so a few suffice.
EXAMPLES = {"user": 20, "admin": 20, "nobody": 5}
#: What each answer is checked for.
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]
#: A request that takes longer than this fails the fuzz.
REQUEST_TIMEOUT = 20.0
#: /v1/run waits for its job to end: the fuzz bounds how long its jobs may
#: wait or run (a job that needs a label no worker has, or that runs later,
#: would otherwise keep the request open for good).
RUN_BOUNDS = {"queue_timeout": 1, "total_timeout": 2}


@dataclass
class Sandbox:
    server: ServerProcess
    headers: dict[str, dict[str, str]]


def _visible_again() -> list[str]:
    """Read-only binds of what the server runs from (its Python, the checkout
    of jobdock) where the sandbox's private /tmp or /dev/shm would hide it, as
    when CI's clone is under /tmp."""
    binds: list[str] = []
    for path in {Path(sys.prefix), Path(jobdock.__file__).resolve().parents[2]}:
        if any(path.is_relative_to(hidden) for hidden in ("/tmp", "/dev/shm")):
            binds += ["--ro-bind", str(path), str(path)]
    return binds


def sandbox_argv(home: Path) -> list[str]:
    """bubblewrap's command line for a server whose jobs can harm nothing."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        if in_ci():
            pytest.fail("bubblewrap is required in CI (scripts/test installs it)", pytrace=False)
        pytest.skip("bubblewrap (bwrap) is not installed")
    return [
        bwrap,
        "--ro-bind", "/", "/",
        "--dev", "/dev",
        "--proc", "/proc",
        "--tmpfs", "/tmp",
        "--tmpfs", "/dev/shm",
        "--bind", str(home), str(home),
        *_visible_again(),
        "--unshare-pid",
        "--die-with-parent",
        "--",
    ]  # fmt: skip


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    home = tmp_path_factory.mktemp("fuzz")
    empty = home / "empty-path"
    empty.mkdir()
    server = ServerProcess(
        home,
        args=["--tokens"],
        wrapper=sandbox_argv(home),
        secret_key=generate_key(),
        job_path=str(empty),
        isolate_by_default="true",
        docker_host=f"unix://{home}/no-engine.sock",
    ).start()
    tokens = {"user": make_token(home, "alice"), "admin": make_token(home, "root", "--admin")}
    headers = {who: {"authorization": f"Bearer {t}"} for who, t in tokens.items()}
    yield Sandbox(server, {**headers, "nobody": {}})
    server.stop()


@pytest.fixture(scope="module")
def api(sandbox: Sandbox) -> Any:
    schema = schemathesis.openapi.from_url(f"{sandbox.server.url}/openapi.json")
    # ConJob's /job/run runs an image and waits for it to end: with no
    # engine in the sandbox it would wait for good. Its answers are checked
    # against a real dockerd in tests/integration/test_containers.py.
    # /health/ready is 503 by design without an engine: its answers are
    # checked in tests/integration/test_dispatcher_compat.py.
    return schema.exclude(path="/job/run").exclude(path="/health/ready")


#: A fixed seed and a bounded number of examples: the same run every time.
#: No shrinking, to bound the time a failure takes (the seed replays it).
FUZZ = settings(
    derandomize=True,
    database=None,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)


def fuzz(operation: Any, sandbox: Sandbox, who: str) -> int:
    """Send ``operation`` up to EXAMPLES[who] generated requests, valid and
    invalid, as ``who``; raises on the first answer the document does not
    allow. Returns how many were sent."""
    sent = 0
    cases = st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE),
        operation.as_strategy(GenerationMode.NEGATIVE),
    )

    @settings(FUZZ, max_examples=EXAMPLES[who])
    @given(cases)
    def send(case: Any) -> None:
        nonlocal sent
        sent += 1
        if case.path == "/v1/run" and isinstance(case.body, dict):
            case.body = {**case.body, **RUN_BOUNDS}
        case.call_and_validate(
            base_url=sandbox.server.url,
            headers=sandbox.headers[who],
            checks=CHECKS,
            timeout=REQUEST_TIMEOUT,
        )

    send()
    return sent


@pytest.mark.timeout(300)
@pytest.mark.parametrize("who", list(EXAMPLES))
def test_the_api_answers_every_request_as_its_document_says(
    api: Any, sandbox: Sandbox, who: str
) -> None:
    failures, sent = {}, {}
    for result in api.get_all_operations():
        operation = result.ok()
        try:
            sent[operation.label] = fuzz(operation, sandbox, who)
        except (Exception, BaseExceptionGroup) as exc:
            failures[operation.label] = str(exc)[:3000]
    if failures:
        report = "\n\n".join(f"== {op}:\n{text}" for op, text in failures.items())
        pytest.fail(f"{len(failures)} operations answered against their document:\n{report}")
    assert len(sent) >= 30 and min(sent.values()) >= 1, sent
