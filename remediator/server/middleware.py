"""What every route shares: the state store being down is a 503, never a 500.

A handler that needs the store lets ``StateUnavailable`` rise; this turns it into
``503 {"error": "state_unavailable", ...}`` with a ``Retry-After``, so clients
(Alertmanager, an operator's curl, Prometheus scraping /metrics) retry instead of
reading a traceback.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from remediator.errors import StateUnavailable
from remediator.server.responses import error

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def store_down_is_503(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except StateUnavailable as exc:
        resp = error(
            503, "state_unavailable", f"the state store cannot be reached: {exc}", path=request.path
        )
        resp.headers["Retry-After"] = "5"
        return resp
