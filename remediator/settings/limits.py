"""Bounds and timings: ``limits``, ``engine`` and ``retention``."""

from __future__ import annotations

from typing import Any

from pydantic import Field, ValidationInfo, field_validator

from remediator.settings.base import Strict, parse_duration, positive_duration


class LimitSettings(Strict):
    max_body_bytes: int = Field(default=1_048_576, gt=0)
    workers: int = Field(default=8, gt=0, le=256)
    max_alerts_per_payload: int = Field(default=5000, gt=0)
    # UTF-8 bytes of any one label or annotation name or value (alerts and the group's
    # labels), and labels (or annotations) per set: every byte is stored in the
    # journal and the audit trail, so what one sender can make it keep is bounded.
    max_label_bytes: int = Field(default=4096, gt=0)
    max_labels: int = Field(default=64, gt=0)
    # A client gets this long to send a request's headers (from connecting, or from
    # the previous answer on a kept-alive connection) and, separately, its body; an
    # idle kept-alive connection is closed after it too. Bounds slow clients.
    read_timeout: float = 10.0

    @field_validator("read_timeout", mode="before")
    @classmethod
    def _read_timeout(cls, v: Any) -> float:
        return positive_duration(v, "read_timeout")


class EngineSettings(Strict):
    """Timings of the engine. Not in the original contract; all have safe defaults."""

    approval_ttl: float = 3600.0
    circuit_failures: int = Field(default=3, gt=0)
    circuit_reset: float = 600.0
    lease: float = 30.0
    poll_interval: float = 1.0
    page_retry_max: float = 300.0

    @field_validator(
        "approval_ttl", "circuit_reset", "lease", "poll_interval", "page_retry_max", mode="before"
    )
    @classmethod
    def _duration(cls, v: Any) -> float:
        return parse_duration(v)


# Below these, pruning would undo what the store is for: occurrences keep Alertmanager's
# resends (repeat_interval, default 4h) from journaling an alert again, and finished
# runs are what cooldowns, hourly limits and blast radius count (the daemon also keeps
# runs for the longest such window of its loaded rules, whatever this says).
MIN_RETENTION = {"occurrences": (3600.0, "1h"), "runs": (86400.0, "1d")}


class RetentionSettings(Strict):
    """How long finished rows stay in the state store (pruned on one replica at a time).

    ``occurrences``: done (and failed) occurrences, by when they were received.
    ``runs``: finished runs with their steps and approvals, and sent or failed pages.
    ``interval``: how often a replica tries a pruning pass.
    """

    occurrences: float = 7 * 86400.0
    runs: float = 90 * 86400.0
    interval: float = 60.0

    @field_validator("occurrences", "runs", "interval", mode="before")
    @classmethod
    def _duration(cls, v: Any, info: ValidationInfo) -> float:
        seconds = parse_duration(v)
        name = info.field_name or ""
        if name in MIN_RETENTION and seconds < MIN_RETENTION[name][0]:
            raise ValueError(f"must be at least {MIN_RETENTION[name][1]}")
        if seconds <= 0:
            raise ValueError("must be positive")
        return seconds
