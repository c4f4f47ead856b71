"""The times ``GET /v1/machines`` and the machine metrics show, from a
machine's record: boot time, machine-seconds, and only configured pools as
labels."""

from __future__ import annotations

import dataclasses

from jobdock.machines.metrics import MachineMetrics
from jobdock.machines.report import boot_seconds, machine_seconds
from jobdock.models.machines import MachineRecord

NOW = 10_000.0
BOOTING = MachineRecord(
    id="m-gpu-0001",
    pool="gpu",
    state="booting",
    provider_id="i-1",
    token_id="t1",
    jobs_done=0,
    requested_at=NOW - 100,
    booted_at=None,
    last_busy_at=None,
    stopping_at=None,
    stopped_at=None,
    error=None,
    server="s",
)


def test_a_live_machine_counts_to_now_and_a_stopped_one_to_its_stop() -> None:
    assert boot_seconds(BOOTING) is None
    assert machine_seconds(BOOTING, NOW) == 100
    stopped = dataclasses.replace(BOOTING, state="stopped", booted_at=NOW - 70, stopped_at=NOW - 10)
    assert boot_seconds(stopped) == 30
    assert machine_seconds(stopped, NOW) == 90


def test_an_ended_machine_without_a_stop_time_counts_to_its_last_known_time() -> None:
    failed = dataclasses.replace(BOOTING, state="failed", stopping_at=NOW - 40)
    assert machine_seconds(failed, NOW) == 60
    never = dataclasses.replace(BOOTING, state="failed")
    assert machine_seconds(never, NOW) == 0


def test_only_configured_pools_become_labels_with_every_state() -> None:
    removed = dataclasses.replace(BOOTING, id="m-old-0001", pool="old")
    families = {f.name: f for f in MachineMetrics(["gpu"], [BOOTING, removed], NOW).collect()}

    states = {
        (s.labels["pool"], s.labels["state"]): s.value for s in families["jobdock_machines"].samples
    }
    assert states == {
        ("gpu", "requested"): 0,
        ("gpu", "booting"): 1,
        ("gpu", "ready"): 0,
        ("gpu", "draining"): 0,
        ("gpu", "stopped"): 0,
        ("gpu", "failed"): 0,
    }
    [held] = families["jobdock_machine_seconds"].samples
    assert (held.labels, held.value) == ({"pool": "gpu"}, 100)


def test_without_pools_there_are_no_machine_metrics() -> None:
    assert list(MachineMetrics([], [BOOTING], NOW).collect()) == []
