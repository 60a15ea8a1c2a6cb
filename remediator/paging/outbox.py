"""The durable page outbox: enqueue in the state store, deliver, retry.

A page is written to the outbox before any network call, so a crash or restart
never loses it; a delivery worker (on any replica) claims due pages, sends them
and records the result. 429/5xx/timeouts are retried with exponential backoff
(Retry-After when given); 400s are recorded as failed and never retried.
Each (run, event, pager) is enqueued once (the ``idem`` key), so two replicas
never send the same page twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping

from remediator import logs
from remediator.errors import StateUnavailable
from remediator.metrics import Metrics
from remediator.paging.base import Delivered, PageContent, PageEvent, Pager, Rejected, RetryLater
from remediator.state.store import StateStore

log = logs.get("remediator.outbox")


class Outbox:
    def __init__(
        self,
        store: StateStore,
        pagers: Mapping[str, Pager],
        metrics: Metrics,
        *,
        owner: str,
        retry_max: float = 300.0,
        max_attempts: int = 50,
    ) -> None:
        self.store = store
        self.pagers = dict(pagers)
        self.metrics = metrics
        self.owner = owner
        self.retry_max = retry_max
        self.max_attempts = max_attempts
        self.wake = asyncio.Event()

    async def enqueue(self, idem: str, action: str, content: PageContent) -> int:
        """Queue the page for every pager that takes its severity. Returns how many."""
        event = PageEvent(action=action, content=content)  # type: ignore[arg-type]
        body = event.to_json()
        # A resolve goes where its trigger went: the same severity routing.
        n = await self.store.enqueue_pages(
            [
                (f"{idem}:{name}", name, action, content.dedup_key, body)
                for name, pager in self.pagers.items()
                if pager.accepts(content.severity)
            ]
        )
        if not self.pagers:
            log.warning(
                "page_not_sent", reason="no pager configured", idem=idem, title=content.title
            )
        self.wake.set()
        return n

    def _backoff(self, attempts: int) -> float:
        return float(min(self.retry_max, 0.5 * 2 ** max(0, attempts - 1)))

    async def deliver_due(self, limit: int = 20) -> int:
        """Send what is due now. Returns the number of pages attempted."""
        rows = await self.store.claim_pages(self.owner, limit, lease=60.0)
        for row in rows:
            pager = self.pagers.get(row["pager"])
            if pager is None:
                await self.store.page_failed(row["id"], f"pager {row['pager']} not configured")
                continue
            try:
                event = PageEvent.from_json(row["event"])
            except ValueError as exc:
                # A corrupt row must not stop delivery of the others.
                await self.store.page_failed(row["id"], f"unreadable event: {exc}")
                log.error("page_unreadable", idem=row["idem"], error=str(exc))
                continue
            result = await pager.send(event)
            if isinstance(result, Delivered):
                await self.store.page_sent(row["id"])
                outcome = "delivered"
            elif isinstance(result, RetryLater) and row["attempts"] < self.max_attempts:
                delay = max(result.after or 0.0, self._backoff(row["attempts"]))
                await self.store.page_retry(row["id"], time.time() + delay, result.reason)
                outcome = "retry"
            else:
                reason = result.reason if isinstance(result, RetryLater | Rejected) else "?"
                await self.store.page_failed(row["id"], reason)
                outcome = "rejected" if isinstance(result, Rejected) else "failed"
                log.error("page_failed", pager=row["pager"], idem=row["idem"], reason=reason)
            self.metrics.pages.labels(row["pager"], row["action"], outcome).inc()
        return len(rows)

    async def run_forever(
        self, interval: float = 0.5, beat: Callable[[], None] | None = None
    ) -> None:
        while True:
            if beat is not None:
                beat()
            try:
                n = await self.deliver_due()
            except StateUnavailable as exc:
                log.warning("outbox_state_unavailable", error=str(exc))
                n = 0
            if n == 0:
                self.wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), interval)

    async def send_direct(self, content: PageContent) -> None:
        """Bypass the outbox (used only when the state store itself is down)."""
        event = PageEvent(action="trigger", content=content)
        for name, pager in self.pagers.items():
            if not pager.accepts(content.severity):
                continue
            result = await pager.send(event)
            outcome = "delivered" if isinstance(result, Delivered) else "failed"
            self.metrics.pages.labels(name, "trigger", outcome).inc()
