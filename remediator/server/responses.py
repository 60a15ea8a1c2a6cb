"""JSON responses, and the one place an error reply is logged and counted."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from remediator import logs

log = logs.get("remediator.server")


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=orjson.dumps(data, default=str), status=status, content_type="application/json"
    )


def error(status: int, error: str, detail: Any = None, **log_fields: Any) -> web.Response:
    """Every error body is {"error", "detail"}; the caller counts the metric."""
    log.warning("request_rejected", status=status, error=error, detail=detail, **log_fields)
    return json_response({"error": error, "detail": detail}, status)
