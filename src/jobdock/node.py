"""One machine's part in running jobs: its engines, its worker and its
housekeeping, started in order and stopped in reverse. The server's lifespan
(api/app.py) and ``jobdock worker`` both run one.

Imports the engines, the housekeeping, the worker, the submit policy and
workflow planner, the store protocol and the settings.
"""

from __future__ import annotations

from jobdock.engines import Engines
from jobdock.housekeeping import Housekeeping
from jobdock.settings import Settings
from jobdock.store.protocol import Store
from jobdock.submit import Policy
from jobdock.webhooks import Webhooks
from jobdock.worker import Worker
from jobdock.workflow_plan import WorkflowPlanner


class Node:
    """A worker with the housekeeping around it, on ``engines`` (built here,
    and closed at stop, if not given: given ones are their owner's)."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        engines: Engines | None = None,
        planner: WorkflowPlanner | None = None,
    ) -> None:
        self.store = store
        self._own_engines = engines is None
        self.engines = engines or Engines(settings)
        # The jobs of workflow steps and schedule fires are made under the
        # policy of a submit to this server (the lifespan's, when given).
        planner = planner or WorkflowPlanner(Policy(settings, self.engines.missing))
        self.worker = Worker(store, settings, self.engines, planner)
        self.housekeeping = Housekeeping(
            store,
            settings,
            self.engines,
            planner,
            running_here=lambda job_id: job_id in self.worker.running,
        )
        self.webhooks = Webhooks(store, settings)

    async def start(self) -> None:
        """Say how jobs are confined; resolve what was lost before this start;
        ask the container engine; then begin claiming."""
        await self.engines.confine()
        await self.housekeeping.start()
        await self.engines.watch(self._engine_back)
        await self.worker.start()
        await self.webhooks.start()

    async def stop(self, drain_seconds: float | None = None) -> None:
        """Stop the worker (draining its jobs for ``drain_seconds``), then the
        housekeeping; close the engines if they are this node's."""
        await self.worker.stop(drain_seconds)
        await self.webhooks.stop()
        await self.housekeeping.stop()
        if self._own_engines:
            await self.engines.aclose()

    async def _engine_back(self) -> None:
        # Containers of attempts that ended while the engine was away are
        # removed, and image jobs that waited are claimed.
        await self.housekeeping.sweep_containers()
        self.store.events.work_available()
