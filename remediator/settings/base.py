"""What every settings model shares: strictness, durations, URLs."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: object) -> float:
    """'30m' -> 1800.0; bare numbers are seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration like 30s, 5m, 1h")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("duration must not be negative")
        return float(value)
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m:
            return float(m.group(1)) * _UNITS[m.group(2)]
    raise ValueError(f"expected a duration like 30s, 5m, 1h, got {value!r}")


def positive_duration(value: object, name: str) -> float:
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError(f"{name} must be positive")
    return seconds


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


def http_url(v: str) -> str:
    if not v.startswith(("http://", "https://")):
        raise ValueError("must be an http:// or https:// URL")
    return v
