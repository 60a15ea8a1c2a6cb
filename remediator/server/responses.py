"""JSON responses, and the one place an error reply is logged and counted."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from remediator import logs

log = logs.get("remediator.server")


def printable(text: str, limit: int = 100) -> str:
    """A header value (or any client text) safe to echo in an error body and a log.

    aiohttp hands over header bytes that are not UTF-8 as lone surrogates, which
    orjson (and any UTF-8 writer) refuses: echoing one as it is would turn a 4xx into
    a 500. They come back as \\udcXX escapes, and long values are cut.
    """
    cut = text[:limit].encode("utf-8", "backslashreplace").decode("utf-8")
    return cut + ("..." if len(text) > limit else "")


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=orjson.dumps(data, default=str), status=status, content_type="application/json"
    )


def error(status: int, error: str, detail: Any = None, **log_fields: Any) -> web.Response:
    """Every error body is {"error", "detail"}; the caller counts the metric."""
    log.warning("request_rejected", status=status, error=error, detail=detail, **log_fields)
    return json_response({"error": error, "detail": detail}, status)
