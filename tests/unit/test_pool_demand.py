"""How many machines a pool starts for the jobs that wait: none for jobs a
live worker has room for, up to ``max``, at least ``min``; and how long a
pool backs off after failures in a row (docs/machines.md)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from jobdock.machines.demand import PoolView, Slots, machines_to_start
from jobdock.machines.lifecycle import BACKOFF_MAX, backoff
from jobdock.models import JobSpec
from jobdock.pool_settings import PoolSettings, pool_of
from jobdock.settings import Settings
from jobdock.waiting import reason_of

GPU = {"pool": "gpu"}


def pool(**fields: object) -> PoolSettings:
    base = {"name": "gpu", "provider": "command", "labels": GPU, "max": 4}
    base["command"] = {"start": ["start"], "stop": ["stop"]}
    return PoolSettings.model_validate({**base, **fields})


def view(settings: PoolSettings, starting: int = 0, live: int = 0) -> PoolView:
    return PoolView(settings, starting=starting, live=live)


def test_jobs_that_require_a_pools_labels_start_machines_up_to_its_max() -> None:
    plan = machines_to_start([GPU] * 30, [], [view(pool())])

    assert plan == {"gpu": (4, 30)}


def test_nothing_starts_for_jobs_a_live_worker_has_room_for() -> None:
    agent = Slots({"pool": "gpu", "host": "a"}, free=2)

    assert machines_to_start([GPU, GPU], [agent], [view(pool())]) == {"gpu": (0, 0)}
    assert machines_to_start([GPU] * 3, [agent], [view(pool())]) == {"gpu": (1, 1)}


def test_machines_starting_count_for_the_jobs_they_will_take() -> None:
    plan = machines_to_start([GPU] * 3, [], [view(pool(capacity=2), starting=1, live=1)])

    assert plan == {"gpu": (1, 3)}


def test_a_pool_keeps_min_machines_and_starts_none_for_jobs_not_its_own() -> None:
    waiting = [{"pool": "cpu"}, {}, {"jobdock.io/container": "yes"}]

    assert machines_to_start(waiting, [], [view(pool(min=2))]) == {"gpu": (2, 0)}
    assert machines_to_start(waiting, [], [view(pool(min=2), live=2)]) == {"gpu": (0, 0)}


def test_a_job_is_the_first_pool_s_that_has_all_its_labels() -> None:
    small, big = pool(name="small", labels={"pool": "gpu"}), pool(name="big", labels=GPU)

    assert pool_of({"pool": "gpu", "jobdock.io/container": "yes"}, [small, big]) is small
    assert pool_of({"pool": "gpu", "size": "xl"}, [small, big]) is None


def test_back_off_doubles_with_each_failure_and_is_bounded() -> None:
    assert [backoff(n) for n in range(5)] == [0.0, 2.0, 4.0, 8.0, 16.0]
    assert backoff(10_000) == BACKOFF_MAX


def test_pools_need_tokens() -> None:
    with pytest.raises(ValidationError, match=r"\[\[pools\]\] needs tokens = true"):
        Settings(pools=[pool()])


def test_a_job_a_pool_covers_is_not_said_to_wait_for_a_worker_nor_refused() -> None:
    # /v1/jobs/run and ConJob's /job/run refuse a job that has a waiting
    # reason; one a pool starts machines for must not be refused.
    spec = JobSpec.model_validate({"command": ["true"], "requires": GPU})
    other = JobSpec.model_validate({"command": ["true"], "requires": {"pool": "tpu"}})
    image = JobSpec.model_validate({"image": "builder:1", "command": ["make"], "requires": GPU})
    cpu_only = [{"arch": "amd64"}]

    assert reason_of(spec, cpu_only, None) is not None
    assert reason_of(spec, cpu_only, None, [pool()]) is None
    assert reason_of(image, cpu_only, None, [pool()]) is None
    assert reason_of(other, cpu_only, None, [pool()]) == (
        'no live worker matches requires {"pool": "tpu"}'
    )
