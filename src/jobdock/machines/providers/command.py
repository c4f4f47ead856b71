"""The ``command`` provider: the operator's own scripts start, stop and
list machines (a cloud CLI, a VM manager, a script that starts ``jobdock
agent`` on this host).

Each script is an argv list run without a shell, with the environment of
the server plus ``JOBDOCK_URL``, ``JOBDOCK_TOKEN`` (the machine's own agent
token: secret), ``JOBDOCK_MACHINE_ID``, ``JOBDOCK_POOL``,
``JOBDOCK_POOL_LABELS`` (``k=v,k=v``) and ``JOBDOCK_AGENT_ARGS`` (the agent's
options, one shell-quoted string). ``start`` prints the machine's id on its
last line of stdout; ``stop`` gets that id as its last argument;
``list_machines`` (optional) prints the live ids, one a line.
``interruptions`` (optional) prints the ids of machines about to be taken
back, one a line (docs/machines.md#the-command-provider).

The scripts' output goes to temporary files, not pipes: a start script that
leaves an agent running in the background (which inherits its stdout) must
not keep us waiting for an end-of-file that never comes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import tempfile
from typing import IO

from jobdock.machines.provider import (
    Interruption,
    MachineLaunch,
    Provider,
    ProviderError,
    ProviderMachine,
)
from jobdock.pool_settings import CommandPool, PoolSettings

#: At most this much of a script's output is read back.
OUTPUT_LIMIT = 64 * 1024


class CommandProvider:
    """Runs one pool's scripts."""

    def __init__(self, pool: str, settings: CommandPool) -> None:
        self.pool = pool
        self.settings = settings
        #: Machine id -> provider id, of the machines this provider started.
        self._ids: dict[str, str] = {}

    async def start(self, launch: MachineLaunch) -> str:
        """Run ``start``; the id on its last line of stdout."""
        env = {
            **launch.agent_env,
            "JOBDOCK_URL": launch.server_url,
            "JOBDOCK_TOKEN": launch.agent_token,
            "JOBDOCK_MACHINE_ID": launch.machine_id,
            "JOBDOCK_POOL": self.pool,
            "JOBDOCK_POOL_LABELS": ",".join(f"{k}={v}" for k, v in sorted(launch.labels.items())),
            "JOBDOCK_AGENT_ARGS": shlex.join(launch.agent_args),
        }
        out = await self._run("start", self.settings.start, env)
        lines = [line.strip() for line in out.splitlines() if line.strip()]
        if not lines:
            raise ProviderError(f"pool {self.pool!r} (command): start printed no machine id")
        provider_id = lines[-1][:255]
        self._ids[launch.machine_id] = provider_id
        return provider_id

    async def stop(self, provider_id: str) -> None:
        """Run ``stop`` with the machine's id as its last argument."""
        await self._run("stop", [*self.settings.stop, provider_id], {})

    async def machines(self) -> list[ProviderMachine]:
        """The ids ``list_machines`` prints (without it: none known)."""
        if self.settings.list_machines is None:
            return []
        out = await self._run("list_machines", self.settings.list_machines, {})
        ours = {provider_id: machine for machine, provider_id in self._ids.items()}
        return [
            ProviderMachine(line, ours.get(line), "running")
            for line in (raw.strip() for raw in out.splitlines())
            if line
        ]

    async def interruptions(self) -> list[Interruption]:
        """The ids ``interruptions`` prints (without it: none)."""
        if self.settings.interruptions is None:
            return []
        out = await self._run("interruptions", self.settings.interruptions, {})
        return [Interruption(line) for line in (raw.strip() for raw in out.splitlines()) if line]

    async def close(self) -> None:
        """Nothing to release."""

    async def _run(self, what: str, argv: list[str], env: dict[str, str]) -> str:
        """Run one script; its stdout. Raises ProviderError on a failure to
        start, a non-zero exit or a timeout."""
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            try:
                process = await asyncio.create_subprocess_exec(
                    *argv,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    env={**os.environ, **env},
                    start_new_session=True,
                )
            except OSError as exc:
                raise self._error(what, f"cannot run {argv[0]!r}: {exc.strerror or exc}") from None
            try:
                async with asyncio.timeout(self.settings.timeout):
                    code = await process.wait()
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
                raise self._error(
                    what, f"{argv[0]!r} did not finish within {self.settings.timeout:g} s"
                ) from None
            if code != 0:
                raise self._error(what, f"{argv[0]!r} exited with {code}: {_last_line(err)}")
            return _read(out)

    def _error(self, what: str, cause: str) -> ProviderError:
        return ProviderError(f"pool {self.pool!r} (command): {what}: {cause}")


def _read(file: IO[bytes]) -> str:
    file.seek(0)
    return file.read(OUTPUT_LIMIT).decode(errors="replace")


def _last_line(file: IO[bytes]) -> str:
    lines = [line.strip() for line in _read(file).splitlines() if line.strip()]
    return lines[-1][:300] if lines else "(no output on stderr)"


def build(pool: PoolSettings, *, server: str | None = None) -> Provider:
    """The provider of a ``command`` pool (``server`` is unused: scripts
    know their own machines)."""
    del server
    settings = pool.command
    if settings is None:
        raise ProviderError(f"pool {pool.name!r}: provider 'command' needs [pools.command]")
    return CommandProvider(pool.name, settings)
