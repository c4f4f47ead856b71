"""gVisor (issue 19): image jobs with ``container_runtime: runsc`` on the
test dockerd (which registers Debian's runsc with its ptrace platform, see
tests/engines.py) see gVisor's kernel, keep their limits and timeouts, and
give the output and exit codes they give under runc."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import engines
from jobdock.client import Client, Credentials
from jobdock.models import JobState, Reason
from support import ServerProcess, make_token

pytestmark = pytest.mark.skipif(
    shutil.which("runsc") is None, reason="gVisor's runsc is not installed (apt-get install runsc)"
)


@pytest.fixture(scope="module")
def server(
    dockerd: engines.Engine, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    server = engines.server_on(
        dockerd, tmp_path_factory.mktemp("gvisor"), container_runtimes='["runc", "runsc"]'
    ).start()
    yield server
    server.stop()


def _run(server: ServerProcess, runtime: str, **spec: object) -> tuple[str, str, object]:
    with Client(server.url) as client:
        result = client.run(
            {"image": engines.BUSYBOX, "container_runtime": runtime, "network": "none", **spec}
        )
    return result.stdout, result.stderr, result.job


def test_a_runsc_job_sees_gvisors_kernel(server: ServerProcess) -> None:
    gvisor, _, job = _run(server, "runsc", command=["dmesg"])
    runc, _, _ = _run(server, "runc", command=["sh", "-c", "dmesg 2>&1 | head -1"])

    assert "gVisor" in gvisor
    assert "gVisor" not in runc
    assert job.attempts[-1].inputs.runtime == "runsc"  # type: ignore[attr-defined]


def test_output_and_exit_codes_are_as_under_runc(server: ServerProcess) -> None:
    command = ["sh", "-c", "echo out; echo err >&2; cat; exit 7"]
    runs = {
        runtime: _run(server, runtime, command=command, stdin="given\n")
        for runtime in ("runc", "runsc")
    }

    (out, err, job), (out_runc, err_runc, job_runc) = runs["runsc"], runs["runc"]
    assert (out, err) == (out_runc, err_runc) == ("out\ngiven\n", "err\n")
    assert job.exit_code == job_runc.exit_code == 7  # type: ignore[attr-defined]


def test_a_runsc_jobs_timeout_stops_it(server: ServerProcess) -> None:
    _, _, job = _run(server, "runsc", command=["sleep", "60"], timeout=1, kill_grace=0.5)

    assert job.state is JobState.FAILED  # type: ignore[attr-defined]
    assert job.reason is Reason.TIMEOUT  # type: ignore[attr-defined]


def test_a_runsc_jobs_memory_limit_holds(server: ServerProcess) -> None:
    # 64 MiB of limit; the job asks for far more than that.
    _, _, job = _run(
        server,
        "runsc",
        command=["sh", "-c", "head -c 400000000 /dev/zero | tail >/dev/null; echo survived"],
        resources={"memory": 64 << 20},
    )

    assert job.reason is Reason.OOM or job.exit_code != 0  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def process_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path_factory.mktemp("gvisor-process")).start()
    yield server
    server.stop()


def test_a_process_job_runs_under_runsc_do_in_gvisors_kernel(
    process_server: ServerProcess,
) -> None:
    spec = {
        "command": [
            "sh",
            "-c",
            "dmesg | head -1; cat; echo err >&2; echo x > /etc/jobdock-gv; exit 5",
        ],
        "stdin": "in\n",
        "isolation": {"sandbox": "gvisor"},
        "cwd": "/tmp",
    }
    with Client(process_server.url) as client:
        result = client.run(spec)

    assert "gVisor" in result.stdout
    assert result.stdout.endswith("in\n") and result.stderr == "err\n"
    assert result.job.exit_code == 5
    assert result.job.attempts[-1].inputs.runtime == "runsc"  # type: ignore[union-attr]
    assert not Path("/etc/jobdock-gv").exists()  # its writes stay in its overlay


def test_a_gvisor_process_jobs_timeout_stops_it(process_server: ServerProcess) -> None:
    spec = {
        "command": ["sleep", "60"],
        "isolation": {"sandbox": "gvisor"},
        "timeout": 1,
        "kill_grace": 1,
    }
    with Client(process_server.url) as client:
        job = client.run(spec).job

    assert job.reason is Reason.TIMEOUT
    assert (job.finished_at - job.started_at).total_seconds() < 10  # type: ignore[operator]


@pytest.mark.parametrize(
    ("isolation", "field"),
    [
        ({"sandbox": "gvisor", "user": "nobody"}, "user"),
        ({"sandbox": "gvisor", "group": "0"}, "group"),
        ({"sandbox": "gvisor", "filesystem": "host"}, "filesystem"),
    ],
)
def test_what_gvisor_cannot_give_is_a_422_naming_the_field(
    process_server: ServerProcess, isolation: dict[str, str], field: str
) -> None:
    response = httpx.post(
        f"{process_server.url}/v1/jobs",
        json={"command": ["true"], "isolation": isolation},
        timeout=30,
    )

    assert response.status_code == 422
    error = response.json()["error"]
    assert f"{field}: sandbox gvisor" in error["message"]


def test_a_gvisor_process_jobs_memory_limit_holds_the_whole_sandbox(
    process_server: ServerProcess,
) -> None:
    # The attempt's cgroup holds runsc's processes: the job's memory is theirs.
    hog = "x=$(head -c 300000000 /dev/zero | tr '\\0' x); echo survived"
    spec = {
        "command": ["sh", "-c", hog],
        "isolation": {"sandbox": "gvisor"},
        "resources": {"memory": 128 << 20},
    }
    with Client(process_server.url) as client:
        result = client.run(spec)

    assert "survived" not in result.stdout
    assert result.job.reason is Reason.OOM
    assert result.job.attempts[-1].isolation == "cgroup v1+gvisor"


def test_a_server_of_many_users_runs_no_gvisor_process_job(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    # runsc do runs the job as root in its kernel, reading the host's files
    # as root: never for one of many users' jobs.
    home = tmp_path_factory.mktemp("gvisor-tokens")
    server = ServerProcess(home, args=["--tokens"])
    token = make_token(home, "alice")
    server.start()
    try:
        with Client(server.url, credentials=Credentials(token=token)) as client:
            job = client.run({"command": ["true"], "isolation": {"sandbox": "gvisor"}}).job
    finally:
        server.stop()

    assert (job.state, job.reason) == (JobState.FAILED, Reason.SPAWN_ERROR)
    assert "sandbox gvisor" in (job.message or "")
