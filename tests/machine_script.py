"""The operator's scripts of the ``command`` provider in the machine tests:
a "machine" is a ``jobdock agent`` process on this host, with a home of
its own under DIR (docs/machines.md#the-command-provider).

    machine_script.py start DIR         start an agent; print its id
    machine_script.py start-dead DIR    start nothing (a machine that never boots)
    machine_script.py stop DIR ID       stop that agent (SIGTERM, then SIGKILL)
    machine_script.py interruptions DIR print the ids in DIR/interrupt

DIR/ID.pid holds each agent's pid; DIR/ID.log its output; DIR/events one
line per start and stop, for the tests to read.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path


def start(directory: Path, dead: bool) -> None:
    machine = os.environ["JOBDOCK_MACHINE_ID"]
    provider_id = f"cmd-{machine}"
    home = directory / provider_id
    home.mkdir(parents=True, exist_ok=True)
    if not dead:
        env = {**os.environ, "JOBDOCK_HOME": str(home)}
        args = shlex.split(os.environ["JOBDOCK_AGENT_ARGS"])
        with open(directory / f"{provider_id}.log", "ab") as log:
            agent = subprocess.Popen(
                [sys.executable, "-m", "jobdock", "agent", *args],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        (directory / f"{provider_id}.pid").write_text(str(agent.pid))
    _event(directory, f"start {provider_id} {time.time():.6f}")
    print(f"starting {machine}")
    print(provider_id)


def stop(directory: Path, provider_id: str) -> None:
    pid_file = directory / f"{provider_id}.pid"
    if pid_file.exists():
        pid = int(pid_file.read_text())
        _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        _signal(pid, signal.SIGKILL)
        pid_file.unlink(missing_ok=True)
    _event(directory, f"stop {provider_id}")


def interruptions(directory: Path) -> None:
    notices = directory / "interrupt"
    if notices.exists():
        print(notices.read_text(), end="")


def _alive(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/stat")
    return status.exists() and status.read_text().split()[2] != "Z"


def _signal(pid: int, signo: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signo)


def _event(directory: Path, line: str) -> None:
    with open(directory / "events", "a") as events:
        events.write(f"{line}\n")


if __name__ == "__main__":
    command, where = sys.argv[1], Path(sys.argv[2])
    if command in ("start", "start-dead"):
        start(where, dead=command == "start-dead")
    elif command == "stop":
        stop(where, sys.argv[3])
    elif command == "interruptions":
        interruptions(where)
    else:
        sys.exit(f"unknown command {command!r}")
