"""Control groups: one group per attempt, with its limits, its accounting and
a way to kill every process in it.

Two implementations behind one interface: cgroup v1 (a directory per
controller, as on hosts in "hybrid" mode) and cgroup v2 (one unified
directory). :func:`detect` picks the one the host has. Groups live under a
parent named after the server (``jobdock-<hash of its home>``), below the
server's own group where the host allows it, so that a restarted server
finds and removes its own leftovers and no one else's.

A job must be in its group before it runs any code of its own. On v1 the
spawning thread moves itself (``tasks`` is per thread) into the group, spawns
with vfork and moves back: the child starts inside. v2 groups hold whole
processes only, so there the child writes itself into the group between fork
and exec; that costs a full fork of the server instead of a vfork.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from jobdock.models import Resources

#: v1 controllers a job's group is made in (those mounted on the host).
V1_CONTROLLERS = ("memory", "cpu", "cpuacct", "pids", "blkio", "freezer")
#: The v1 controllers every job's group joins: freezer to stop all of it at
#: once, memory and cpuacct for its accounting (peak memory, the OOM killer,
#: CPU time). cpu, pids and blkio only for a job whose limits need them:
#: each controller is a mkdir, two moves of the spawning thread and an rmdir
#: per job, in the kernel's cgroup lock.
V1_EVERY_JOB = ("memory", "cpuacct", "freezer")
#: v2 controllers the parent enables for its children, where available.
V2_CONTROLLERS = ("cpu", "memory", "pids", "io")
CFS_PERIOD_US = 100_000
#: How long to wait for the processes of a group to be gone before its removal.
REMOVE_SECONDS = 2.0

_MOUNT_ROOT = "/sys/fs/cgroup"


@dataclass(frozen=True, slots=True)
class Usage:
    """What a group's processes used, and which limits the kernel enforced."""

    peak_memory: int | None = None
    cpu_seconds: float | None = None
    oom_killed: bool = False
    pids_limited: bool = False


class Group(Protocol):
    """The control group of one attempt."""

    path: str

    def joining(self) -> contextlib.AbstractContextManager[Callable[[], None] | None]:
        """Spawn the job inside this context; pass what it yields (when not
        None) as the child's ``preexec_fn``."""
        ...

    def pids(self) -> list[int]:
        """The processes in the group now."""
        ...

    def usage(self) -> Usage:
        """Accounting read from the group."""
        ...

    def kill(self) -> None:
        """SIGKILL every process in the group, including those that fork meanwhile."""

    def remove(self) -> bool:
        """Remove the group; False while processes are still in it."""
        ...


class Hierarchy(Protocol):
    """The host's cgroup hierarchy, as jobdock uses it."""

    version: int

    def describe(self) -> str:
        """E.g. 'cgroup v1 (/sys/fs/cgroup/memory/jobdock-ab12cd34, ...)'."""
        ...

    def create(self, name: str, resources: Resources, cwd: str) -> Group:
        """A new group with these limits; raises OSError (or ValueError for a
        limit this host cannot enforce)."""
        ...

    def leftovers(self) -> list[Group]:
        """Groups left under the parent (by a server that stopped uncleanly)."""
        ...

    def remove_parent(self) -> None:
        """Remove the parent group if no group is left in it."""


def _write(path: str, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def _read(path: str) -> str:
    # Plain system calls: a text-mode open() adds an fstat, an ioctl and
    # layers of buffering, and each call lets another thread take the GIL;
    # a job's end reads five of these files on the event loop's thread.
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        parts = []
        while part := os.read(fd, 65536):
            parts.append(part)
    finally:
        os.close(fd)
    return b"".join(parts).decode()


def _keyed(path: str) -> dict[str, int]:
    """A flat keyed file ('key value' per line) such as memory.events."""
    try:
        lines = _read(path).splitlines()
    except OSError:
        return {}
    result = {}
    for line in lines:
        key, _, value = line.partition(" ")
        with contextlib.suppress(ValueError):
            result[key] = int(value)
    return result


def _read_int(path: str) -> int | None:
    try:
        return int(_read(path).strip())
    except (OSError, ValueError):
        return None


def _procs(directory: str) -> list[int]:
    try:
        return [int(line) for line in _read(f"{directory}/cgroup.procs").split()]
    except OSError:
        return []


def _kill_all(directory: str) -> None:
    for pid in _procs(directory):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def block_device(path: str) -> str:
    """'MAJ:MIN' of the disk that holds ``path``: a partition's whole disk,
    a device-mapper device itself. Raises ValueError where there is none."""
    dev = os.stat(path).st_dev
    number = f"{os.major(dev)}:{os.minor(dev)}"
    sysfs = Path("/sys/dev/block") / number
    if not sysfs.exists():
        raise ValueError(
            f"{path} is not on a block device ({number} is a virtual file system): "
            "io limits cannot apply there"
        )
    if (sysfs / "partition").exists():
        return (sysfs.resolve().parent / "dev").read_text().strip()
    return number


def _io_lines(resources: Resources, cwd: str) -> tuple[str, int | None, int | None] | None:
    if resources.io_read_bps is None and resources.io_write_bps is None:
        return None
    return block_device(cwd), resources.io_read_bps, resources.io_write_bps


def _own_paths() -> dict[str, str]:
    """This process's group in each hierarchy: controller (or '' for v2) -> path."""
    paths = {}
    for line in _read("/proc/self/cgroup").splitlines():
        _, controllers, path = line.split(":", 2)
        for name in controllers.split(",") if controllers else [""]:
            paths[name.removeprefix("name=")] = path
    return paths


def _mounts() -> tuple[dict[str, str], str | None]:
    """Mount points: v1 controller -> directory, and the cgroup2 mount."""
    v1: dict[str, str] = {}
    v2 = None
    for line in _read("/proc/self/mountinfo").splitlines():
        fields = line.split(" - ", 1)
        if len(fields) != 2:
            continue
        mount_point = fields[0].split()[4]
        fstype, _, options = fields[1].split()[:3]
        if fstype == "cgroup2" and (v2 is None or mount_point == _MOUNT_ROOT):
            v2 = mount_point
        elif fstype == "cgroup":
            for option in options.split(","):
                if option in V1_CONTROLLERS:
                    v1.setdefault(option, mount_point)
    return v1, v2


# -- cgroup v1 -------------------------------------------------------------------


class V1Group:
    """A group in each v1 controller."""

    def __init__(self, dirs: dict[str, str], home: dict[str, str]) -> None:
        self.dirs = dirs
        self._home = home
        self.path = dirs.get("memory") or next(iter(dirs.values()))

    @contextlib.contextmanager
    def joining(self) -> Iterator[None]:
        tid = str(threading.get_native_id())
        try:
            for directory in self.dirs.values():
                _write(f"{directory}/tasks", tid)
            yield None
        finally:
            for controller in self.dirs:
                _write(f"{self._home[controller]}/tasks", tid)

    def pids(self) -> list[int]:
        return _procs(self.path)

    def usage(self) -> Usage:
        memory, cpuacct = self.dirs.get("memory"), self.dirs.get("cpuacct")
        nanos = _read_int(f"{cpuacct}/cpuacct.usage") if cpuacct else None
        return Usage(
            peak_memory=_read_int(f"{memory}/memory.max_usage_in_bytes") if memory else None,
            cpu_seconds=None if nanos is None else nanos / 1e9,
            oom_killed=bool(memory and _keyed(f"{memory}/memory.oom_control").get("oom_kill")),
            pids_limited="pids" in self.dirs
            and bool(_keyed(f"{self.dirs['pids']}/pids.events").get("max")),
        )

    def kill(self) -> None:
        freezer = self.dirs.get("freezer")
        if freezer is None:
            for _ in range(100):
                if not self.pids():
                    return
                _kill_all(self.path)
            return
        # Frozen, nothing in the group can fork between the listing and the kill.
        _write(f"{freezer}/freezer.state", "FROZEN")
        try:
            deadline = time.monotonic() + 1.0
            while _read(f"{freezer}/freezer.state").strip() != "FROZEN":
                if time.monotonic() > deadline:
                    break
                time.sleep(0.001)
            _kill_all(freezer)
        finally:
            _write(f"{freezer}/freezer.state", "THAWED")

    def remove(self) -> bool:
        removed = True
        for directory in self.dirs.values():
            try:
                os.rmdir(directory)
            except FileNotFoundError:
                pass
            except OSError as exc:
                if exc.errno != errno.EBUSY:
                    raise
                removed = False
        return removed


class V1Hierarchy:
    """cgroup v1: one directory tree per controller."""

    version = 1

    def __init__(self, mounts: dict[str, str], parent: str) -> None:
        own = _own_paths()
        self._home = {c: f"{m}{own.get(c, '/').rstrip('/')}" for c, m in mounts.items()}
        self._parents = {c: f"{home}/{parent}" for c, home in self._home.items()}
        for directory in self._parents.values():
            os.makedirs(directory, exist_ok=True)
        memory = self._parents.get("memory")
        if memory is not None:
            # Children count toward the parent's limits and accounting.
            with contextlib.suppress(OSError):
                _write(f"{memory}/memory.use_hierarchy", "1")
        self._memsw = memory is not None and os.path.exists(f"{memory}/memory.memsw.limit_in_bytes")

    def describe(self) -> str:
        return f"cgroup v1 ({', '.join(sorted(self._parents))} under {self._parents_root()})"

    def _parents_root(self) -> str:
        return self._parents.get("memory") or next(iter(self._parents.values()))

    def _group(self, name: str, controllers: set[str] | None = None) -> V1Group:
        """The group ``name`` in the given controllers (all: None, or where
        none of them is mounted)."""
        parents = {
            c: p for c, p in self._parents.items() if controllers is None or c in controllers
        }
        return V1Group(
            {c: f"{p}/{name}" for c, p in (parents or self._parents).items()}, self._home
        )

    def create(self, name: str, resources: Resources, cwd: str) -> V1Group:
        io = _io_lines(resources, cwd)
        controllers = set(V1_EVERY_JOB)
        for controller, needed in (
            ("cpu", resources.cpus),
            ("memory", resources.memory),
            ("pids", resources.pids),
            ("blkio", io),
        ):
            if needed is None:
                continue
            if controller not in self._parents:
                raise ValueError(f"the {controller} controller is not mounted on this host")
            controllers.add(controller)
        group = self._group(name, controllers)
        for directory in group.dirs.values():
            os.mkdir(directory)
        try:
            self._limit(group.dirs, resources, io)
        except BaseException:
            group.remove()
            raise
        return group

    def _limit(
        self,
        dirs: dict[str, str],
        resources: Resources,
        io: tuple[str, int | None, int | None] | None,
    ) -> None:
        if resources.cpus is not None:
            _write(f"{dirs['cpu']}/cpu.cfs_period_us", str(CFS_PERIOD_US))
            quota = max(1000, round(resources.cpus * CFS_PERIOD_US))
            _write(f"{dirs['cpu']}/cpu.cfs_quota_us", str(quota))
        if resources.memory is not None:
            _write(f"{dirs['memory']}/memory.limit_in_bytes", str(resources.memory))
            if self._memsw:
                # The limit holds for memory and swap together: a job over it
                # is killed rather than swapped out.
                _write(f"{dirs['memory']}/memory.memsw.limit_in_bytes", str(resources.memory))
        if resources.pids is not None:
            _write(f"{dirs['pids']}/pids.max", str(resources.pids))
        if io is not None:
            device, read_bps, write_bps = io
            if read_bps is not None:
                _write(f"{dirs['blkio']}/blkio.throttle.read_bps_device", f"{device} {read_bps}")
            if write_bps is not None:
                _write(f"{dirs['blkio']}/blkio.throttle.write_bps_device", f"{device} {write_bps}")

    def leftovers(self) -> list[Group]:
        names: set[str] = set()
        for parent in self._parents.values():
            with contextlib.suppress(OSError):
                names.update(e.name for e in os.scandir(parent) if e.is_dir())
        return [self._group(name) for name in sorted(names)]

    def remove_parent(self) -> None:
        for directory in self._parents.values():
            with contextlib.suppress(OSError):
                os.rmdir(directory)


# -- cgroup v2 -------------------------------------------------------------------


class V2Group:
    """A group in the unified hierarchy."""

    def __init__(self, path: str) -> None:
        self.path = path

    @contextlib.contextmanager
    def joining(self) -> Iterator[Callable[[], None]]:
        fd = os.open(f"{self.path}/cgroup.procs", os.O_WRONLY | os.O_CLOEXEC)

        def join() -> None:  # in the child, between fork and exec
            os.write(fd, b"0")

        try:
            yield join
        finally:
            os.close(fd)

    def pids(self) -> list[int]:
        return _procs(self.path)

    def usage(self) -> Usage:
        cpu = _keyed(f"{self.path}/cpu.stat").get("usage_usec")
        return Usage(
            peak_memory=_read_int(f"{self.path}/memory.peak"),
            cpu_seconds=None if cpu is None else cpu / 1e6,
            oom_killed=bool(_keyed(f"{self.path}/memory.events").get("oom_kill")),
            pids_limited=bool(_keyed(f"{self.path}/pids.events").get("max")),
        )

    def kill(self) -> None:
        try:
            _write(f"{self.path}/cgroup.kill", "1")
            return
        except FileNotFoundError:
            pass  # before Linux 5.14
        _write(f"{self.path}/cgroup.freeze", "1")
        try:
            _kill_all(self.path)
        finally:
            _write(f"{self.path}/cgroup.freeze", "0")

    def remove(self) -> bool:
        try:
            os.rmdir(self.path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            if exc.errno != errno.EBUSY:
                raise
            return False
        return True


class V2Hierarchy:
    """cgroup v2: one tree; controllers are enabled for the parent's children."""

    version = 2

    def __init__(self, mount: str, parent: str) -> None:
        own = _own_paths().get("", "/").rstrip("/")
        candidates = [f"{mount}{own}/{parent}"] if own else []
        candidates.append(f"{mount}/{parent}")
        last: OSError | None = None
        for directory in candidates:
            try:
                os.makedirs(directory, exist_ok=True)
                self.controllers = self._enable(directory)
            except OSError as exc:
                # The server's own group holds processes, so its children
                # cannot get controllers ("no internal processes"): try the root.
                last = exc
                with contextlib.suppress(OSError):
                    os.rmdir(directory)
                continue
            self.parent = directory
            return
        assert last is not None
        raise last

    @staticmethod
    def _enable(directory: str) -> frozenset[str]:
        available = set(_read(f"{directory}/cgroup.controllers").split())
        wanted = [c for c in V2_CONTROLLERS if c in available]
        if wanted:
            _write(f"{directory}/cgroup.subtree_control", " ".join(f"+{c}" for c in wanted))
        return frozenset(_read(f"{directory}/cgroup.subtree_control").split())

    def describe(self) -> str:
        return f"cgroup v2 ({', '.join(sorted(self.controllers)) or 'no controllers'} under {self.parent})"

    def create(self, name: str, resources: Resources, cwd: str) -> V2Group:
        io = _io_lines(resources, cwd)
        for controller, needed in (
            ("cpu", resources.cpus),
            ("memory", resources.memory),
            ("pids", resources.pids),
            ("io", io),
        ):
            if needed is not None and controller not in self.controllers:
                raise ValueError(f"the {controller} controller is not enabled for {self.parent}")
        group = V2Group(f"{self.parent}/{name}")
        os.mkdir(group.path)
        try:
            self._limit(group.path, resources, io)
        except BaseException:
            group.remove()
            raise
        return group

    @staticmethod
    def _limit(
        path: str, resources: Resources, io: tuple[str, int | None, int | None] | None
    ) -> None:
        if resources.cpus is not None:
            quota = max(1000, round(resources.cpus * CFS_PERIOD_US))
            _write(f"{path}/cpu.max", f"{quota} {CFS_PERIOD_US}")
        if resources.memory is not None:
            _write(f"{path}/memory.max", str(resources.memory))
            with contextlib.suppress(FileNotFoundError):
                _write(f"{path}/memory.swap.max", "0")
        if resources.pids is not None:
            _write(f"{path}/pids.max", str(resources.pids))
        if io is not None:
            device, read_bps, write_bps = io
            limits = [f"rbps={read_bps}"] if read_bps is not None else []
            limits += [f"wbps={write_bps}"] if write_bps is not None else []
            _write(f"{path}/io.max", f"{device} {' '.join(limits)}")

    def leftovers(self) -> list[Group]:
        with contextlib.suppress(OSError):
            return [V2Group(e.path) for e in os.scandir(self.parent) if e.is_dir()]
        return []

    def remove_parent(self) -> None:
        with contextlib.suppress(OSError):
            os.rmdir(self.parent)


# -- detection -------------------------------------------------------------------


def detect(parent: str, version: int | None = None) -> Hierarchy:
    """The host's hierarchy with jobdock's parent group ``parent`` made in it;
    ``version`` forces v1 or v2. Raises OSError with a reason where jobdock
    cannot use cgroups (not root, none mounted, no write access)."""
    v1, v2 = _mounts()
    if version is None:
        # A pure v2 host mounts cgroup2 at /sys/fs/cgroup; a hybrid one
        # mounts the v1 controllers there and an empty cgroup2 beside them.
        version = 1 if "memory" in v1 and v2 != _MOUNT_ROOT else 2
    if version == 1:
        if not v1:
            raise OSError(errno.ENOENT, "no cgroup v1 controllers are mounted")
        return V1Hierarchy(v1, parent)
    if v2 is None:
        raise OSError(errno.ENOENT, "no cgroup2 file system is mounted")
    return V2Hierarchy(v2, parent)


def remove(group: Group, seconds: float = REMOVE_SECONDS) -> bool:
    """Kill what is left in ``group`` and remove it, waiting up to ``seconds``
    for its processes to be gone. Blocking; run it off the event loop."""
    deadline = time.monotonic() + seconds
    while True:
        if group.pids():
            group.kill()
        if group.remove():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
