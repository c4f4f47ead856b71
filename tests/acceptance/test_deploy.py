"""The ways to deploy jobdock (docs/deploy.md) are checked as an operator
would: the Dockerfile builds with the test dockerd from a local wheel and
the image serves /healthz; the systemd units pass ``systemd-analyze
verify`` and their hardening lowers systemd's exposure score; the
Kubernetes manifests validate against the Kubernetes schemas."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import sysconfig
import tarfile
from pathlib import Path
from typing import Any

import httpx
import kubernetes_validate
import pytest
import yaml

from engines import Engine, EngineMissing
from python_image import import_base
from support import eventually, free_port

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "localhost/jobdock-server:test"


def _wheels(directory: Path) -> list[Path]:
    """jobdock's wheel, built from this checkout, and its dependencies'."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--disable-pip-version-check",
            str(ROOT),
            "-w",
            str(directory),
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    return sorted(directory.glob("*.whl"))


def _context(wheels: list[Path]) -> bytes:
    """The build context: the Dockerfile and dist/ with the wheels."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(ROOT / "Dockerfile", "Dockerfile")
        for wheel in wheels:
            tar.add(wheel, f"dist/{wheel.name}")
    return buffer.getvalue()


def _build(engine: Engine, context: bytes, base: str) -> str:
    """Build the image (no network, the base given); the build's output."""
    with engine.http() as http:
        response = http.post(
            "/build",
            params={
                "t": IMAGE,
                "buildargs": json.dumps({"BASE": base}),
                "networkmode": "none",
                "rm": "1",
                "forcerm": "1",
            },
            content=context,
            headers={"Content-Type": "application/x-tar"},
            timeout=600,
        )
    response.raise_for_status()
    lines = [json.loads(line) for line in response.text.splitlines() if line.strip()]
    said = "".join(line.get("stream", "") for line in lines)
    errors = [line["error"] for line in lines if "error" in line]
    assert not errors, f"{errors}\n{said}"
    return said


def _run(engine: Engine, port: int) -> str:
    """Start the image's server on the host's network, on ``port``."""
    with engine.http() as http:
        created = http.post(
            "/containers/create",
            json={
                "Image": IMAGE,
                "Env": [f"JOBDOCK_PORT={port}"],
                "HostConfig": {"NetworkMode": "host"},
            },
        )
        assert created.status_code == 201, created.text
        container: str = created.json()["Id"]
        assert http.post(f"/containers/{container}/start").status_code == 204
    return container


def _logs(engine: Engine, container: str) -> str:
    with engine.http() as http:
        raw = http.get(f"/containers/{container}/logs", params={"stdout": 1, "stderr": 1})
    return raw.content.decode(errors="replace")


def test_the_dockerfile_builds_from_a_local_wheel_and_the_image_serves(
    dockerd: Engine, tmp_path: Path
) -> None:
    site_packages = Path(sysconfig.get_paths()["purelib"])
    try:
        base = import_base(dockerd, site_packages)
    except EngineMissing as exc:
        pytest.skip(f"no base image with Python can be had: {exc}")
    wheels = _wheels(tmp_path / "dist")
    assert any(w.name.startswith("jobdock-") for w in wheels)

    said = _build(dockerd, _context(wheels), base)
    port = free_port()
    container = _run(dockerd, port)
    try:

        def healthy() -> dict[str, Any] | None:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
            except httpx.TransportError:
                return None
            return response.json() if response.status_code == 200 else None

        health = eventually(healthy, timeout=60, what=f"the image to serve\n{said}")
        unauthenticated = httpx.get(f"http://127.0.0.1:{port}/v1/jobs")
        log = _logs(dockerd, container)
    finally:
        with dockerd.http() as http:
            http.delete(f"/containers/{container}", params={"force": "true"})

    assert health["status"] == "ok"
    assert unauthenticated.status_code == 401, "the image serves with tokens on"
    assert '"logger": "jobdock' in log, "the image logs JSON lines"


def _installed(unit: Path, directory: Path) -> Path:
    """The unit as installed here: its jobdock is this checkout's (verify
    checks that the program it starts exists)."""
    jobdock = shutil.which("jobdock", path=str(Path(sys.executable).parent))
    assert jobdock is not None
    copy = directory / unit.name
    copy.write_text(unit.read_text().replace("/opt/jobdock/bin/jobdock", jobdock))
    return copy


UNITS = sorted((ROOT / "deploy" / "systemd").glob("*.service"))


@pytest.mark.parametrize("unit", UNITS, ids=[u.name for u in UNITS])
def test_the_systemd_unit_verifies_and_is_hardened(unit: Path, tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd)")
    installed = _installed(unit, tmp_path)

    verify = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(installed)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    # Exposure in tenths, 0 (locked down) to 100: at most 5.5, where a unit
    # without these options scores 9.6 ("UNSAFE").
    security = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--threshold=55", str(installed)],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert (verify.returncode, verify.stdout + verify.stderr) == (0, "")
    assert security.returncode == 0, security.stdout[-2000:]


MANIFESTS = sorted((ROOT / "deploy" / "kubernetes").glob("*.yaml"))


@pytest.mark.parametrize("manifest", MANIFESTS, ids=[m.name for m in MANIFESTS])
def test_the_kubernetes_manifests_validate(manifest: Path) -> None:
    resources = [r for r in yaml.safe_load_all(manifest.read_text()) if r]

    assert resources
    for resource in resources:
        kubernetes_validate.validate(resource, kubernetes_validate.latest_version(), strict=True)


def test_there_are_manifests_for_the_servers_and_the_agents() -> None:
    kinds = {
        (r["kind"], r["metadata"]["name"])
        for m in MANIFESTS
        for r in yaml.safe_load_all(m.read_text())
        if r
    }

    assert ("Deployment", "jobdock-server") in kinds
    assert ("DaemonSet", "jobdock-agent") in kinds
