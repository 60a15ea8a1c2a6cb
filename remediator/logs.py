"""structlog setup: JSON lines when not on a TTY, coloured console otherwise.

Every line about an alert carries its fingerprint and alertname (bound by the
caller); every webhook gets a request id. A last processor redacts known secret
values, so a token that leaks into an event dict never reaches the output.
"""

from __future__ import annotations

import json as stdlib_json
import logging
import sys
import time
from collections.abc import Callable, Iterable, MutableMapping
from typing import Any, TextIO

import orjson
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


_second: tuple[int, str] = (0, "")


def _timestamp(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """TimeStamper(fmt="iso", utc=True)'s text (always with microseconds), for less:
    the date and time to the second are formatted once per second."""
    global _second
    now = time.time()
    second = int(now)
    if second != _second[0]:
        _second = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
    event["timestamp"] = f"{_second[1]}.{int((now - second) * 1_000_000):06d}Z"
    return event


def _json_dumps(event: Any, default: Callable[[Any], Any] | None = None, **kw: Any) -> str:
    # orjson is several times faster than json.dumps; it refuses what json does not
    # (integers beyond 64 bits, lone surrogates), which then takes the slow road.
    try:
        return orjson.dumps(event, default=default, option=orjson.OPT_NON_STR_KEYS).decode()
    except orjson.JSONEncodeError:
        return stdlib_json.dumps(event, default=default, **kw)


class _CurrentStderr:
    """Whatever ``sys.stderr`` is when a line is written, not when logging was set up
    (a caller that swaps it, as an embedding program or a test runner does, and closes
    the old one must not turn every later log line into a ValueError)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure(
    *, json: bool | None = None, level: str = "info", stream: TextIO | None = None
) -> None:
    """Call once, before the first log line: loggers keep the configuration they
    first logged with (re-resolving it on every call cost more than formatting)."""
    if json is None:
        json = not (stream if stream is not None else sys.stderr).isatty()
    sink: Any = stream if stream is not None else _CurrentStderr()
    renderer: Any = (
        structlog.processors.JSONRenderer(serializer=_json_dumps)
        if json
        else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            _timestamp,
            structlog.processors.format_exc_info,
            _redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.WriteLoggerFactory(file=sink),
        cache_logger_on_first_use=True,
    )


def get(name: str) -> Any:
    return structlog.get_logger(name)
