"""``python -m jobdock.call MODULE:FUNCTION ARGS_JSON``: how a workflow's
``call`` step runs (docs/workflows.md).

The worker runs it as an ordinary process job, in its own Python. The
function is called with the JSON object ``ARGS_JSON`` as keyword arguments
(a coroutine function is run to its end); what it returns is printed as the
last line of stdout, as JSON, which makes it the step's output. An exception
is printed to stderr and exits 1, failing the step.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import sys
import traceback
from typing import Any


def call(target: str, args: dict[str, Any]) -> Any:
    """Import ``module:function`` and call it with ``args``."""
    module_name, _, name = target.partition(":")
    function = getattr(importlib.import_module(module_name), name)
    result = function(**args)
    if inspect.isawaitable(result):
        result = asyncio.run(_awaited(result))
    return result


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        sys.stderr.write("usage: python -m jobdock.call MODULE:FUNCTION ARGS_JSON\n")
        return 2
    try:
        args = json.loads(argv[1])
        result = call(argv[0], args)
        line = json.dumps(result)
    except Exception:
        traceback.print_exc()
        return 1
    sys.stdout.flush()
    sys.stdout.write(f"\n{line}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
