"""The route class of ``POST /v1/jobs``: documented by FastAPI, called directly.

Submitting is the one request every job makes, and FastAPI's dependency
solving, body validation and response wrapping cost three times what
jobdock itself spends on a submit (measured with py-spy under
bench/bench_core.py). A :class:`DirectRoute` is an ordinary route for the
router and the OpenAPI document (its path, summary, body and responses are
its decorator's), but a request goes straight to its endpoint, which takes
the Request and returns the Response itself: reading and checking the body
is the endpoint's (api/jobs.py's ``create_job``). Errors are the app's as
for every route: a JobdockError becomes the one error body through the
app's handlers, and every middleware applies (the job's owner is the
principal ``api/auth.py``'s middleware resolved).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute


class DirectRoute(APIRoute):
    """An APIRoute whose endpoint is called with the request, no more."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        endpoint: Callable[[Request], Coroutine[Any, Any, Response]] = self.endpoint
        return endpoint
