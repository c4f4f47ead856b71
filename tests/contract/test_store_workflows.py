"""The Store contract for workflows (docs/workflows.md): storing one, and
moving it on as its steps' jobs end. Runs on every store (conftest.STORES);
jobs are claimed and finished by hand, times passed explicitly.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from store_actions import LEASE, T0, exited

from conftest import StoreOpener
from jobdock.errors import IllegalTransition, WorkflowNotFound
from jobdock.models import JobState, StepState, Stream, WorkflowState
from jobdock.models.records import NewStep, NewWorkflow
from jobdock.models.workflow import Workflow
from jobdock.settings import Settings
from jobdock.store import LogChunk, Store
from jobdock.submit import Policy, new_job_id
from jobdock.workflow_plan import WorkflowPlanner
from jobdock.workflows import STEP_LABEL, WORKFLOW_LABEL

#: The planner a server moves its workflows on with (default settings).
PLAN = WorkflowPlanner(Policy(Settings()))


def step(name: str, *needs: str, revert: bool = True, command: list[str] | None = None) -> NewStep:
    return NewStep(
        name,
        list(needs),
        {"command": command or ["run", name]},
        {"command": ["undo", name]} if revert else None,
    )


async def create(store: Store, *steps: NewStep, concurrency: int = 4, retries: int = 0) -> Workflow:
    new = NewWorkflow(new_job_id(), "test", {}, concurrency, list(steps), T0, retries=retries)
    return await store.create_workflow(new, PLAN)


async def run_next(store: Store, code: int = 0, stdout: bytes = b"") -> dict[str, str]:
    """Claim every queued job, finish each with ``code`` (after writing
    ``stdout``), advance their workflows; the labels of the jobs run."""
    claims = await store.claim_jobs("w1", 100, T0, LEASE)
    assert claims, "expected a job to run"
    for claim in claims:
        if stdout:
            chunk = LogChunk(0, Stream.STDOUT, 0, 0, stdout)
            await store.append_logs(claim.job_id, claim.attempt, [chunk])
        await store.finish_attempt(claim.job_id, claim.attempt, exited(code))
        await store.advance_workflow(claim.spec.labels[WORKFLOW_LABEL], T0 + 1, PLAN)
    return {c.spec.labels[STEP_LABEL]: c.spec.labels["jobdock.io/phase"] for c in claims}


def states(workflow: Workflow) -> dict[str, StepState]:
    return {s.name: s.state for s in workflow.steps}


async def test_a_new_workflow_starts_the_steps_that_need_nothing(store: Store) -> None:
    created = await create(store, step("a"), step("b"), step("c", "a", "b"))

    assert created.state is WorkflowState.RUNNING
    assert states(created) == {"a": "running", "b": "running", "c": "pending"}
    job = await store.get_job(created.steps[0].job_id or "")
    assert job.labels[WORKFLOW_LABEL] == created.id
    assert job.spec.command == ["run", "a"]
    assert job.name == "test.a"


async def test_steps_run_in_order_and_the_workflow_succeeds(store: Store) -> None:
    flow = await create(store, step("a"), step("b", "a"), step("c", "b"))

    assert await run_next(store) == {"a": "execute"}
    assert await run_next(store) == {"b": "execute"}
    assert await run_next(store) == {"c": "execute"}

    done = await store.get_workflow(flow.id)
    assert done.state is WorkflowState.SUCCEEDED
    assert [s.completed for s in done.steps] == [1, 2, 3]
    assert done.finished_at is not None


async def test_a_later_step_gets_an_earlier_steps_output(store: Store) -> None:
    flow = await create(
        store,
        step("a"),
        step("b", "a", command=["echo", "{{ steps.a.output.id }}", "{{ steps.a.output }}"]),
    )

    await run_next(store, stdout=b'starting\n{"id": "vm-7"}\n')

    after = await store.get_workflow(flow.id)
    assert after.steps[0].output == {"id": "vm-7"}
    job = await store.get_job(after.steps[1].job_id or "")
    assert job.spec.command == ["echo", "vm-7", '{"id":"vm-7"}']


async def test_a_step_whose_output_lacks_a_key_used_later_fails(store: Store) -> None:
    flow = await create(
        store, step("a"), step("b", "a", command=["echo", "{{ steps.a.output.x }}"])
    )

    await run_next(store, stdout=b"not json\n")

    after = await store.get_workflow(flow.id)
    assert after.steps[0].output is None
    assert after.steps[1].state is StepState.FAILED
    assert "has no 'x'" in (after.steps[1].error or "")
    assert await run_next(store) == {"a": "revert"}
    assert (await store.get_workflow(flow.id)).state is WorkflowState.FAILED


async def test_a_failed_step_reverts_the_completed_ones_newest_first(store: Store) -> None:
    flow = await create(store, step("a"), step("b", "a"), step("c", "b"))
    await run_next(store)
    await run_next(store)

    await run_next(store, code=1)  # c fails

    assert (await store.get_workflow(flow.id)).state is WorkflowState.REVERTING
    assert await run_next(store) == {"b": "revert"}
    assert await run_next(store) == {"a": "revert"}
    done = await store.get_workflow(flow.id)
    assert done.state is WorkflowState.FAILED
    assert states(done) == {"a": "reverted", "b": "reverted", "c": "failed"}
    assert done.error == "step 'c' failed: exited with code 1"


async def test_a_failed_revert_stops_the_workflow_there(store: Store) -> None:
    flow = await create(store, step("a"), step("b", "a"), step("c", "b"))
    for code in (0, 0, 1):
        await run_next(store, code=code)

    assert await run_next(store, code=3) == {"b": "revert"}

    done = await store.get_workflow(flow.id)
    assert done.state is WorkflowState.REVERT_FAILED
    assert states(done) == {"a": "succeeded", "b": "revert_failed", "c": "failed"}
    assert done.error == "the revert of step 'b' failed: exited with code 3"
    assert await store.claim_jobs("w1", 10, T0, LEASE) == []


async def test_no_more_steps_run_at_once_than_the_concurrency(store: Store) -> None:
    flow = await create(store, *(step(n) for n in "abcde"), concurrency=2)

    assert len(await run_next(store)) == 2
    assert len(await run_next(store)) == 2
    assert len(await run_next(store)) == 1
    assert (await store.get_workflow(flow.id)).state is WorkflowState.SUCCEEDED


async def test_cancel_stops_running_steps_skips_pending_ones_and_reverts(store: Store) -> None:
    flow = await create(store, step("a"), step("b", "a"), step("c", "b"))
    await run_next(store)
    [running] = await store.claim_jobs("w1", 10, T0, LEASE)

    after = await store.cancel_workflow(flow.id, T0 + 2, actor="alice", plan=PLAN)

    assert after.state is WorkflowState.CANCELLING
    assert (await store.get_job(running.job_id)).cancel_requested
    assert states(after)["c"] == "skipped"
    await store.finish_attempt(running.job_id, running.attempt, exited(143))
    await store.advance_workflow(flow.id, T0 + 3, PLAN)
    assert await run_next(store) == {"a": "revert"}
    done = await store.get_workflow(flow.id)
    assert done.state is WorkflowState.CANCELLED
    assert states(done) == {"a": "reverted", "b": "failed", "c": "skipped"}


async def test_cancelling_a_finished_workflow_is_refused(store: Store) -> None:
    flow = await create(store, step("a"))
    await run_next(store)

    with pytest.raises(IllegalTransition):
        await store.cancel_workflow(flow.id, T0 + 2, plan=PLAN)
    with pytest.raises(WorkflowNotFound):
        await store.get_workflow("nope")


async def test_a_queued_step_is_cancelled_at_once(store: Store) -> None:
    flow = await create(store, step("a", revert=False))

    after = await store.cancel_workflow(flow.id, T0 + 2, plan=PLAN)

    assert after.state is WorkflowState.CANCELLED
    assert (await store.get_job(after.steps[0].job_id or "")).state is JobState.CANCELLED


async def test_the_sweep_moves_on_a_workflow_nobody_advanced(store: Store) -> None:
    flow = await create(store, step("a"), step("b", "a"))
    [claim] = await store.claim_jobs("w1", 10, T0, LEASE)
    await store.finish_attempt(claim.job_id, claim.attempt, exited(0))  # and the worker dies

    assert await store.advance_workflows(T0 + 5, PLAN) == 1

    assert states(await store.get_workflow(flow.id)) == {"a": "succeeded", "b": "running"}


async def test_concurrent_advances_start_each_step_once(
    store: Store, open_store: StoreOpener
) -> None:
    others = [await open_store() for _ in range(3)]  # as other servers and workers would
    flow = await create(store, step("a"), *(step(f"b{i}", "a") for i in range(4)), concurrency=2)
    [claim] = await store.claim_jobs("w1", 10, T0, LEASE)
    await store.finish_attempt(claim.job_id, claim.attempt, exited(0))

    await asyncio.gather(
        *(
            one.advance_workflow(flow.id, T0 + 1, PLAN)
            for one in [store, *others]
            for _ in range(3)
        ),
        *(one.advance_workflows(T0 + 1, PLAN) for one in others),
    )
    await store.advance_workflow(flow.id, T0 + 2, PLAN)  # in case every one found it held

    after = await store.get_workflow(flow.id)
    assert sorted(s.state for s in after.steps).count(StepState.RUNNING) == 2
    page = await store.list_jobs(labels={WORKFLOW_LABEL: flow.id})
    assert len(page.jobs) == 3


async def test_workflows_are_listed_newest_first_by_owner(store: Store) -> None:
    async def of(owner: str) -> str:
        new = NewWorkflow(new_job_id(), "w", {"x": 1}, 1, [step("a")], T0, owner)
        return (await store.create_workflow(new, PLAN)).id

    first, other, last = await of("alice"), await of("bob"), await of("alice")

    page = await store.list_workflows(owner="alice")
    assert [w.id for w in page.workflows] == [last, first]
    assert page.workflows[0].params == {"x": 1}
    assert [w.id for w in (await store.list_workflows(limit=1)).workflows] == [last]
    everyone: Any = await store.list_workflows(states=[WorkflowState.RUNNING])
    assert {w.id for w in everyone.workflows} == {first, other, last}


# -- rounds: a workflow run again after a failed, reverted round ---------------------------


async def test_a_failed_round_is_reverted_then_run_again_and_recorded(store: Store) -> None:
    flow = await create(store, step("a"), step("b", "a"), retries=2)
    await run_next(store)
    first_jobs = [s.job_id for s in (await store.get_workflow(flow.id)).steps]
    await run_next(store, code=1)  # b fails
    assert await run_next(store) == {"a": "revert"}

    again = await store.get_workflow(flow.id)
    assert again.state is WorkflowState.RUNNING
    assert (again.round, again.retries) == (2, 2)
    assert states(again) == {"a": "running", "b": "pending"}
    assert again.error is None
    [earlier] = again.rounds
    assert earlier.number == 1
    assert earlier.error == "step 'b' failed: exited with code 1"
    assert {s.name: s.state for s in earlier.steps} == {"a": "reverted", "b": "failed"}
    assert [s.job_id for s in earlier.steps] == first_jobs
    assert earlier.steps[1].job_state is JobState.FAILED
    job = await store.get_job(again.steps[0].job_id or "")
    assert job.labels["jobdock.io/round"] == "2"
    assert again.steps[0].job_id not in first_jobs

    await run_next(store)
    await run_next(store)
    done = await store.get_workflow(flow.id)
    assert done.state is WorkflowState.SUCCEEDED
    assert done.round == 2
    assert len(done.rounds) == 1
    [listed] = (await store.list_workflows(states=(), owner=None, limit=10, cursor=None)).workflows
    assert listed.rounds == done.rounds


async def test_a_workflow_fails_once_its_retries_are_spent(store: Store) -> None:
    flow = await create(store, step("a", revert=False), retries=1)
    await run_next(store, code=1)
    assert (await store.get_workflow(flow.id)).round == 2
    await run_next(store, code=1)

    done = await store.get_workflow(flow.id)
    assert done.state is WorkflowState.FAILED
    assert done.round == 2
    assert [r.number for r in done.rounds] == [1]
    assert done.error == "step 'a' failed: exited with code 1"


async def test_a_failed_revert_stops_the_retries(store: Store) -> None:
    flow = await create(store, step("a"), step("b", "a"), retries=3)
    await run_next(store)
    await run_next(store, code=1)
    await run_next(store, code=1)  # a's revert fails

    done = await store.get_workflow(flow.id)
    assert done.state is WorkflowState.REVERT_FAILED
    assert (done.round, done.rounds) == (1, [])


async def test_a_cancel_while_reverting_stops_the_next_round(store: Store) -> None:
    flow = await create(store, step("a"), step("b", "a"), retries=3)
    await run_next(store)
    await run_next(store, code=1)  # b fails: a's revert is queued
    stopping = await store.cancel_workflow(flow.id, T0 + 2, actor="ann", plan=PLAN)
    assert stopping.state is WorkflowState.CANCELLING
    await run_next(store)

    done = await store.get_workflow(flow.id)
    assert done.state is WorkflowState.CANCELLED
    assert (done.round, done.rounds) == (1, [])
