"""A base image with Python for building jobdock's Dockerfile where no
registry can be reached: busybox-static and this machine's Debian Python
(/usr/bin/python3.11, its standard library and the shared libraries it and
jobdock's wheels link), as a root filesystem tar. Built once and kept in
~/.cache/jobdock-tests (keyed by what went in), then imported into each
test engine."""

from __future__ import annotations

import hashlib
import io
import subprocess
import tarfile
from pathlib import Path

from engines import Engine, EngineMissing, busybox_rootfs

#: The base image's name in the test engines.
BASE = "localhost/jobdock-python-base:3.11"
PYTHON = Path("/usr/bin/python3.11")
STDLIB = Path("/usr/lib/python3.11")
#: Debian's ensurepip installs pip from these (python3-pip-whl).
WHEELS = Path("/usr/share/python-wheels")
CACHE = Path.home() / ".cache" / "jobdock-tests"
#: The image's environment: the libraries' directories, since it has no ld.so.cache.
ENV = [
    "PATH=/usr/local/bin:/usr/bin:/bin",
    "LD_LIBRARY_PATH=/lib/x86_64-linux-gnu:/usr/lib/x86_64-linux-gnu",
]


def _libraries(binaries: list[Path]) -> set[Path]:
    """The shared libraries ``binaries`` load, as ``ldd`` finds them here."""
    found: set[Path] = set()
    for chunk in range(0, len(binaries), 200):
        out = subprocess.run(
            ["ldd", *map(str, binaries[chunk : chunk + 200])],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        for line in out.splitlines():
            if line.endswith(":"):  # the name of the next binary
                continue
            parts = line.split()
            path = parts[2] if "=>" in parts and len(parts) > 2 else (parts[0] if parts else "")
            # The system's: a wheel's own libraries come with the wheel.
            if path.startswith(("/lib", "/usr/lib")):
                found.add(Path(path))
    return found


def python_rootfs(site_packages: Path) -> bytes:
    """The base image's root filesystem (a tar); its libraries cover the
    compiled modules under ``site_packages`` (the wheels the image installs)."""
    if not (PYTHON.exists() and (STDLIB / "ensurepip").is_dir() and WHEELS.is_dir()):
        raise EngineMissing("Debian's python3.11 and python3.11-venv are not installed")
    binaries = [PYTHON, *STDLIB.glob("lib-dynload/*.so"), *site_packages.rglob("*.so*")]
    libraries = sorted(_libraries([b for b in binaries if b.is_file()]))
    key = hashlib.sha256(
        "\n".join(f"{p}:{p.stat().st_size}" for p in [PYTHON, WHEELS, *libraries]).encode()
    ).hexdigest()[:16]
    cached = CACHE / f"python-base-{key}.tar"
    if cached.exists():
        return cached.read_bytes()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        with tarfile.open(fileobj=io.BytesIO(busybox_rootfs())) as busybox:
            for member in busybox.getmembers():
                tar.addfile(member, busybox.extractfile(member) if member.isfile() else None)
        for directory in ("usr", "usr/bin", "usr/lib", "lib", "lib64", "opt", "var", "var/lib"):
            info = tarfile.TarInfo(directory)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        tar.add(PYTHON, "usr/bin/python3.11")
        for name in ("python3", "python"):
            link = tarfile.TarInfo(f"usr/bin/{name}")
            link.type, link.linkname = tarfile.SYMTYPE, "python3.11"
            tar.addfile(link)
        tar.add(
            STDLIB,
            "usr/lib/python3.11",
            filter=lambda info: (
                None if "/dist-packages" in info.name or "/test/" in info.name else info
            ),
        )
        tar.add(WHEELS, str(WHEELS).lstrip("/"))
        for library in libraries:
            real = library.resolve()
            tar.add(real, str(library).lstrip("/"))
    data = buffer.getvalue()
    CACHE.mkdir(parents=True, exist_ok=True)
    partial = cached.with_suffix(".partial")
    partial.write_bytes(data)
    partial.rename(cached)
    return data


def import_base(engine: Engine, site_packages: Path) -> str:
    """Import the base image into ``engine``; its name."""
    engine.import_image(BASE, python_rootfs(site_packages), None, ["python3"], ENV)
    return BASE
