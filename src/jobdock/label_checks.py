"""Labels that are checked, not only declared (Jobrunner's ``port_is_free``):
a worker may have a shell command per label (``label_checks``) that says,
when the worker would claim a job requiring that label, whether it can take
one now. Exit 0 is yes; any other exit, or no answer within
``label_check_timeout`` (the check's process group is then killed), is no.

A check runs only when a queued job that the worker could otherwise claim
requires its label, before each claim, at most one check per label at a
time; a label whose check said no is left out of that claim's offer (so a
job requiring it waits, for this worker or another). Imports the settings,
the store's protocol and the foundation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Mapping

from jobdock.settings import Settings
from jobdock.store.protocol import WorkerSide

_log = logging.getLogger(__name__)


class LabelChecks:
    """The checks of one worker's labels, and what they said last."""

    def __init__(self, settings: Settings) -> None:
        self.commands = dict(settings.label_checks)
        self.timeout = settings.label_check_timeout
        self._path = settings.job_path
        #: What each check said last (None: never asked), to log only changes.
        self._said: dict[str, bool] = {}

    def __bool__(self) -> bool:
        return bool(self.commands)

    async def offer(self, store: WorkerSide, labels: Mapping[str, str]) -> dict[str, str]:
        """``labels`` without the checked ones that cannot be offered now:
        those no claimable job wants (not asked) and those whose check said no."""
        checked = [key for key in self.commands if key in labels]
        offered = {key: value for key, value in labels.items() if key not in self.commands}
        wanted = sorted(await store.wanted_labels(checked, labels, time.time()))
        answers = await asyncio.gather(*(self.check(key, labels[key]) for key in wanted))
        offered.update({key: labels[key] for key, yes in zip(wanted, answers, strict=True) if yes})
        return offered

    async def check(self, key: str, value: str) -> bool:
        """Run the check of label ``key``: True when it exits 0 in time."""
        env = {"PATH": self._path, "JOBDOCK_LABEL": key, "JOBDOCK_LABEL_VALUE": value}
        proc = await asyncio.create_subprocess_exec(
            "/bin/sh",
            "-c",
            self.commands[key],
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        code: int | None = None
        try:
            async with asyncio.timeout(self.timeout):
                code = await proc.wait()
        except TimeoutError:
            pass
        finally:
            # Also on a worker stopping meanwhile; and what a check that
            # answered left behind in its group goes with it.
            _kill_group(proc.pid)
        if code is None:
            await proc.wait()
            _log.warning(
                "the check of label %s did not answer in %gs; killed (counts as no)",
                key,
                self.timeout,
            )
        yes = code == 0
        if self._said.get(key) != yes:
            _log.info("label %s=%s: its check says %s", key, value, "yes" if yes else "no")
            self._said[key] = yes
        return yes


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
