"""What a restart of the server leaves behind: no job stuck in ``running``,
no orphaned process, output that survives."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from jobdock import Client, JobState, Reason
from support import ServerProcess, alive, eventually


def started_pid(client: Client, job_id: str) -> int:
    def pid() -> int | None:
        job = client.get(job_id)
        return job.attempts[0].pid if job.attempts else None

    return eventually(pid, what="the job's process to start")


def test_a_job_running_when_the_server_dies_fails_as_worker_lost(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "home").start()
    with Client(server.url) as client:
        job = client.submit({"command": ["sleep", "60"], "on_worker_lost": "fail"})
        pid = started_pid(client, job.id)
    server.kill()

    server.start()
    with Client(server.url) as client:
        job = client.wait(job.id, timeout=30)
    server.stop()
    assert job.state is JobState.FAILED
    assert job.reason is Reason.WORKER_LOST
    assert job.attempts[0].reason is Reason.WORKER_LOST
    # The process the dead server left behind was ended, not left to run twice.
    eventually(lambda: not alive(pid), what="the orphaned process to end")


def test_a_requeued_job_runs_again_and_keeps_each_attempts_output(tmp_path: Path) -> None:
    marker = tmp_path / "ran-once"
    script = f"echo attempt $JOBDOCK_ATTEMPT; [ -e {marker} ] && exit 0; touch {marker}; sleep 60"
    server = ServerProcess(tmp_path / "home").start()
    with Client(server.url) as client:
        job = client.submit({"command": ["sh", "-c", script]})
        started_pid(client, job.id)
        eventually(lambda: marker.exists(), what="the first attempt to start")
    server.kill()

    server.start()
    with Client(server.url) as client:
        job = client.wait(job.id, timeout=30)
        first = b"".join(d for _, d in client.logs(job.id, attempt=1))
        second = b"".join(d for _, d in client.logs(job.id))
    server.stop()
    assert job.state is JobState.SUCCEEDED
    assert [a.reason for a in job.attempts] == [Reason.WORKER_LOST, Reason.EXITED]
    assert (first, second) == (b"attempt 1\n", b"attempt 2\n")


def test_output_and_results_survive_a_restart(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "home").start()
    with Client(server.url) as client:
        job = client.wait(client.submit({"command": ["echo", "kept"]}).id, timeout=30)
    server.stop()
    server.start()
    with Client(server.url) as client:
        again = client.get(job.id)
        logs = b"".join(d for _, d in client.logs(job.id))
    server.stop()
    assert again.state is JobState.SUCCEEDED
    assert logs == b"kept\n"


def test_a_graceful_shutdown_gives_running_jobs_back_to_run_again(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "home").start()
    with Client(server.url) as client:
        job = client.submit({"command": ["sleep", "60"]})
        pid = started_pid(client, job.id)
    # uvicorn re-raises the signal once it has shut down cleanly.
    assert server.stop(signal.SIGTERM) in (0, -signal.SIGTERM)
    assert not alive(pid)

    server.start()
    with Client(server.url) as client:
        eventually(lambda: len(client.get(job.id).attempts) == 2, what="a second attempt")
        job = client.get(job.id)
        assert job.attempts[0].reason is Reason.WORKER_LOST
        assert "shut down" in (job.attempts[0].message or "")
        client.cancel(job.id)
        assert client.wait(job.id, timeout=30).state is JobState.CANCELLED
    server.stop()


def test_a_queued_job_is_cancelled_at_once(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "home", concurrency="0").start()
    with Client(server.url) as client:
        job = client.submit({"command": ["true"]})
        cancelled = client.cancel(job.id)
        assert cancelled.state is JobState.CANCELLED
        assert cancelled.reason is Reason.CANCELLED
        assert cancelled.attempts == []
    server.stop()


def test_the_server_refuses_a_port_in_use_with_one_line(tmp_path: Path) -> None:
    first = ServerProcess(tmp_path / "a").start()
    second = ServerProcess(tmp_path / "b")
    second.port = first.port
    second.env["JOBDOCK_PORT"] = str(first.port)
    second.home.mkdir(parents=True)
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "jobdock", "serve"],
        env=second.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    first.stop()
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert os.fspath(str(first.port)) in result.stderr
