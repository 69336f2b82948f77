"""The outermost layer for hot endpoints: a hand-written answer to well-formed requests, the app for the rest.

FastAPI's request handling (its exception and exit-stack middleware, matching the path against every route, solving
dependencies, validating each parameter) costs several times the work of a point lookup. A fast path is a function
`(scope) -> Response | None` registered for one path: it answers the common, well-formed GET request itself and
returns None for anything else (a missing, malformed or unknown parameter, a header it does not handle, an input
the domain refuses), which then goes through the app as usual. Errors, validation messages and the OpenAPI contract
therefore stay those of the FastAPI endpoint declared for the same path; a fast path must give the same bytes as
that endpoint (tests compare them).
"""

from __future__ import annotations

import logging
from typing import Any, Callable, MutableMapping

from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

FastPath = Callable[[MutableMapping[str, Any]], Response | None]
log = logging.getLogger("app.fastpath")


class FastPathMiddleware:
    """Offer each GET request to the fast path registered for its path, if any; otherwise call the app."""

    def __init__(self, app: ASGIApp, paths: MutableMapping[str, FastPath]) -> None:
        self.app = app
        self.paths = paths  # read per request: the same mapping the app keeps in app.state.fast_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            fast = self.paths.get(scope["path"])
            if fast is not None:
                try:
                    response = fast(scope)
                except Exception:  # never answer from a broken fast path: the app's own handling decides
                    log.exception("fast path for %s failed; the request goes through the app", scope["path"])
                    response = None
                if response is not None:
                    await response(scope, receive, send)
                    return
        await self.app(scope, receive, send)
