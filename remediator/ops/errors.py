"""Validation errors as a person reads them: one line per field, with its JSON path."""

from __future__ import annotations

from collections.abc import Iterator

from pydantic import ValidationError


def json_path(loc: tuple[int | str, ...]) -> str:
    """("alerts", 0, "labels") -> "$.alerts[0].labels"."""
    path = "$"
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def validation_lines(exc: ValidationError) -> Iterator[str]:
    for err in exc.errors(include_url=False):
        if err["type"] == "json_invalid":
            yield f"invalid JSON: {err['ctx'].get('error', err['msg'])}"
            continue
        msg = "unknown field" if err["type"] == "extra_forbidden" else err["msg"]
        yield f"{json_path(err['loc'])}: {msg}"
