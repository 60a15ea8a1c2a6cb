"""structlog setup: JSON lines when not on a TTY, coloured console otherwise.

Every line about an alert carries its fingerprint and alertname (bound by the
caller); every webhook gets a request id. A last processor redacts known secret
values, so a token that leaks into an event dict never reaches the output.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any, TextIO

import structlog

_secrets: set[str] = set()


def register_secrets(values: Iterable[str]) -> None:
    """Values that must never be printed (tokens, routing keys, DSN passwords)."""
    _secrets.update(v for v in values if v and len(v) >= 4)


def _redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    if not _secrets:
        return event
    for key, value in list(event.items()):
        if isinstance(value, str):
            for s in _secrets:
                if s in value:
                    value = value.replace(s, "**********")
            event[key] = value
    return event


def configure(
    *, json: bool | None = None, level: str = "info", stream: TextIO | None = None
) -> None:
    stream = stream if stream is not None else sys.stderr
    if json is None:
        json = not stream.isatty()
    renderer: Any = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )


def get(name: str) -> Any:
    return structlog.get_logger(name)
