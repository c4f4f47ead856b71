"""The Python library as httpx and Celery users expect it, against a real
server: the exceptions it raises are the exported ones, a wait that runs out
of time says so, ``submit`` returns a handle to wait for, follow and stop,
and ``@jobdock.task`` functions run as jobs and give their result back."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import pytest

import jobdock
from jobdock import Client, JobState, Stream
from support import ServerProcess

# -- exceptions -------------------------------------------------------------------


def test_an_unknown_job_raises_job_not_found(client: Client) -> None:
    with pytest.raises(jobdock.JobNotFound) as raised:
        client.get("nosuchjob")

    assert isinstance(raised.value, jobdock.ApiError)
    assert isinstance(raised.value, jobdock.NotFound)
    assert (raised.value.status, raised.value.code) == (404, "not_found")
    assert raised.value.job_id == "nosuchjob"
    assert "nosuchjob" in raised.value.message
    with pytest.raises(jobdock.JobNotFound):
        client.cancel("nosuchjob")


def test_cancelling_a_finished_job_raises_illegal_transition(client: Client) -> None:
    job = client.submit({"command": ["true"]}).wait(timeout=60)

    with pytest.raises(jobdock.IllegalTransition) as raised:
        job.cancel()

    assert (raised.value.status, raised.value.code) == (409, "illegal_transition")
    assert (raised.value.job_id, raised.value.state) == (job.id, "succeeded")


def test_unknown_workflows_and_schedules_raise_their_not_found(client: Client) -> None:
    with pytest.raises(jobdock.WorkflowNotFound) as workflow:
        client.workflow("nosuchflow")
    with pytest.raises(jobdock.ScheduleNotFound) as schedule:
        client.remove_schedule("nosuchschedule")

    assert workflow.value.workflow_id == "nosuchflow"
    assert schedule.value.name == "nosuchschedule"
    assert isinstance(schedule.value, jobdock.ApiError)


def test_a_spec_the_server_refuses_is_invalid_spec_with_its_status(client: Client) -> None:
    with pytest.raises(jobdock.InvalidSpec) as raised:
        client.submit({"command": ["true"], "secrets": [{"name": "nosuch", "env": "X"}]})

    assert isinstance(raised.value, jobdock.ApiError)
    assert raised.value.status == 422
    assert "nosuch" in raised.value.message


# -- waiting ------------------------------------------------------------------------


def test_a_wait_past_its_timeout_raises_timeout_error(client: Client) -> None:
    job = client.submit({"command": ["sleep", "100"]})
    try:
        with pytest.raises(TimeoutError) as raised:
            client.wait(job.id, timeout=0.2)
        with pytest.raises(jobdock.WaitTimeout) as by_handle:
            job.wait(timeout=0.2)
        unfinished = client.wait(job.id, timeout=0.2, raise_on_timeout=False)
    finally:
        client.cancel(job.id)

    assert isinstance(raised.value, jobdock.WaitTimeout)
    assert raised.value.job.id == job.id
    assert raised.value.job.state in (JobState.QUEUED, JobState.RUNNING)
    assert f"job {job.id} is still" in str(by_handle.value)
    assert unfinished.state in (JobState.QUEUED, JobState.RUNNING)


# -- job handles ----------------------------------------------------------------------


def test_submit_returns_a_handle_that_follows_and_waits(client: Client) -> None:
    job = client.submit({"command": ["sh", "-c", "echo out; echo err >&2; exit 3"], "name": "h"})

    assert isinstance(job, jobdock.JobHandle)
    assert isinstance(job, jobdock.Job)
    assert (job.name, job.state) == ("h", JobState.QUEUED)
    pieces = list(job.logs(follow=True))
    assert job.wait(timeout=60) is job
    assert (job.state, job.exit_code) == (JobState.FAILED, 3)
    assert "".join(text for stream, text in pieces if stream is Stream.STDOUT) == "out\n"
    assert "".join(text for stream, text in pieces if stream is Stream.STDERR) == "err\n"
    again = client.get(job.id)
    assert isinstance(again, jobdock.JobHandle)
    assert again.refresh().exit_code == 3


def test_a_handle_cancels_its_job(client: Client) -> None:
    job = client.submit({"command": ["sleep", "100"]})

    job.cancel()

    assert job.wait(timeout=60).state is JobState.CANCELLED


def test_logs_are_text_as_a_run_result_is_and_bytes_on_request(client: Client) -> None:
    # "é" split across two writes, then a byte that is not UTF-8.
    script = r"printf '\303'; sleep 0.2; printf '\251 ok \377\n'"
    result = client.run({"command": ["sh", "-c", script]})
    job = client.get(result.job.id)

    text = "".join(piece for _, piece in job.logs())
    raw = b"".join(piece for _, piece in job.logs(text=False))

    assert text == result.stdout == "é ok \ufffd\n"
    assert raw == b"\xc3\xa9 ok \xff\n"


def test_a_handle_gives_the_tail_of_its_logs_with_arrival_times(client: Client) -> None:
    result = client.run({"command": ["sh", "-c", "echo one; echo two; echo three"]})
    job = client.get(result.job.id)

    last = "".join(piece for _, piece in job.logs(tail=1))
    stamped = "".join(piece for _, piece in job.logs(tail=2, timestamps=True)).splitlines()

    assert last == "three\n"
    assert [line.split(" ", 1)[1] for line in stamped] == ["two", "three"]
    assert all(line.split(" ", 1)[0].startswith("20") for line in stamped), stamped


# -- tasks ------------------------------------------------------------------------------

MODULE = """
import os

import jobdock

# The worker runs the call in its own Python; this module is on its path.
WORKER = {"env": {"PYTHONPATH": os.path.dirname(os.path.abspath(__file__))}}


@jobdock.task(job=WORKER)
def add(x: int, y: int = 10, **extra: int) -> dict:
    print("adding", x, y)
    return {"sum": x + y + sum(extra.values()), "pid": os.getpid()}


@jobdock.task(job=WORKER)
async def greet(name: str) -> str:
    return f"hello {name}"


@jobdock.task(job=WORKER)
def broken(what: str) -> None:
    raise ValueError(f"cannot do {what}")
"""


@pytest.fixture
def teamtasks(tmp_path: Path) -> Path:
    """A directory holding the module ``teamtasks`` with three tasks."""
    (tmp_path / "teamtasks.py").write_text(MODULE)
    return tmp_path


def _imported(path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(path))
    monkeypatch.delitem(sys.modules, "teamtasks", raising=False)
    import teamtasks  # type: ignore[import-not-found]

    return teamtasks  # type: ignore[no-any-return]


def test_a_task_submitted_from_a_script_returns_its_result(
    server: ServerProcess, teamtasks: Path
) -> None:
    script = textwrap.dedent(
        """
        import os
        from teamtasks import add
        run = add.submit(2, y=3, bonus=4)
        result = run.result(timeout=60)
        print(result["sum"], result["pid"] != os.getpid(), run.workflow().steps[0].job_id)
        """
    )
    env = {**os.environ, "JOBDOCK_URL": server.url, "PYTHONPATH": str(teamtasks)}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
    )

    assert done.returncode == 0, done.stderr
    total, elsewhere, job_id = done.stdout.split()
    assert (total, elsewhere) == ("9", "True")
    with Client(server.url) as client:
        job = client.get(job_id)
        assert job.spec.command[:2] == ["jobdock.call", "teamtasks:add"]
        assert "".join(text for _, text in job.logs()).startswith("adding 2 3")


def test_an_async_task_and_a_local_call(
    client: Client, teamtasks: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = _imported(teamtasks, monkeypatch)

    run = module.greet.using(client).submit("ada")

    assert run.result(timeout=60) == "hello ada"
    assert module.add(1, 2)["sum"] == 3, "called here, a task is its function"


def test_a_task_that_raises_raises_task_failed_with_its_traceback(
    client: Client, teamtasks: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = _imported(teamtasks, monkeypatch)
    run = module.broken.using(client).submit("that")

    with pytest.raises(jobdock.TaskFailed) as raised:
        run.result(timeout=60)

    assert "ValueError: cannot do that" in str(raised.value)
    assert "Traceback" in raised.value.traceback
    assert raised.value.workflow.state == "failed"


def test_task_arguments_are_checked_before_anything_is_sent(
    teamtasks: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = _imported(teamtasks, monkeypatch)
    # An unreachable server: nothing may be sent.
    nowhere = Client("http://127.0.0.1:9")

    with pytest.raises(TypeError, match="JSON"):
        module.add.using(nowhere).submit(object())
    with pytest.raises(TypeError):
        module.add.using(nowhere).submit(1, 2, 3)
    nowhere.close()


async def test_an_async_client_returns_an_async_handle(server: ServerProcess) -> None:
    async with jobdock.AsyncClient(server.url) as client:
        job = await client.submit({"command": ["sh", "-c", "printf 'h\\303'; printf '\\251\\n'"]})

        assert isinstance(job, jobdock.AsyncJobHandle)
        texts = [text async for _, text in job.logs(follow=True)]
        assert (await job.wait(timeout=60)).exit_code == 0
        assert "".join(texts) == "hé\n"
        with pytest.raises(jobdock.IllegalTransition):
            await job.cancel()
