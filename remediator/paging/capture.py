"""A pager that keeps what it is sent, for tests of rules, runbooks and the outbox.

It is a real implementation of the ``Pager`` protocol, shipped in the package so that
users can assert on the pages their rules produce. It can be told to answer
RetryLater or Rejected for the next N sends, to exercise outbox retries. It must
never touch the network.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from remediator.paging.base import (
    SEVERITIES,
    Delivered,
    DeliveryResult,
    PageEvent,
    Rejected,
    RetryLater,
    Severity,
    severity_set,
)


class CapturePager:
    def __init__(self, name: str = "capture", severities: Iterable[Severity] = SEVERITIES) -> None:
        self.name = name
        self._severities = severity_set(severities, pager=name)
        self.sent: list[PageEvent] = []  # every event send() was called with, in order
        self.delivered: list[PageEvent] = []  # only those answered with Delivered
        self.closed = False
        self._scripted: deque[DeliveryResult] = deque()

    def __repr__(self) -> str:
        return f"CapturePager(name={self.name!r}, sent={len(self.sent)})"

    def accepts(self, severity: Severity) -> bool:
        return severity in self._severities

    def fail_next(self, n: int = 1, result: RetryLater | Rejected | None = None) -> None:
        """Answer the next ``n`` sends with ``result`` (default RetryLater) instead."""
        outcome = result if result is not None else RetryLater(reason=f"{self.name}: scripted")
        self._scripted.extend([outcome] * n)

    async def send(self, event: PageEvent) -> DeliveryResult:
        if self.closed:
            # A send after aclose() is a bug in the caller's shutdown order.
            raise RuntimeError(f"{self.name}: send() after aclose()")
        self.sent.append(event)
        if self._scripted:
            return self._scripted.popleft()
        self.delivered.append(event)
        return Delivered(status=202)

    async def aclose(self) -> None:
        self.closed = True

    # Helpers for assertions.
    def triggers(self) -> list[PageEvent]:
        return [e for e in self.delivered if e.action == "trigger"]

    def resolves(self) -> list[PageEvent]:
        return [e for e in self.delivered if e.action == "resolve"]

    def reset(self) -> None:
        self.sent.clear()
        self.delivered.clear()
        self._scripted.clear()
