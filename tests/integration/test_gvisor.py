"""gVisor (issue 19): image jobs with ``container_runtime: runsc`` on the
test dockerd (which registers Debian's runsc with its ptrace platform, see
tests/engines.py) see gVisor's kernel, keep their limits and timeouts, and
give the output and exit codes they give under runc."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

import engines
from jobdock.client import Client
from jobdock.models import JobState, Reason
from support import ServerProcess

pytestmark = pytest.mark.skipif(
    shutil.which("runsc") is None, reason="gVisor's runsc is not installed (apt-get install runsc)"
)


@pytest.fixture(scope="module")
def server(
    dockerd: engines.Engine, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    server = ServerProcess(
        tmp_path_factory.mktemp("gvisor"),
        docker_host=dockerd.url,
        namespace=engines.NAMESPACE,
        container_runtimes='["runc", "runsc"]',
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
