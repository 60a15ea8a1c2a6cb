"""The durable page outbox: enqueue in the state store, deliver, retry.

A page is written to the outbox before any network call, so a crash or restart
never loses it; a delivery worker (on any replica) claims due pages, sends them
and records the result. 429/5xx/timeouts are retried with exponential backoff
(Retry-After when given); 400s are recorded as failed and never retried.
Each (run, event, pager) is enqueued once (the ``idem`` key), so two replicas
never send the same page twice.

A pager opens at most ``max_pages_per_hour`` new incidents in any rolling hour,
counted in the store across replicas; past that, new incidents fold into one
summary incident per pager and hour, re-sent (at most once per
``fold_update_interval``) as more fold in, and resolved once its hour has passed and
everything in it resolved. A P0 whose runbook acted (``never_fold``) always gets
its own incident. See ``state/folds.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable, Mapping

from remediator import logs
from remediator.errors import StateUnavailable
from remediator.metrics import Metrics
from remediator.paging import folded
from remediator.paging.base import Delivered, PageContent, PageEvent, Pager, Rejected, RetryLater
from remediator.paging.queue import PageQueue
from remediator.state import folds

log = logs.get("remediator.outbox")


class Outbox:
    def __init__(
        self,
        store: PageQueue,
        pagers: Mapping[str, Pager],
        metrics: Metrics,
        *,
        owner: str,
        retry_max: float = 300.0,
        max_attempts: int = 50,
        max_pages_per_hour: int = 60,
        fold_update_interval: float = 60.0,
        fold_sweep_interval: float = 30.0,
        actions_command: str = "remediator actions --limit 100",
    ) -> None:
        if max_pages_per_hour <= 0:
            raise ValueError("max_pages_per_hour must be > 0")
        self.store = store
        self.pagers = dict(pagers)
        self.metrics = metrics
        self.owner = owner
        self.retry_max = retry_max
        self.max_attempts = max_attempts
        self.max_pages_per_hour = max_pages_per_hour
        self.fold_update_interval = fold_update_interval
        self.fold_sweep_interval = fold_sweep_interval
        # The command a summary page offers, as it must be typed to reach this state.
        self.actions_command = actions_command
        self.wake = asyncio.Event()
        self._pending: list[tuple[list[folds.Page], asyncio.Future[int]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def enqueue(self, idem: str, action: str, content: PageContent) -> int:
        """Queue the page for every pager that takes its severity. Returns how many
        rows were queued (folded ones included; a repeated idem queues nothing)."""
        return await self.enqueue_many([(idem, action, content)])

    async def enqueue_many(self, pages: Iterable[tuple[str, str, PageContent]]) -> int:
        """``enqueue`` for many pages, in one transaction."""
        rows: list[folds.Page] = []
        for idem, action, content in pages:
            body = PageEvent(action=action, content=content).to_json()  # type: ignore[arg-type]
            topic = folded.topic(content)
            # A resolve goes where its trigger went: the same severity routing.
            rows += [
                folds.Page(
                    f"{idem}:{name}",
                    name,
                    action,
                    content.dedup_key,
                    body,
                    never_fold=content.never_fold,
                    topic=topic,
                )
                for name, pager in self.pagers.items()
                if pager.accepts(content.severity)
            ]
            if not self.pagers:
                log.warning(
                    "page_not_sent", reason="no pager configured", idem=idem, title=content.title
                )
        return await self._submit(rows)

    async def _submit(self, rows: list[folds.Page]) -> int:
        """Queue ``rows`` with whatever other callers are queueing now: one transaction
        for all of them (group commit). Folding reads the budget under a lock per
        pager; a transaction per page made every run wait its turn for it."""
        if not rows:
            return 0
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        # A caller cancelled while it waits never reads its future: read it here.
        future.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._pending.append((rows, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_pending(), name="outbox-enqueue")
        return await future

    async def _flush_pending(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                result = await folds.enqueue(
                    self.store,
                    [row for rows, _ in batch for row in rows],
                    budget=self.max_pages_per_hour,
                    interval=self.fold_update_interval,
                    now=time.time(),
                    summary_event=folded.placeholder,
                )
            except Exception as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for pager, summary in result.opened:
                log.warning(
                    "pages_folding",
                    pager=pager,
                    summary=summary,
                    max_pages_per_hour=self.max_pages_per_hour,
                )
            for pager, n in result.folded.items():
                self.metrics.pages_folded.labels(pager).inc(n)
            self.wake.set()
            for rows, future in batch:
                if not future.done():
                    future.set_result(sum(1 for row in rows if row.idem in result.idems))

    def _backoff(self, attempts: int) -> float:
        return float(min(self.retry_max, 0.5 * 2 ** max(0, attempts - 1)))

    async def deliver_due(self, limit: int = 20) -> int:
        """Send what is due now. Returns the number of pages attempted."""
        rows = await self.store.claim_pages(self.owner, limit, lease=60.0)
        for row in rows:
            pager = self.pagers.get(row.pager)
            if pager is None:
                await self.store.page_failed(row.id, f"pager {row.pager} not configured")
                continue
            if row.incident in folds.SUMMARY_SENDS:
                # Rendered now, so it shows the counts as they stand.
                stats = await folds.summary_stats(self.store, row.pager, row.dedup_key)
                if stats.resolved:  # a trigger now would open a new incident
                    await folds.skip(self.store, row.id, "the summary resolved")
                    continue
                event = PageEvent(action="trigger", content=self._summary(stats))
            else:
                try:
                    if row.event is None:
                        raise ValueError("the stored event is not a JSON object")
                    event = PageEvent.from_json(row.event)
                except ValueError as exc:
                    # A corrupt row must not stop delivery of the others.
                    await self.store.page_failed(row.id, f"unreadable event: {exc}")
                    log.error("page_unreadable", idem=row.idem, error=str(exc))
                    continue
            result = await pager.send(event)
            if isinstance(result, Delivered):
                await self.store.page_sent(row.id)
                outcome = "delivered"
            elif isinstance(result, RetryLater) and row.attempts < self.max_attempts:
                delay = max(result.after or 0.0, self._backoff(row.attempts))
                await self.store.page_retry(row.id, time.time() + delay, result.reason)
                outcome = "retry"
            else:
                reason = result.reason if isinstance(result, RetryLater | Rejected) else "?"
                await self.store.page_failed(row.id, reason)
                outcome = "rejected" if isinstance(result, Rejected) else "failed"
                log.error("page_failed", pager=row.pager, idem=row.idem, reason=reason)
            self.metrics.pages.labels(row.pager, row.action, outcome).inc()
        return len(rows)

    async def run_forever(
        self, interval: float = 0.5, beat: Callable[[], None] | None = None
    ) -> None:
        swept = 0.0
        while True:
            if beat is not None:
                beat()
            try:
                if time.monotonic() - swept >= self.fold_sweep_interval:
                    swept = time.monotonic()
                    await self.close_folds()
                n = await self.deliver_due()
            except StateUnavailable as exc:
                log.warning("outbox_state_unavailable", error=str(exc))
                n = 0
            if n == 0:
                self.wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), interval)

    def _summary(self, stats: folds.SummaryStats) -> PageContent:
        return folded.content(
            stats,
            budget=self.max_pages_per_hour,
            window=folds.WINDOW,
            actions_command=self.actions_command,
        )

    async def close_folds(self) -> int:
        """Resolve each summary whose hour has passed and whose folded incidents all
        resolved. Returns how many resolves were queued."""
        n = 0
        for s in await folds.closable(self.store, now=time.time()):
            stats = await folds.summary_stats(self.store, s["pager"], s["dedup_key"])
            event = PageEvent(action="resolve", content=self._summary(stats)).to_json()
            if await folds.resolve_summary(
                self.store, s["pager"], s["dedup_key"], now=time.time(), event=event
            ):
                n += 1
        if n:
            self.wake.set()
        return n

    async def send_direct(self, content: PageContent) -> None:
        """Bypass the outbox (used only when the state store itself is down)."""
        event = PageEvent(action="trigger", content=content)
        for name, pager in self.pagers.items():
            if not pager.accepts(content.severity):
                continue
            result = await pager.send(event)
            outcome = "delivered" if isinstance(result, Delivered) else "failed"
            self.metrics.pages.labels(name, "trigger", outcome).inc()
