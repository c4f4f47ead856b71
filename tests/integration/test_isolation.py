"""Limits and isolation of process jobs, on the real kernel through a real
server: cgroups (v1 here, v2 where the host has it) and bubblewrap namespaces.

These need root, a usable cgroup hierarchy and bwrap; elsewhere they are
skipped with the reason (in CI, where scripts/test installs bwrap, they fail).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from jobdock import Client, JobState, Reason, Stream
from jobdock.models import JobSpec, Resources
from jobdock.runtimes import ProcessRuntime, cgroups
from jobdock.runtimes.isolation import Confinement, default_parent
from jobdock.runtimes.orphans import read_stat
from support import ServerProcess, cgroups_missing, eventually


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "limits and isolation need root"
    if shutil.which("bwrap") is None:
        return "isolation needs bubblewrap (apt-get install bubblewrap)"
    return cgroups_missing()


_REASON = _why_not()
if _REASON is not None and os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
    pytest.fail(f"isolation is required in CI: {_REASON}", pytrace=False)
pytestmark = pytest.mark.skipif(_REASON is not None, reason=_REASON or "")

MIB = 1 << 20


def _groups_left(home: Path) -> list[str]:
    hierarchy = cgroups.detect(default_parent(home))
    left = [group.path for group in hierarchy.leftovers()]
    hierarchy.remove_parent()
    return left


@pytest.fixture(scope="module")
def confined(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server whose jobs run in cgroups, with a maximum on memory."""
    home = tmp_path_factory.mktemp("confined")
    server = ServerProcess(
        home, max_resources=json.dumps({"memory": "1g"}), cgroup_every_job="true"
    ).start()
    yield server
    server.stop()
    parent = default_parent(home)
    assert not any(Path("/sys/fs/cgroup").glob(f"*/**/{parent}")), "cgroups left behind"


@pytest.fixture
def client(confined: ServerProcess) -> Iterator[Client]:
    with Client(confined.url) as c:
        yield c


def run(client: Client, command: list[str], **spec: object):  # type: ignore[no-untyped-def]
    job = client.submit({"command": command, **spec})
    return client.wait(job.id, timeout=120)


def stdout(client: Client, job_id: str) -> str:
    return b"".join(data for _, data in client.logs(job_id, stream=Stream.STDOUT)).decode()


def test_a_memory_hog_over_its_limit_is_killed_and_reported_oom(client: Client) -> None:
    hog = ["python3", "-c", "b = bytearray(512 << 20)"]

    job = run(client, hog, resources={"memory": "64m"})

    assert (job.state, job.reason) == (JobState.FAILED, Reason.OOM)
    assert "more memory than its limit" in (job.message or "")
    attempt = job.attempts[0]
    assert attempt.limits == {"memory": 64 * MIB}
    assert attempt.isolation is not None and attempt.isolation.startswith("cgroup v")
    assert attempt.peak_memory is not None and 0 < attempt.peak_memory <= 64 * MIB


def test_a_memory_hog_isolated_in_namespaces_is_reported_oom_too(client: Client) -> None:
    job = run(
        client,
        ["python3", "-c", "b = bytearray(512 << 20)"],
        resources={"memory": "64m"},
        isolation=True,
    )

    assert (job.state, job.reason) == (JobState.FAILED, Reason.OOM)
    assert job.attempts[0].isolation is not None
    assert job.attempts[0].isolation.endswith("+namespaces")


def test_a_fork_bomb_is_contained_and_the_server_stays_responsive(
    client: Client, confined: ServerProcess
) -> None:
    forks = "import os, time\nwhile True:\n    try: os.fork()\n    except OSError: time.sleep(0.05)"
    bomb = ["python3", "-c", forks]
    job = client.submit({"command": bomb, "resources": {"pids": 64}, "timeout": 5, "kill_grace": 1})

    eventually(lambda: client.get(job.id).state is JobState.RUNNING, timeout=30)
    started = time.monotonic()
    assert httpx.get(f"{confined.url}/healthz", timeout=10).status_code == 200
    assert time.monotonic() - started < 5
    job = client.wait(job.id, timeout=60)
    assert (job.state, job.reason) == (JobState.FAILED, Reason.TIMEOUT)
    assert (job.message or "").startswith("reached its limit of 64 processes"), job.message
    assert "timed out after 5s" in (job.message or "")


def test_a_busy_loop_under_a_quarter_cpu_uses_about_a_quarter_of_a_core(client: Client) -> None:
    spin = "import time\nt = time.monotonic()\nwhile time.monotonic() - t < 4: pass"

    job = run(client, ["python3", "-c", spin], resources={"cpus": 0.25})

    assert job.state is JobState.SUCCEEDED
    assert job.started_at is not None and job.finished_at is not None
    wall = (job.finished_at - job.started_at).total_seconds()
    used = job.attempts[0].cpu_seconds
    assert used is not None
    # The quota caps it; on a loaded machine it may get less, never more.
    assert used <= 0.25 * wall * 1.2 + 0.05, (used, wall)
    assert used >= 0.25 * wall * 0.4, (used, wall)


def test_an_isolated_job_sees_only_its_own_processes_under_an_init(client: Client) -> None:
    script = "echo $$; cat /proc/1/comm; ls -d /proc/[0-9]* | wc -l"
    job = run(client, ["sh", "-c", script], isolation=True)

    assert job.state is JobState.SUCCEEDED
    pid, init, processes = stdout(client, job.id).split()
    assert (pid, init) == ("2", "bwrap")  # bubblewrap's init is PID 1
    assert int(processes) <= 5  # the init, sh, ls, wc (and the subshell)


DEVICES = "null zero full random urandom tty"


@pytest.mark.parametrize(
    "filesystem", ["host", "readonly", "rootfs"], ids=["host", "readonly", "rootfs"]
)
def test_every_isolated_job_has_a_usable_minimal_dev(
    client: Client, filesystem: str, tmp_path: Path
) -> None:
    script = (
        "echo x >/dev/null && head -c 4 /dev/zero | wc -c && head -c 4 /dev/urandom | wc -c"
        " && head -c 4 /dev/random | wc -c && ! echo x 2>/dev/null >/dev/full"
        f" && for d in {DEVICES}; do test -c /dev/$d || echo missing $d; done"
        " && test -d /dev/pts && test -c /dev/pts/ptmx && echo shared >/dev/shm/x && echo ok"
    )
    isolation: dict[str, object] = {"filesystem": filesystem, "user": "nobody"}
    if filesystem == "rootfs":
        isolation["filesystem"] = {"rootfs": str(_busybox_rootfs(tmp_path))}
        isolation.pop("user")  # the rootfs has no setpriv
    job = run(client, ["sh", "-c", script], isolation=isolation, cwd="/")

    assert job.state is JobState.SUCCEEDED, (job.message, _stderr(client, job.id))
    assert stdout(client, job.id).split() == ["4", "4", "4", "ok"]


def _busybox_rootfs(directory: Path) -> Path:
    busybox = shutil.which("busybox")
    if busybox is None:
        pytest.skip("a rootfs needs busybox (apt-get install busybox-static)")
    root = directory / "rootfs"
    (root / "bin").mkdir(parents=True)
    shutil.copy(busybox, root / "bin" / "busybox")
    for applet in ("sh", "echo", "head", "wc", "test", "cat"):
        (root / "bin" / applet).symlink_to("busybox")
    return root


def _stderr(client: Client, job_id: str) -> str:
    return b"".join(data for _, data in client.logs(job_id, stream=Stream.STDERR)).decode()


def test_stop_of_an_isolated_job_without_a_sigterm_handler_is_prompt(client: Client) -> None:
    # sleep installs no handler: as PID 1 it would ignore SIGTERM for the
    # whole grace; under the init it ends at once, as without isolation.
    grace = 30
    job = client.submit({"command": ["sleep", "600"], "isolation": True, "kill_grace": grace})
    eventually(lambda: client.get(job.id).state is JobState.RUNNING, timeout=30)

    started = time.monotonic()
    client.cancel(job.id)
    job = client.wait(job.id, timeout=60)

    assert job.state is JobState.CANCELLED
    assert time.monotonic() - started < 5, "stop waited for the grace"
    assert job.exit_code == 128 + 15  # bwrap: the command died of SIGTERM


def _reaches(client: Client, port: int, **spec: object) -> str:
    probe = (
        "import socket\n"
        "try:\n"
        f"    socket.create_connection(('127.0.0.1', {port}), timeout=5); print('reached')\n"
        "except OSError as e:\n"
        "    print('unreachable', e)\n"
    )
    job = run(client, ["python3", "-c", probe], **spec)
    assert job.state is JobState.SUCCEEDED, job.message
    return stdout(client, job.id)


def test_an_isolated_job_has_no_network_unless_it_asks_for_the_hosts(
    client: Client, confined: ServerProcess
) -> None:
    assert _reaches(client, confined.port, isolation=True).startswith("unreachable")
    assert _reaches(client, confined.port, isolation={"network": "host"}) == "reached\n"


def test_a_readonly_view_of_the_host_has_a_private_writable_tmp(client: Client) -> None:
    script = "touch /etc/jobdock-probe 2>/dev/null && echo wrote-etc; echo x > /tmp/f && id -un"

    job = run(client, ["sh", "-c", script], isolation={"filesystem": "readonly", "user": "nobody"})

    assert job.state is JobState.SUCCEEDED, job.message
    assert stdout(client, job.id) == "nobody\n"
    assert not Path("/etc/jobdock-probe").exists()


def _running(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and marker in (entry / "cmdline").read_text():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def test_stop_kills_a_child_that_double_forked_out_of_the_process_group(client: Client) -> None:
    marker = f"{time.time_ns() % 100000 + 1000}.25"
    script = f"(setsid sleep {marker} &); echo forked; exec sleep 600"
    job = client.submit({"command": ["sh", "-c", script], "kill_grace": 2})
    eventually(lambda: _running(marker), timeout=30, what="the escaped child")

    client.cancel(job.id)
    job = client.wait(job.id, timeout=60)

    assert job.state is JobState.CANCELLED
    eventually(lambda: not _running(marker), timeout=10, what="the escaped child to be gone")


def test_io_throttling_slows_a_direct_write(client: Client, tmp_path: Path) -> None:
    write = ["dd", "if=/dev/zero", "of=out", "bs=1M", "count=3", "oflag=direct"]
    try:
        fd = os.open(tmp_path / "probe", os.O_CREAT | os.O_WRONLY | os.O_DIRECT)
        os.close(fd)
    except OSError as exc:
        pytest.skip(f"{tmp_path} does not support O_DIRECT ({exc}): the page cache would hide io")

    job = run(client, write, cwd=str(tmp_path), resources={"io_write_bps": "1m"})

    assert job.state is JobState.SUCCEEDED, job.message
    assert job.started_at is not None and job.finished_at is not None
    assert (job.finished_at - job.started_at).total_seconds() >= 2.0


def test_a_limit_above_the_servers_maximum_is_refused_naming_it(confined: ServerProcess) -> None:
    reply = httpx.post(
        f"{confined.url}/v1/jobs", json={"command": ["true"], "resources": {"memory": "2g"}}
    )

    assert reply.status_code == 422
    error = reply.json()["error"]
    assert error["field"] == "resources.memory"
    assert "1073741824" in error["message"]


def test_a_restarted_server_removes_the_groups_it_left(tmp_path: Path) -> None:
    hierarchy = cgroups.detect(default_parent(tmp_path))
    hierarchy.create("left.1.abc", Resources(), "/")
    assert _groups_left(tmp_path)

    server = ServerProcess(tmp_path).start()
    try:
        assert _groups_left(tmp_path) == []
    finally:
        server.stop()


def _cgroup2_mounted() -> bool:
    with open("/proc/self/mountinfo") as mounts:
        return any(" - cgroup2 " in line for line in mounts)


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a process that still runs (not gone, not a zombie)."""
    stat = read_stat(pid)
    return stat is not None and stat.state != "Z"


@pytest.mark.skipif(not _cgroup2_mounted(), reason="no cgroup2 file system is mounted")
async def test_cgroup_v2_groups_hold_the_job_kill_what_it_left_and_are_removed() -> None:
    # On a hybrid host the v2 hierarchy has no controllers: no limits, but
    # joining, accounting of CPU, killing and removal work as on a v2 host.
    confinement = Confinement.detect(cgroups_mode="v2", parent="jobdock-test-v2", every_job=True)
    assert confinement.hierarchy is not None, confinement.problem
    runtime = ProcessRuntime(confinement)
    try:
        script = "(setsid sleep 300 & echo $! >&2); cat /proc/self/cgroup"
        execution = await runtime.start(JobSpec(command=["sh", "-c", script]), b"", {})
        chunks = [data async for batch in execution.output() for _, data in batch]
        status = await execution.wait()
    finally:
        runtime.close()

    text = b"".join(chunks).decode()
    assert "/jobdock-test-v2/" in text
    escaped = int(next(line for line in text.split() if line.isdigit()))
    # Gone, or a zombie: a test earlier in this process may have made it a
    # child subreaper (runtimes/orphans.py), and then the killed child is
    # left for this process to reap.
    eventually(lambda: not _alive(escaped), what="the escaped child")
    assert status.accounting is not None and status.accounting.cpu_seconds is not None
    assert confinement.hierarchy.leftovers() == []


async def test_without_cgroups_a_stop_still_reaches_the_isolated_command_itself() -> None:
    # No group to list: the namespace's processes are found below bwrap,
    # which is spared (signalled, it would end the namespace with SIGKILL).
    confinement = Confinement(None, shutil.which("bwrap"), problem="none in this test")
    runtime = ProcessRuntime(confinement)
    script = "trap 'echo stopped; exit 0' TERM; echo ready; while :; do sleep 0.05; done"
    spec = JobSpec(command=["sh", "-c", script], isolation=True)
    try:
        execution = await runtime.start(spec, b"", {"PATH": os.environ["PATH"]})
        output = execution.output()
        assert (await anext(output))[0][1] == b"ready\n"
        execution.terminate()
        status = await asyncio.wait_for(execution.wait(), 10)
        rest = b"".join([data async for batch in output for _, data in batch])
    finally:
        runtime.close()

    assert rest.endswith(b"stopped\n")  # its trap ran: SIGTERM, not a SIGKILL
    assert status.exit_code == 0


async def test_a_stop_at_the_very_start_of_an_isolated_job_is_not_lost() -> None:
    # Before bwrap has made the namespace and started the command, its init
    # is all there is, and it drops SIGTERM: the stop waits for the command.
    confinement = Confinement.detect(parent="jobdock-test-early-stop", every_job=True)
    runtime = ProcessRuntime(confinement)
    spec = JobSpec(command=["sleep", "600"], isolation=True)
    try:
        for _ in range(5):
            execution = await runtime.start(spec, b"", {"PATH": os.environ["PATH"]})
            execution.terminate()
            status = await asyncio.wait_for(execution.wait(), 10)
            assert status.exit_code == 128 + 15
    finally:
        runtime.close()
