"""A few child processes that run jq filters, each under a deadline.

libjq runs a filter to its end on the calling thread and offers no way to
stop it, so a filter such as ``def f: f; f`` or ``[range(1e9)]`` would hold a
thread (and memory) of the server for good. Filters run in child processes
(``_child.py``) instead: a request takes an idle child, and a child that
misses the deadline is killed and replaced, so the server stays responsive
whatever a filter does. A child's start (a Python interpreter importing jq)
takes a few tens of milliseconds and happens off the request path, except
while every child is being replaced.
"""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from jobdock.errors import TemplateFailed, TemplateOutputTooLarge, TemplateTimeout

_log = logging.getLogger(__name__)
_CHILD = Path(__file__).with_name("_child.py")


class _Child:
    """One child process and its pipes."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, max_bytes: int) -> _Child:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-I",
            str(_CHILD),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env={},
            # An answer is the output (JSON text) inside a JSON string.
            limit=2 * max_bytes + 4096,
        )
        return cls(proc)

    async def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        """Send one request and read its answer; TemplateFailed if the child died."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write(json.dumps(request).encode() + b"\n")
            await self.proc.stdin.drain()
            line = await self.proc.stdout.readline()
        except (ConnectionError, ValueError) as exc:
            # ValueError: the answer overran the stream's limit.
            raise TemplateFailed(f"the filter's process failed: {exc}") from None
        if not line:
            raise TemplateFailed("the filter's process died (out of memory?)")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()

    async def close(self) -> None:
        self.kill()
        await self.proc.wait()


class FilterPool:
    """Runs jq filters in ``size`` child processes, each run under ``timeout``
    seconds and ``max_bytes`` of output."""

    def __init__(self, size: int, timeout: float, max_bytes: int) -> None:
        self.size = size
        self.timeout = timeout
        self.max_bytes = max_bytes
        self._idle: asyncio.Queue[_Child] = asyncio.Queue()
        self._children: set[_Child] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    async def start(self) -> None:
        """Start the children."""
        for _ in range(self.size):
            await self._add()

    async def close(self) -> None:
        """Stop the children, and any start of a replacement."""
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(*(child.close() for child in self._children))
        self._children.clear()

    async def run(self, program: str, value: Any, variables: dict[str, Any]) -> str:
        """The one output of ``program`` on ``value`` with ``variables``, as
        JSON text. Raises TemplateTimeout when it runs past the deadline
        (waiting for a free child included), TemplateOutputTooLarge, and
        TemplateFailed for a compile or runtime error of the filter, none
        or several outputs, or a child that died."""
        request = {"program": program, "input": value, "vars": variables}
        request["max_bytes"] = self.max_bytes
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        try:
            async with asyncio.timeout_at(deadline):
                child = await self._idle.get()
        except TimeoutError:
            raise TemplateTimeout(
                f"no filter process was free within {self.timeout:g}s (too many requests)"
            ) from None
        healthy = False
        try:
            async with asyncio.timeout_at(deadline):
                answer = await child.ask(request)
            healthy = True
        except TimeoutError:
            raise TemplateTimeout(
                f"the filter ran longer than {self.timeout:g}s and was stopped"
            ) from None
        finally:
            self._give_back(child, healthy)
        if "output" in answer:
            output: str = answer["output"]
            return output
        message = str(answer.get("message", "the filter failed"))
        if answer.get("error") == "too_large":
            raise TemplateOutputTooLarge(message)
        raise TemplateFailed(message)

    def _give_back(self, child: _Child, healthy: bool) -> None:
        if healthy:
            self._idle.put_nowait(child)
            return
        child.kill()
        self._children.discard(child)
        self._in_background(child.close())
        if not self._closed:
            self._in_background(self._add())

    def _in_background(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _add(self) -> None:
        try:
            child = await _Child.start(self.max_bytes)
        except OSError as exc:
            _log.error("cannot start a jq filter process: %s", exc)
            return
        if self._closed:
            await child.close()
            return
        self._children.add(child)
        self._idle.put_nowait(child)
