"""The Store contract for what a cluster engine's job says of an attempt
(the Slurm runtime's job id and state): recorded on the attempt, replaced
by the next word, kept once the attempt ended. (That a stale attempt
cannot write it is test_store_attempts' fencing suite.)"""

from __future__ import annotations

from store_actions import T0, claim, exited, submit

from jobdock.models.records import Started
from jobdock.store import Store


async def test_the_engine_job_and_its_state_are_recorded_on_the_attempt(store: Store) -> None:
    job = await submit(store)
    got = await claim(store)

    await store.note_engine(job.id, got.attempt, "123", "PENDING (Resources)")
    pending = (await store.get_job(job.id)).attempts[0]
    await store.note_engine(job.id, got.attempt, "123", "RUNNING on node7")
    await store.mark_started(job.id, got.attempt, Started(None, None, "submit-host", T0 + 2))
    await store.finish_attempt(job.id, got.attempt, exited(0, at=T0 + 3))
    done = (await store.get_job(job.id)).attempts[0]

    assert (pending.engine_job, pending.engine_state, pending.started_at) == (
        "123",
        "PENDING (Resources)",
        None,
    )
    assert (done.engine_job, done.engine_state, done.exit_code) == ("123", "RUNNING on node7", 0)
