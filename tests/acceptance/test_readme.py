"""Every command block of README.md runs as written (issue 21): each fenced
``sh``, ``bash`` or ``console`` block, in order, against one real ``jobdock
serve`` on embedded defaults (with the secret key the README tells you to
give it, and a test dockerd for the container examples when there is one),
from a directory holding the files the examples name (script.sh, job.py,
a Makefile, ...), in a temporary HOME.

A block preceded by ``<!-- readme-test: skip (reason) -->`` is not run:
only for those that cannot run here (installing, a second machine, a
second server, Docker Hub).

An ``sh``/``bash`` block runs as one ``bash -e -o pipefail`` script, and
``curl`` fails on an HTTP error. In a ``console`` block each ``$`` line
must exit 0 (unless the next one is ``echo $?``, which shows its status),
and the lines shown under it are its output, compared word by word, where
a duration (``2.1s``) stands for any, the job id shown for the one printed
before (an id on a line of its own), and ``/home/me/proj`` for the
directory the block runs in. The README's address, 127.0.0.1:8080, is the
test server's.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

import engines
from jobdock.vault import generate_key
from support import ServerProcess

README = Path(__file__).parents[2] / "README.md"
SKIP = re.compile(r"<!-- readme-test: skip \((.+)\) -->")
FENCE = re.compile(r"^```(sh|bash|console)\s*$")
#: What the README calls the reader's project directory in its output.
PROJECT = "/home/me/proj"
DURATION = re.compile(r"^\d+(\.\d+)?(ms|s|m|h|d)$")
JOB_ID = re.compile(r"^[0-9a-f]{16}$")

#: The files the examples name, made in the directory they run in.
FILES = {
    "script.sh": "#!/bin/sh\necho script ran\n",
    "report.sh": "#!/bin/sh\necho report\n",
    "cleanup.sh": "#!/bin/sh\necho cleaned\n",
    # Fails its first attempt, so that --retries is seen at work.
    "flaky.sh": "#!/bin/sh\n[ -e .flaky-ran ] || { touch .flaky-ran; exit 1; }\necho ok\n",
    "deploy.sh": "#!/bin/sh\necho deployed\n",
    "backup.sh": "#!/bin/sh\necho backed up\n",
    "x": "#!/bin/sh\necho x\n",
    "chatty": "#!/bin/sh\nseq 100000\n",
    "job.py": "print('job')\n",
    "Makefile": "all:\n\t@echo built\n",
}

#: Before every block: curl fails on an HTTP error, as a script should.
PRELUDE = 'curl() { command curl --silent --show-error --fail-with-body "$@"; }\n'


@dataclass(frozen=True)
class Block:
    """A fenced command block of the README: its language, first line, text
    and the reason it is not run (None: it is)."""

    lang: str
    line: int
    text: str
    skip: str | None

    @property
    def needs_engine(self) -> bool:
        return "--image" in self.text


def blocks() -> list[Block]:
    """The README's sh, bash and console blocks, in order."""
    lines = README.read_text().splitlines()
    found, index = [], 0
    while index < len(lines):
        fence = FENCE.match(lines[index])
        if fence is None:
            index += 1
            continue
        start = index + 1
        end = next(i for i in range(start, len(lines)) if lines[i].startswith("```"))
        skip = SKIP.search(lines[index - 1]) if index else None
        text = "\n".join(lines[start:end]) + "\n"
        found.append(Block(fence.group(1), start, text, skip.group(1) if skip else None))
        index = end + 1
    return found


@dataclass
class Session:
    """Where the blocks run: the server, the directory, the environment, and
    the job ids the README shows mapped to those really printed."""

    server: ServerProcess
    directory: Path
    env: dict[str, str]
    engine: bool
    ids: dict[str, str]

    def localise(self, text: str) -> str:
        """``text`` with the README's address, ids and directory made this run's."""
        address = f"127.0.0.1:{self.server.port}"
        text = text.replace("127.0.0.1:8080", address).replace("localhost:8080", address)
        for shown, real in self.ids.items():
            text = text.replace(shown, real)
        return text.replace(PROJECT, str(self.directory))

    def bash(self, script: str, *options: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", *options, "-c", PRELUDE + script],
            cwd=self.directory,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=500,
        )


@pytest.fixture(scope="module")
def session(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Session:
    root = tmp_path_factory.mktemp("readme")
    engine = _engine(request)
    docker = {"docker_host": engine.url, "namespace": engines.NAMESPACE} if engine else {}
    # Limits and isolation must be enforced, never silently skipped.
    server = ServerProcess(
        root / "server", secret_key=generate_key(), unisolated="refuse", **docker
    )
    request.addfinalizer(server.stop)
    server.launch().wait_healthy(timeout=120)
    # Not under /tmp, which a --readonly job has its own of.
    directory = Path(tempfile.mkdtemp(prefix="jobdock-readme-", dir="/var/tmp"))
    request.addfinalizer(lambda: shutil.rmtree(directory, ignore_errors=True))
    for name, content in FILES.items():
        (directory / name).write_text(content)
        (directory / name).chmod(0o755)
    (directory / "home").mkdir()
    bindir = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "HOME": str(directory / "home"),
        "PATH": f"{bindir}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "JOBDOCK_URL": server.url,
        "JOBDOCK_HOME": str(server.home),
        "COLUMNS": "200",
        "DB_PASSWORD": "s3cret-readme",
    }
    return Session(server, directory, env, engine is not None, {})


def _engine(request: pytest.FixtureRequest) -> engines.Engine | None:
    """The session's test dockerd (with the README's images), or None where
    there is none (CI fails instead: it must have one)."""
    try:
        engine: engines.Engine = request.getfixturevalue("dockerd")
    except pytest.skip.Exception:
        return None
    return engine


# A block is a handful of CLI calls, seconds on an idle machine; a loaded one
# (many test runs at once) makes each call take many times longer.
@pytest.mark.timeout(600)
@pytest.mark.parametrize("block", blocks(), ids=lambda block: f"line{block.line}-{block.lang}")
def test_the_readme_block_runs_as_written(session: Session, block: Block) -> None:
    if block.skip is not None:
        pytest.skip(block.skip)
    if block.needs_engine and not session.engine:
        pytest.skip("no container engine to run the container examples on")
    if block.lang == "console":
        _run_console(session, block)
        return
    done = session.bash(session.localise(block.text), "-e", "-o", "pipefail")
    assert done.returncode == 0, (
        f"README line {block.line}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    )


@dataclass
class Command:
    """A ``$`` line of a console block and the output shown under it."""

    line: int
    text: str
    shown: list[str]


def _commands(block: Block) -> list[Command]:
    commands: list[Command] = []
    for offset, line in enumerate(block.text.splitlines()):
        if line.startswith("$ "):
            commands.append(Command(block.line + offset + 1, line[2:], []))
        elif commands:
            commands[-1].shown.append(line)
    return commands


def _run_console(session: Session, block: Block) -> None:
    """Run each command, one after the other, each seeing the exit status of
    the one before in ``$?``, and check its status and output."""
    commands = _commands(block)
    status = 0
    for index, command in enumerate(commands):
        script = f"(exit {status}); {session.localise(command.text)}"
        done = session.bash(script + "\n")
        status, output = done.returncode, done.stdout + done.stderr
        where = f"README line {command.line}: {command.text}\n{output}"
        shows_status = index + 1 < len(commands) and commands[index + 1].text == "echo $?"
        assert status == 0 or shows_status, f"exit {status}: {where}"
        if command.shown:
            _compare(session, command.shown, output, where)


def _compare(session: Session, shown: list[str], output: str, where: str) -> None:
    expected = session.localise("\n".join(shown)).split()
    actual = output.split()
    assert len(expected) == len(actual), f"output differs: {where}"
    for want, got in zip(expected, actual, strict=True):
        if JOB_ID.match(want) and JOB_ID.match(got) and want not in session.ids.values():
            session.ids[want] = got
            continue
        if DURATION.match(want) and DURATION.match(got):
            continue
        assert want == got, f"output differs ({want!r} shown, {got!r} printed): {where}"
