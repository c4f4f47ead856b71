"""Two jobdocks with their own stores on one dockerd, in the same namespace:
neither one's sweep for containers left behind takes the other's."""

from __future__ import annotations

from pathlib import Path

import engines
from jobdock import Client, JobState
from support import ServerProcess, eventually


def _running(dockerd: engines.Engine, name: str) -> bool:
    with dockerd.http() as http:
        found = http.get(f"/containers/{name}/json")
    return found.status_code == 200 and bool(found.json()["State"]["Running"])


def test_a_second_servers_sweep_leaves_the_first_servers_running_container(
    dockerd: engines.Engine, tmp_path: Path
) -> None:
    settings = {"docker_host": dockerd.url, "namespace": engines.NAMESPACE}
    first = ServerProcess(tmp_path / "a", **settings).start()
    second = ServerProcess(tmp_path / "b", **settings)
    try:
        with Client(first.url) as a:
            job = a.submit({"image": engines.BUSYBOX, "command": ["sleep", "60"]})
            name = f"jobdock-{job.id}-1"
            eventually(lambda: _running(dockerd, name), 30, "the first server's container")

            second.start()
            with Client(second.url) as b:
                # An image job runs on the second server only once its
                # start-up sweep is done (the engine is seen, swept, claimed).
                own = b.submit({"image": engines.BUSYBOX, "command": ["true"]})
                assert b.wait(own.id, timeout=60).state is JobState.SUCCEEDED

            assert _running(dockerd, name), "the second server removed the first's container"
            still = a.get(job.id)
            assert still.state is JobState.RUNNING and still.attempt == 1
            a.cancel(job.id)
            a.wait(job.id, timeout=30)
    finally:
        second.stop()
        first.stop()
