"""``jobdock worker --runtime slurm``: jobs submitted to a real one-node Slurm
cluster (tests/slurm.py) by real workers on a shared PostgreSQL store, behind
a real ``jobdock serve --no-worker``: the Slurm job id and its pending
reason on the attempt, stop and timeout through scancel, a worker killed
with -9 mid-job (restarted, or replaced by another), a failed node.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import slurm
from jobdock import Client, JobState, Reason, Stream
from support import ServerProcess, WorkerProcess, eventually

#: Jobs and workers of these tests wait at most this long.
TIMEOUT = 60.0


@pytest.fixture
def server(pg_url: str, tmp_path: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path / "server", args=("--no-worker",), db=pg_url).start()
    yield server
    server.stop()


def slurm_worker(tmp_path: Path, pg_url: str, name: str = "worker") -> WorkerProcess:
    """A Slurm worker; every one of a test shares the directory of its jobs."""
    return WorkerProcess(
        tmp_path / name,
        pg_url,
        labels={"engine": "slurm"},
        args=("--runtime", "slurm", "--slurm-partition", "main"),
        slurm_dir=str(tmp_path / "slurm"),
        slurm_poll_seconds="0.1",
        containers="false",
    )


@pytest.fixture
def worker(
    tmp_path: Path, pg_url: str, slurm_cluster: slurm.SlurmCluster
) -> Iterator[WorkerProcess]:
    worker = slurm_worker(tmp_path, pg_url).start()
    yield worker
    worker.stop()


def logs(client: Client, job_id: str, stream: Stream | None = None, **options: int) -> bytes:
    return b"".join(d for s, d in client.logs(job_id, **options) if stream in (None, s))


def slurm_spec(command: list[str], **fields: object) -> dict[str, object]:
    return {"command": command, "requires": {"engine": "slurm"}, **fields}


def test_a_job_runs_as_a_slurm_job_whose_id_the_attempt_records(
    server: ServerProcess, worker: WorkerProcess, slurm_cluster: slurm.SlurmCluster
) -> None:
    with Client(server.url) as client:
        job = client.submit(slurm_spec(["sh", "-c", "echo out; echo err >&2; exit 3"]))
        job = client.wait(job.id, timeout=TIMEOUT)
        stdout, stderr = logs(client, job.id, Stream.STDOUT), logs(client, job.id, Stream.STDERR)

    assert (job.state, job.reason, job.exit_code) == (JobState.FAILED, Reason.EXITED, 3)
    assert (stdout, stderr) == (b"out\n", b"err\n")
    engine_job = job.attempts[0].engine_job
    assert engine_job is not None and engine_job.isdigit()
    assert (job.attempts[0].engine_state or "").endswith(f" on {slurm_cluster.node}")
    shown = slurm_cluster.tool("scontrol", "show", "job", engine_job)
    assert f"JobName=jobdock-{job.id}.1" in shown and "Partition=main" in shown


def test_a_job_pending_in_slurm_shows_why_until_it_runs(
    server: ServerProcess,
    worker: WorkerProcess,
    slurm_cluster: slurm.SlurmCluster,
    tmp_path: Path,
) -> None:
    everything = {"cpus": slurm_cluster.cpus}
    go = tmp_path / "go"
    with Client(server.url) as client:
        holder = client.submit(
            slurm_spec(
                ["sh", "-c", f"until [ -e {go} ]; do sleep 0.05; done"], resources=everything
            )
        )
        eventually(lambda: client.get(holder.id).attempts[0].started_at, TIMEOUT, "the holder")
        waiter = client.submit(slurm_spec(["echo", "ran"], resources=everything))

        def pending() -> object:
            attempts = client.get(waiter.id).attempts
            return attempts and attempts[0].engine_state == "PENDING (Resources)" and attempts[0]

        attempt = eventually(pending, TIMEOUT, "the second job to wait for resources")
        assert client.get(waiter.id).state is JobState.RUNNING, "it holds its claim"
        assert attempt.started_at is None
        go.touch()
        waited = client.wait(waiter.id, timeout=TIMEOUT)
        assert logs(client, waiter.id) == b"ran\n"
        assert client.wait(holder.id, timeout=TIMEOUT).state is JobState.SUCCEEDED
    assert waited.state is JobState.SUCCEEDED
    assert waited.attempts[0].started_at is not None


def test_stop_sends_sigterm_then_kills_after_the_grace(
    server: ServerProcess, worker: WorkerProcess, slurm_cluster: slurm.SlurmCluster
) -> None:
    script = 'trap "echo got TERM" TERM; echo ready; while :; do sleep 0.05; done'
    with Client(server.url) as client:
        job = client.submit(slurm_spec(["sh", "-c", script], kill_grace=1))
        eventually(lambda: b"ready" in logs(client, job.id), TIMEOUT, "the job to start")
        client.cancel(job.id)
        job = client.wait(job.id, timeout=TIMEOUT)
        output = logs(client, job.id, Stream.STDOUT)

    # Every process of the job gets the SIGTERM (its sleep too), and only
    # the SIGKILL after the grace ends the shell that handles it.
    assert (job.state, job.reason, job.signal) == (JobState.CANCELLED, Reason.CANCELLED, 9)
    assert output == b"ready\ngot TERM\n"
    assert slurm.wait_no_jobs(slurm_cluster) == []


def test_a_job_past_its_timeout_is_stopped_through_slurm(
    server: ServerProcess, worker: WorkerProcess, slurm_cluster: slurm.SlurmCluster
) -> None:
    with Client(server.url) as client:
        job = client.submit(slurm_spec(["sleep", "100"], timeout=1, kill_grace=1))
        job = client.wait(job.id, timeout=TIMEOUT)

    assert (job.state, job.reason, job.signal) == (JobState.FAILED, Reason.TIMEOUT, 15)
    assert slurm.wait_no_jobs(slurm_cluster) == []


def test_a_job_over_its_memory_fails_as_oom(
    server: ServerProcess, worker: WorkerProcess, slurm_cluster: slurm.SlurmCluster
) -> None:
    grow = ["python3", "-c", "x = bytearray(300 << 20)"]
    with Client(server.url) as client:
        job = client.wait(
            client.submit(slurm_spec(grow, resources={"memory": "64m"})).id, timeout=TIMEOUT
        )

    assert (job.state, job.reason) == (JobState.FAILED, Reason.OOM)
    assert "more memory" in job.message


#: Says it started (and counts its runs), waits for the file "go", then
#: writes a lot and ends.
LONG_JOB = (
    "echo started; echo run >> {runs}; until [ -e {go} ]; do sleep 0.05; done; "
    "seq 1 100000; echo done >&2"
)
EXPECTED = b"started\n" + b"".join(b"%d\n" % n for n in range(1, 100001))


def _killed_mid_job(
    server: ServerProcess, first: WorkerProcess, then: WorkerProcess, tmp_path: Path
) -> None:
    runs, go = tmp_path / "runs", tmp_path / "go"
    with Client(server.url) as client:
        job = client.submit(slurm_spec(["sh", "-c", LONG_JOB.format(runs=runs, go=go)]))
        eventually(lambda: b"started" in logs(client, job.id), TIMEOUT, "the job to start")
        first.kill()
        then.start()
        # The job goes on in Slurm meanwhile: it ends while the new worker follows it.
        eventually(lambda: len(client.get(job.id).attempts) == 2, TIMEOUT, "a second attempt")
        go.touch()
        job = client.wait(job.id, timeout=TIMEOUT)
        stdout = logs(client, job.id, Stream.STDOUT)
        stderr = logs(client, job.id, Stream.STDERR)
    then.stop()

    assert job.state is JobState.SUCCEEDED
    assert [a.reason for a in job.attempts] == [Reason.WORKER_LOST, Reason.EXITED]
    assert (stdout, stderr) == (EXPECTED, b"done\n"), "the last attempt has all the output"
    assert runs.read_text() == "run\n", "Slurm ran the job once"
    assert job.attempts[0].engine_job == job.attempts[1].engine_job


def test_a_worker_killed_mid_job_and_restarted_follows_its_slurm_job_to_the_end(
    server: ServerProcess, pg_url: str, slurm_cluster: slurm.SlurmCluster, tmp_path: Path
) -> None:
    worker = slurm_worker(tmp_path, pg_url).start()

    _killed_mid_job(server, worker, worker, tmp_path)


def test_another_slurm_worker_adopts_the_job_of_one_that_died(
    server: ServerProcess, pg_url: str, slurm_cluster: slurm.SlurmCluster, tmp_path: Path
) -> None:
    dead = slurm_worker(tmp_path, pg_url, "dead").start()
    other = slurm_worker(tmp_path, pg_url, "other")

    _killed_mid_job(server, dead, other, tmp_path)


def test_a_worker_shut_down_leaves_its_slurm_job_for_the_next_attempt(
    server: ServerProcess, pg_url: str, slurm_cluster: slurm.SlurmCluster, tmp_path: Path
) -> None:
    first = slurm_worker(tmp_path, pg_url, "first").start()
    runs, go = tmp_path / "runs", tmp_path / "go"
    with Client(server.url) as client:
        job = client.submit(slurm_spec(["sh", "-c", LONG_JOB.format(runs=runs, go=go)]))
        eventually(lambda: b"started" in logs(client, job.id), TIMEOUT, "the job to start")
        assert first.stop(signal.SIGTERM) == 0
        second = slurm_worker(tmp_path, pg_url, "second").start()
        go.touch()
        job = client.wait(job.id, timeout=TIMEOUT)
        stdout = logs(client, job.id, Stream.STDOUT)
    second.stop()

    assert job.state is JobState.SUCCEEDED, [(a.reason, a.message) for a in job.attempts]
    assert stdout == EXPECTED
    assert runs.read_text() == "run\n"


def test_a_job_whose_node_fails_runs_again_without_spending_its_retries(
    server: ServerProcess, worker: WorkerProcess, slurm_cluster: slurm.SlurmCluster, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    script = f"echo run >> {runs}; [ $(wc -l < {runs}) -gt 1 ] && exit 0; sleep 100"
    with Client(server.url) as client:
        job = client.submit(slurm_spec(["sh", "-c", script], retry={"max_attempts": 1}))
        eventually(lambda: runs.exists(), TIMEOUT, "the first run")
        node = slurm_cluster.node
        slurm_cluster.tool("scontrol", "update", f"NodeName={node}", "State=DOWN", "Reason=test")
        try:
            eventually(lambda: len(client.get(job.id).attempts) == 2, TIMEOUT, "a second attempt")
        finally:
            # (Unless slurmd's next registration brought it back already.)
            with contextlib.suppress(RuntimeError):
                slurm_cluster.tool("scontrol", "update", f"NodeName={node}", "State=RESUME")
        job = client.wait(job.id, timeout=TIMEOUT)

    assert job.state is JobState.SUCCEEDED
    assert job.attempts[0].reason is Reason.WORKER_LOST
    assert "NODE_FAIL" in (job.attempts[0].message or "")


def test_many_followers_get_a_slurm_jobs_output_live_and_whole(
    server: ServerProcess, worker: WorkerProcess, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    script = f"echo first; until [ -e {go} ]; do sleep 0.05; done; seq 1 50000"
    expected = b"first\n" + b"".join(b"%d\n" % n for n in range(1, 50001))
    with Client(server.url) as client:
        job = client.submit(slurm_spec(["sh", "-c", script]))
        eventually(lambda: b"first" in logs(client, job.id), TIMEOUT, "the first line, live")

        def follow(offset: int) -> bytes:
            with Client(server.url) as own:
                return b"".join(d for _, d in own.logs(job.id, follow=True, offset=offset))

        with ThreadPoolExecutor(8) as pool:
            followers = [pool.submit(follow, offset) for offset in (0, 0, 0, 0, 3, 6, 100, 1000)]
            go.touch()
            received = [f.result(timeout=TIMEOUT) for f in followers]

    assert received[:4] == [expected] * 4
    assert received[4:] == [expected[3:], expected[6:], expected[100:], expected[1000:]]
