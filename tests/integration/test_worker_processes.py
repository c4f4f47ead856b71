"""``jobdock serve --worker-processes 1``: the worker runs in a process of
its own beside the API's, started and watched by the server. Real
processes throughout: the server, its worker child (found through
/proc), the jobs; kill -9 of either loses no job and leaves none stuck.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from jobdock import Client, JobState, Reason
from support import ServerProcess, alive, eventually

#: A job whose first attempt runs for a minute and whose next one ends at once.
SLEEPS_ONCE = '[ "$JOBDOCK_ATTEMPT" -gt 1 ] || sleep 60'


def worker_children(server_pid: int) -> list[int]:
    """The server's worker processes, by their command line."""
    try:
        with open(f"/proc/{server_pid}/task/{server_pid}/children") as listed:
            pids = [int(p) for p in listed.read().split()]
    except FileNotFoundError:
        return []
    found = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                if b"worker_child" in cmdline.read() and alive(pid):
                    found.append(pid)
        except FileNotFoundError:
            continue
    return found


def server_with_worker_process(home: Path) -> tuple[ServerProcess, int]:
    server = ServerProcess(home, args=("--worker-processes", "1")).start()
    assert server.proc is not None
    [child] = eventually(lambda: worker_children(server.proc.pid), what="the worker process")
    return server, child


def running_pid(client: Client, job_id: str) -> int:
    def pid() -> int | None:
        job = client.get(job_id)
        return job.attempts[-1].pid if job.attempts else None

    return eventually(pid, what="the job's process to start")


def test_jobs_run_in_the_worker_process_not_in_the_server(tmp_path: Path) -> None:
    server, child = server_with_worker_process(tmp_path / "home")
    try:
        with Client(server.url) as client:
            job = client.wait(client.submit({"command": ["sh", "-c", "echo $PPID"]}).id, 30)
            said = b"".join(d for _, d in client.logs(job.id))
            [worker] = [w for w in client.workers() if w.state == "alive"]
    finally:
        # Stopped by SIGTERM as it asks, uvicorn ends by that signal.
        assert server.stop() in (0, -signal.SIGTERM)

    assert job.state is JobState.SUCCEEDED, server.log()
    assert worker.id in (job.attempts[-1].worker or "")
    assert server.proc is not None
    # The job's parent is not the server (the worker, or a confinement it runs in).
    assert int(said) != server.proc.pid
    eventually(lambda: not alive(child), what="the worker process to stop with the server")


def test_a_worker_process_killed_mid_job_is_started_again_and_the_job_runs_again(
    tmp_path: Path,
) -> None:
    server, child = server_with_worker_process(tmp_path / "home")
    try:
        with Client(server.url) as client:
            job = client.submit({"command": ["sh", "-c", SLEEPS_ONCE]})
            running_pid(client, job.id)
            os.kill(child, signal.SIGKILL)

            assert server.proc is not None
            [again] = eventually(
                lambda: [p for p in worker_children(server.proc.pid) if p != child],
                timeout=30,
                what="a new worker process",
            )
            job = client.wait(job.id, timeout=60)
    finally:
        server.stop()

    assert again != child
    assert job.state is JobState.SUCCEEDED, server.log()
    assert [a.reason for a in job.attempts] == [Reason.WORKER_LOST, Reason.EXITED]
    assert "worker process 0" in server.log() and "starting it again" in server.log()


def test_a_server_killed_with_sigkill_takes_its_worker_process_down_and_loses_no_job(
    tmp_path: Path,
) -> None:
    server, child = server_with_worker_process(tmp_path / "home")
    with Client(server.url) as client:
        job = client.submit({"command": ["sh", "-c", SLEEPS_ONCE]})
        first = running_pid(client, job.id)
    server.kill()

    # Told by the kernel (PR_SET_PDEATHSIG), the worker drains and goes.
    eventually(lambda: not alive(child), timeout=30, what="the orphaned worker process to end")
    eventually(lambda: not alive(first), timeout=30, what="the job's first process to end")
    server, _ = server_with_worker_process(tmp_path / "home")
    try:
        with Client(server.url) as client:
            job = client.wait(job.id, timeout=60)
    finally:
        server.stop()

    assert job.state is JobState.SUCCEEDED, server.log()
    assert len(job.attempts) == 2 and job.attempts[-1].reason is Reason.EXITED


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (("--worker-processes", "1000"), "worker_processes"),
        (("--worker-processes", "-1"), "worker_processes"),
        (("--no-worker", "--worker-processes", "2"), "--no-worker and --worker-processes"),
    ],
)
def test_bad_worker_processes_is_one_line(
    tmp_path: Path, args: tuple[str, ...], named: str
) -> None:
    server = ServerProcess(tmp_path / "home", args=args).launch()
    assert server.proc is not None
    code = server.proc.wait(30)
    said = server.log().strip().splitlines()

    assert code == 2
    assert len(said) == 1 and named in said[0], said
