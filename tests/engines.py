"""Throwaway container engines for the tests: a private dockerd (Debian's
docker.io) and podman's API service, each in its own short temporary
directory, with images built locally from busybox-static (no registry can
be reached).

Flags and settings are those ../shared/MACHINE.md found to work here: dockerd
without iptables or a bridge; podman with runc and cgroupfs.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

import jobdock
from jobdock.machines.providers import docker
from support import ServerProcess, eventually

#: The images every engine gets: name -> (entrypoint, cmd) of the image.
IMAGES: dict[str, tuple[list[str] | None, list[str] | None]] = {
    "localhost/busybox:1": (None, ["sh"]),
    # ConJob's example job: echoes its argument, or its input.
    "localhost/echo-job:1": (
        ["sh", "-c", 'if [ "$#" -gt 0 ]; then echo "$@"; else cat; fi', "echo-job"],
        None,
    ),
}
BUSYBOX = "localhost/busybox:1"
#: How the test dockerd runs gVisor's runsc (MACHINE.md: ptrace is the
#: platform that works here; jobs get no network under it).
RUNSC_ARGS = ["--platform=ptrace", "--network=none"]
START_TIMEOUT = 60.0

PODMAN_CONF = """\
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
"""


#: The namespace label the tests' jobdock settings give containers.
NAMESPACE = "jobdock-tests"


class EngineMissing(RuntimeError):
    """The engine's binaries are not installed here."""


def busybox_rootfs() -> bytes:
    """A tar of a minimal root filesystem: busybox-static and its applets."""
    busybox = Path("/bin/busybox")
    # A dynamically linked busybox names its loader; it could not run in an
    # image without a libc.
    if not busybox.exists() or b"/ld-linux" in busybox.read_bytes():
        raise EngineMissing("busybox-static is not installed")
    applets = subprocess.run(
        [busybox, "--list"], capture_output=True, text=True, check=True
    ).stdout.split()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:

        def add_dir(name: str, mode: int = 0o755) -> None:
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, mode
            tar.addfile(info)

        def add_file(name: str, data: bytes, mode: int = 0o644) -> None:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))

        for directory in ("bin", "etc", "proc", "sys", "dev", "root", "work"):
            add_dir(directory)
        add_dir("tmp", 0o1777)
        add_file("bin/busybox", busybox.read_bytes(), 0o755)
        for applet in applets:
            if applet != "busybox":
                link = tarfile.TarInfo(f"bin/{applet}")
                link.type, link.linkname = tarfile.SYMTYPE, "busybox"
                tar.addfile(link)
        add_file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/sh\n")
        add_file("etc/group", b"root:x:0:\nnogroup:x:65534:\n")
    return buffer.getvalue()


class Engine:
    """An engine process serving the Docker API on a unix socket."""

    name = "engine"

    def __init__(self) -> None:
        # A unix socket's path must stay under 108 bytes: a short directory.
        self.dir = Path(tempfile.mkdtemp(prefix="jd-", dir="/tmp"))
        self.socket = self.dir / "api.sock"
        self.url = f"unix://{self.socket}"
        self.log = self.dir / "engine.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        return dict(os.environ)

    def start(self) -> Engine:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                self.command(), stdout=log, stderr=log, env=self.env(), start_new_session=True
            )
        eventually(self._answers, START_TIMEOUT, f"{self.name} to answer on {self.socket}")
        rootfs = busybox_rootfs()
        for image, (entrypoint, cmd) in IMAGES.items():
            self.import_image(image, rootfs, entrypoint, cmd)
        return self

    def _answers(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited: {self.log.read_text()[-2000:]}")
        try:
            return self.http().get("/_ping").status_code == 200
        except httpx.TransportError:
            return False

    def http(self) -> httpx.Client:
        transport = httpx.HTTPTransport(uds=str(self.socket))
        return httpx.Client(transport=transport, base_url="http://engine", timeout=60)

    def import_image(
        self,
        image: str,
        rootfs: bytes,
        entrypoint: list[str] | None,
        cmd: list[str] | None,
        env: Sequence[str] = ("PATH=/bin",),
    ) -> None:
        changes = []
        if entrypoint:
            changes.append(f"ENTRYPOINT {json.dumps(entrypoint)}")
        if cmd:
            changes.append(f"CMD {json.dumps(cmd)}")
        changes += [f"ENV {variable}" for variable in env]
        params: list[tuple[str, str]] = [("fromSrc", "-"), ("repo", image)]
        params += [("changes", change) for change in changes]
        with self.http() as http:
            response = http.post(
                "/images/create",
                params=params,
                content=rootfs,
                headers={"Content-Type": "application/x-tar"},
            )
            response.raise_for_status()
            if http.get(f"/images/{image}/json").status_code != 200:
                raise RuntimeError(f"{self.name} did not keep image {image}: {response.text}")

    def containers(self, namespace: str) -> list[str]:
        """The ids of the containers left with jobdock's namespace label."""
        filters = json.dumps({"label": [f"io.jobdock.namespace={namespace}"]})
        with self.http() as http:
            found = http.get("/containers/json", params={"all": "true", "filters": filters})
        return [c["Id"] for c in found.json()]

    def stop(self) -> None:
        """Stop the engine process (not its containers) and keep its files."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def remove(self) -> None:
        self.stop()
        subprocess.run(["umount", "-R", "-l", str(self.dir)], capture_output=True, check=False)
        shutil.rmtree(self.dir, ignore_errors=True)


class Dockerd(Engine):
    """A private dockerd."""

    name = "docker"

    def command(self) -> list[str]:
        binary = shutil.which("dockerd")
        if binary is None:
            raise EngineMissing("dockerd is not installed (apt-get install docker.io)")
        d = self.dir
        return [
            binary,
            "--host",
            self.url,
            "--data-root",
            str(d / "data"),
            "--exec-root",
            str(d / "exec"),
            "--pidfile",
            str(d / "dockerd.pid"),
            "--iptables=false",
            "--ip6tables=false",
            "--bridge=none",
            *self._runsc(),
        ]

    def _runsc(self) -> list[str]:
        """gVisor's runsc as the runtime ``runsc``, where it is installed
        (its ptrace platform: the only one that runs here, see MACHINE.md).
        dockerd's --add-runtime takes no arguments: a daemon.json does."""
        runsc = shutil.which("runsc")
        if runsc is None:
            return []
        config = self.dir / "daemon.json"
        runtime = {"path": runsc, "runtimeArgs": RUNSC_ARGS}
        config.write_text(json.dumps({"runtimes": {"runsc": runtime}}))
        return ["--config-file", str(config)]


class Podman(Engine):
    """podman's Docker-compatible API service."""

    name = "podman"

    def command(self) -> list[str]:
        binary = shutil.which("podman")
        if binary is None or shutil.which("runc") is None:
            raise EngineMissing("podman is not installed (apt-get install podman runc)")
        (self.dir / "containers.conf").write_text(PODMAN_CONF)
        d = self.dir
        return [
            binary,
            "--root",
            str(d / "root"),
            "--runroot",
            str(d / "run"),
            "--tmpdir",
            str(d / "tmp"),
            "system",
            "service",
            "--time=0",
            self.url,
        ]

    def env(self) -> dict[str, str]:
        return {**os.environ, "CONTAINERS_CONF": str(self.dir / "containers.conf")}


ENGINES: dict[str, type[Engine]] = {"docker": Dockerd, "podman": Podman}


def host_python_mounts() -> list[str]:
    """What a busybox container needs to run this interpreter and jobdock
    (a ``docker`` pool's machine): /usr and the loader's directories, the
    base interpreter (pyenv's, say), the virtual environment, the source."""
    paths = {Path("/usr"), Path(sys.base_prefix), Path(sys.prefix)}
    paths.add(Path(jobdock.__file__).resolve().parents[1])
    paths |= {p for p in (Path("/lib"), Path("/lib64")) if p.exists()}
    return [f"{p}:{p}" for p in sorted(paths)]


def machine_containers(engine: Engine) -> list[str]:
    """The ids of the ``docker`` pools' machine containers on ``engine``."""
    with engine.http() as http:
        filters = json.dumps({"label": [docker.LABEL_POOL]})
        found = http.get("/containers/json", params={"all": "1", "filters": filters}).json()
    return [str(container["Id"]) for container in found]


def remove_machines(engine: Engine) -> None:
    """Remove every machine container a test left on ``engine``."""
    ids = machine_containers(engine)
    with engine.http() as http:
        for container in ids:
            http.delete(f"/containers/{container}", params={"force": "1"})


def wait_gone(engine: Engine, namespace: str, timeout: float = 30.0) -> list[str]:
    """The containers still left after ``timeout`` (empty if all are gone)."""
    deadline = time.monotonic() + timeout
    while (left := engine.containers(namespace)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


class SocketProxy:
    """A unix-socket proxy in front of an engine: ``cut()`` makes the engine
    unreachable (listener and every open connection closed, as a crashed or
    partitioned engine would be) while the engine and its containers live
    on; ``restore()`` lets clients through again."""

    def __init__(self, target: Path) -> None:
        self.target = target
        self.dir = Path(tempfile.mkdtemp(prefix="jdp-", dir="/tmp"))
        self.socket = self.dir / "proxy.sock"
        self.url = f"unix://{self.socket}"
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()

    def restore(self) -> SocketProxy:
        self.socket.unlink(missing_ok=True)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(self.socket))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                upstream.connect(str(self.target))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open.update((client, upstream))
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def cut(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        self.socket.unlink(missing_ok=True)
        with self._lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._open.clear()

    def remove(self) -> None:
        self.cut()
        shutil.rmtree(self.dir, ignore_errors=True)


def server_on(engine: Engine, home: Path, *args: str, **settings: str) -> ServerProcess:
    """A ``jobdock serve`` (not started yet) that runs image jobs on ``engine``,
    in the tests' namespace."""
    return ServerProcess(home, args=args, docker_host=engine.url, namespace=NAMESPACE, **settings)
