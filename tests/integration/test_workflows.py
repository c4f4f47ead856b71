"""Workflows end to end (docs/workflows.md): a real server with its worker,
real processes as steps. Steps leave traces in files of the test's own
directory, so what ran, in which order and when is what the test checks.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import httpx
import pytest

from jobdock import ApiError, Client, Flow, Workflow
from jobdock.models import JobState, Reason, StepState, WorkflowState
from support import ServerProcess, WorkerProcess, eventually

#: Generous for a loaded 2-core machine: workflows here take a few seconds.
DEADLINE = 60.0


def sh(script: str) -> list[str]:
    return ["sh", "-c", script]


def note(path: Path, text: str) -> list[str]:
    """A command that appends a line to ``path``."""
    return sh(f"echo {shlex.quote(text)} >> {shlex.quote(str(path))}")


def lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def finished(client: Client, workflow: Workflow) -> Workflow:
    done = client.wait_workflow(workflow.id, timeout=DEADLINE)
    assert done.terminal, f"workflow still {done.state}: {done.model_dump_json(indent=1)}"
    return done


def steps(workflow: Workflow) -> dict[str, StepState]:
    return {step.name: step.state for step in workflow.steps}


def three_steps(trace: Path, fail_at: str = "", revert_fails: str = "") -> Flow:
    flow = Flow("three")
    for name, needs in (("one", []), ("two", ["one"]), ("three", ["two"])):
        command = sh(f"echo {name} >> {trace}; exit 1") if name == fail_at else note(trace, name)
        revert = note(trace, f"undo-{name}")
        if name == revert_fails:
            revert = sh(f"echo undo-{name} >> {trace}; exit 5")
        flow.step(name, command, needs=needs, revert=revert)
    return flow


def test_a_three_step_workflow_runs_its_steps_in_order_and_succeeds(
    client: Client, tmp_path: Path
) -> None:
    trace = tmp_path / "trace"

    done = finished(client, client.submit_workflow(three_steps(trace)))

    assert done.state is WorkflowState.SUCCEEDED
    assert lines(trace) == ["one", "two", "three"]
    assert [(s.state, s.completed, s.attempt) for s in done.steps] == [
        (StepState.SUCCEEDED, 1, 1),
        (StepState.SUCCEEDED, 2, 1),
        (StepState.SUCCEEDED, 3, 1),
    ]
    job = client.get(done.steps[1].job_id or "")
    assert job.labels["jobdock.io/workflow"] == done.id
    assert job.labels["jobdock.io/step"] == "two"


def test_a_failure_in_step_three_reverts_two_then_one_and_ends_failed(
    client: Client, tmp_path: Path
) -> None:
    trace = tmp_path / "trace"

    done = finished(client, client.submit_workflow(three_steps(trace, fail_at="three")))

    assert done.state is WorkflowState.FAILED
    assert lines(trace) == ["one", "two", "three", "undo-two", "undo-one"]
    assert steps(done) == {"one": "reverted", "two": "reverted", "three": "failed"}
    assert done.error == "step 'three' failed: exited with code 1"


def test_a_revert_that_fails_ends_revert_failed_naming_the_step(
    client: Client, tmp_path: Path
) -> None:
    trace = tmp_path / "trace"
    flow = three_steps(trace, fail_at="three", revert_fails="two")

    done = finished(client, client.submit_workflow(flow))

    assert done.state is WorkflowState.REVERT_FAILED
    assert "step 'two'" in (done.error or "")
    # It stops there for a human: step one is not reverted.
    assert lines(trace) == ["one", "two", "three", "undo-two"]
    assert steps(done) == {"one": "succeeded", "two": "revert_failed", "three": "failed"}


def test_parameters_and_outputs_flow_into_later_steps(client: Client, tmp_path: Path) -> None:
    trace = tmp_path / "trace"
    flow = (
        Flow("outputs", params={"region": None, "size": 2})
        .step("make", sh('echo making; echo \'{"id": "vm-{{ params.size }}"}\''))
        .step(
            "use",
            note(trace, "{{ params.region }}:{{ steps.make.output.id }}"),
            needs=["make"],
            revert=note(trace, "undo-{{ steps.use.output }}"),
        )
    )

    done = finished(client, client.submit_workflow(flow, params={"region": "eu"}))

    assert done.state is WorkflowState.SUCCEEDED, done.error
    assert done.params == {"region": "eu", "size": 2}
    assert done.steps[0].output == {"id": "vm-2"}
    assert lines(trace) == ["eu:vm-2"]


def test_parallel_branches_overlap_within_the_concurrency_limit(
    client: Client, tmp_path: Path
) -> None:
    times = tmp_path / "times"
    flow = Flow("fan-out", concurrency=2).step("root", ["true"])
    for branch in "abc":
        flow.step(
            branch,
            sh(f"s=$(date +%s.%N); sleep 1.5; echo {branch} $s $(date +%s.%N) >> {times}"),
            needs=["root"],
        )
    flow.step("join", ["true"], needs=["a", "b", "c"])

    done = finished(client, client.submit_workflow(flow))

    assert done.state is WorkflowState.SUCCEEDED
    spans = [tuple(map(float, line.split()[1:])) for line in times.read_text().splitlines()]
    assert len(spans) == 3
    # How many branches ran at each moment one started.
    at_once = [sum(1 for s, e in spans if s <= start < e) for start, _ in spans]
    assert max(at_once) == 2, spans


def test_cancel_mid_run_stops_running_steps_and_reverts_completed_ones(
    client: Client, tmp_path: Path
) -> None:
    trace = tmp_path / "trace"
    flow = (
        Flow("cancel-me")
        .step("quick", note(trace, "quick"), revert=note(trace, "undo-quick"))
        .step(
            "slow",
            sh(f"echo slow >> {trace}; sleep 60"),
            needs=["quick"],
            revert=note(trace, "undo-slow"),
        )
        .step("after", note(trace, "after"), needs=["slow"])
    )
    workflow = client.submit_workflow(flow)
    eventually(lambda: "slow" in lines(trace), DEADLINE, "the slow step to start")

    client.cancel_workflow(workflow.id)
    done = finished(client, workflow)

    assert done.state is WorkflowState.CANCELLED
    assert steps(done) == {"quick": "reverted", "slow": "cancelled", "after": "skipped"}
    assert lines(trace) == ["quick", "slow", "undo-quick"]
    slow = client.get(done.steps[1].job_id or "")
    assert slow.state is JobState.CANCELLED and slow.reason is Reason.CANCELLED
    with pytest.raises(ApiError) as refused:
        client.cancel_workflow(workflow.id)
    assert refused.value.status == 409


def post(server: ServerProcess, document: Any, **headers: str) -> httpx.Response:
    body = document if isinstance(document, str) else json.dumps(document)
    return httpx.post(f"{server.url}/v1/workflows", content=body, headers=headers)


def doc(*steps: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"name": "bad", **fields, "steps": list(steps)}


def job(name: str, *needs: str, command: list[str] | None = None) -> dict[str, Any]:
    return {"name": name, "needs": list(needs), "job": {"command": command or ["true"]}}


@pytest.mark.parametrize(
    ("document", "field", "words"),
    [
        (doc(job("a", "c"), job("b", "a"), job("c", "b")), "steps.0.needs", "a -> c -> b -> a"),
        (doc(job("a", "nope")), "steps.0.needs.0", "no step is named 'nope'"),
        (doc(job("a"), job("a")), "steps.1.name", "comes twice"),
        (
            doc(job("a", command=["echo", "{{ params.missing }}"])),
            "steps.0.job.command.1",
            "params.missing is not a parameter",
        ),
        (
            doc(job("a", command=["echo", "{{ os.system }}"])),
            "steps.0.job",
            "is not a reference",
        ),
        (
            doc(job("a"), job("b", command=["echo", "{{ steps.a.output }}"])),
            "steps.1.job.command.1",
            "does not run before this one",
        ),
        (
            doc(job("a", command=["x"]), params={"who": None}),
            "params.who",
            "has no value",
        ),
        (doc({"name": "a", "job": {"comand": ["x"]}}), "steps.0.job.comand", "unknown field"),
        (doc(), "steps", "at least 1"),
    ],
    ids=[
        "cycle",
        "unknown-need",
        "duplicate",
        "param",
        "syntax",
        "output",
        "required",
        "field",
        "empty",
    ],
)
def test_an_invalid_document_answers_422_naming_the_problem(
    server: ServerProcess, document: dict[str, Any], field: str, words: str
) -> None:
    response = post(server, document)

    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["field"] == field
    assert words in error["message"]


def test_a_yaml_document_is_accepted(server: ServerProcess, client: Client) -> None:
    document = """
name: from-yaml
params: {greeting: hi}
steps:
  - name: say
    job: {command: [echo, "{{ params.greeting }}"]}
"""
    response = post(server, document, **{"content-type": "application/yaml"})

    assert response.status_code == 201, response.text
    done = client.wait_workflow(response.json()["id"], timeout=DEADLINE)
    assert done.state is WorkflowState.SUCCEEDED


def test_bad_json_and_bad_yaml_answer_400(server: ServerProcess) -> None:
    assert post(server, "{").status_code == 400
    assert post(server, "a: [", **{"content-type": "application/yaml"}).status_code == 400


# -- many workers (PostgreSQL) -----------------------------------------------------------


def test_a_workflow_whose_worker_is_killed_mid_step_finishes_on_another(
    pg_url: str, tmp_path: Path
) -> None:
    server = ServerProcess(tmp_path / "server", args=("--no-worker",), db=pg_url)
    workers = [WorkerProcess(tmp_path / f"worker-{i}", pg_url) for i in range(2)]
    try:
        server.launch()
        for worker in workers:
            worker.launch()
        server.wait_healthy()
        for worker in workers:
            worker.wait_started()
        runs = tmp_path / "runs"
        flow = (
            Flow("resume")
            .step("one", note(runs, "one"))
            .step(
                "two",
                # The first attempt waits to be killed; the next one goes on.
                sh(
                    f'echo two-$JOBDOCK_ATTEMPT >> {runs}; [ "$JOBDOCK_ATTEMPT" = 1 ] && sleep 60; true'
                ),
                needs=["one"],
            )
            .step("three", note(runs, "three"), needs=["two"])
        )
        with Client(server.url) as client:
            workflow = client.submit_workflow(flow)
            eventually(lambda: "two-1" in lines(runs), DEADLINE, "step two to start")
            two = client.workflow(workflow.id).steps[1]
            first = client.get(two.job_id or "")
            [victim] = [w for w in workers if w.id == first.attempts[0].worker]
            [survivor] = [w for w in workers if w is not victim]

            victim.kill()
            done = finished(client, workflow)

            assert done.state is WorkflowState.SUCCEEDED, done.error
            assert lines(runs) == ["one", "two-1", "two-2", "three"]
            job = client.get(two.job_id or "")
            assert [a.reason for a in job.attempts] == [Reason.WORKER_LOST, Reason.EXITED]
            assert job.attempts[1].worker == survivor.id
            assert done.steps[1].attempt == 2
    finally:
        for proc in [*workers, server]:
            if proc.proc is not None and proc.proc.poll() is None:
                proc.stop()
        print(*(f"--- {p.log_path}:\n{p.log()[-3000:]}" for p in [server, *workers]))
