"""Prometheus metrics of machine pools, read from the store at each scrape
(docs/machines.md#watching-machines): machines by pool and state, the time
they took to boot, and the machine-seconds they were held.

Only configured pools are labels (a machine of a pool since removed from
the settings is left out), so the series stay as few as the settings say.
The histogram and the counter are over the machines the store holds, as
the job counters are over its jobs: the same on every server of a store.

Imports the machines' report (its times), the models and prometheus_client.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.metrics_core import Metric

from jobdock.machines.report import boot_seconds, machine_seconds
from jobdock.models.machines import MACHINE_STATES, MachineRecord

#: Upper bounds of the boot-time histogram's buckets, in seconds.
BOOT_BUCKETS = (5.0, 10.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 180.0, 240.0, 300.0, 600.0)


class MachineMetrics:
    """A collector (``collect()``) of the machines the store held at one scrape."""

    def __init__(self, pools: Sequence[str], machines: Sequence[MachineRecord], now: float) -> None:
        self.pools = list(pools)
        known = set(self.pools)
        self.machines = [machine for machine in machines if machine.pool in known]
        self.now = now

    def collect(self) -> Iterator[Metric]:
        if not self.pools:
            return
        yield self._states()
        yield self._boot()
        yield self._held()

    def _states(self) -> Metric:
        family = GaugeMetricFamily(
            "jobdock_machines",
            "Machines of each pool by state (stopped and failed: those the store holds).",
            labels=["pool", "state"],
        )
        counts = {(pool, state): 0 for pool in self.pools for state in MACHINE_STATES}
        for machine in self.machines:
            counts[(machine.pool, machine.state)] += 1
        for (pool, state), count in counts.items():
            family.add_metric([pool, state], count)
        return family

    def _boot(self) -> Metric:
        family = HistogramMetricFamily(
            "jobdock_machine_boot_seconds",
            "Time from a machine's request to its agent's registration, of machines that booted.",
            labels=["pool"],
        )
        for pool in self.pools:
            took = [
                seconds
                for machine in self.machines
                if machine.pool == pool and (seconds := boot_seconds(machine)) is not None
            ]
            buckets: list[tuple[str, float]] = [
                (repr(bound), sum(1 for seconds in took if seconds <= bound))
                for bound in BOOT_BUCKETS
            ]
            buckets.append(("+Inf", len(took)))
            family.add_metric([pool], buckets, sum(took))
        return family

    def _held(self) -> Metric:
        family = CounterMetricFamily(
            "jobdock_machine_seconds",
            "Seconds machines were held, from request to stop (or now, while live).",
            labels=["pool"],
        )
        for pool in self.pools:
            held = sum(
                machine_seconds(machine, self.now)
                for machine in self.machines
                if machine.pool == pool
            )
            family.add_metric([pool], held)
        return family
