"""Group commit for the webhook journal.

Each webhook request hands its occurrences to the writer and waits. The writer
takes everything queued, writes it in one transaction, and only then resolves
every waiter: one fsync for many requests, and still no 202 before the write is
durable. While a commit is in flight new requests queue up, so the batch size
grows with load by itself; there is no timer to tune.

It must never resolve a waiter before the commit returns, and never swallow an
error: a failed commit fails every request in that batch (they answer 503).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from remediator.cancelling import finish_or_cancel
from remediator.errors import StateUnavailable
from remediator.metrics import Metrics
from remediator.models import Occurrence
from remediator.state.store import StateStore

# How long close() lets the writers finish what is queued.
CLOSE_WITHIN = 10.0

_Waiter = tuple[Sequence[Occurrence], "asyncio.Future[list[bool]]"]


class JournalWriter:
    def __init__(
        self,
        store: StateStore,
        metrics: Metrics,
        *,
        flushers: int = 1,
        max_batch: int = 1000,
        on_commit: Callable[[frozenset[str]], None] | None = None,
    ) -> None:
        self._store = store
        self._metrics = metrics
        self._queue: asyncio.Queue[_Waiter | None] = asyncio.Queue()
        self._flushers = flushers
        self._max_batch = max_batch
        self._on_commit = on_commit
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._run(), name=f"journal-{i}") for i in range(self._flushers)
        ]

    async def append(self, occs: Sequence[Occurrence]) -> list[bool]:
        """Durably journal; True for each new occurrence, False for a repeat."""
        if self._closed:
            raise StateUnavailable("journal is shutting down")
        if not occs:
            return []
        fut: asyncio.Future[list[bool]] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((occs, fut))
        return await fut

    async def _run(self) -> None:
        stop = False
        while not stop:
            first = await self._queue.get()
            if first is None:
                return
            batch = [first]
            size = len(first[0])
            while size < self._max_batch and not self._queue.empty():
                item = self._queue.get_nowait()
                if item is None:  # shutdown sentinel: write this batch, then stop
                    stop = True
                    break
                batch.append(item)
                size += len(item[0])
            await self._flush(batch)

    async def _flush(self, batch: list[_Waiter]) -> None:
        flat = [o for occs, _ in batch for o in occs]
        try:
            results = await self._store.append_occurrences(flat)
        except StateUnavailable as exc:
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
            return
        except Exception as exc:
            err = StateUnavailable(f"journal write failed: {type(exc).__name__}: {exc}")
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(err)
            return
        self._metrics.journal_batch_size.observe(len(flat))
        i = 0
        for occs, fut in batch:
            part, i = results[i : i + len(occs)], i + len(occs)
            if not fut.done():
                fut.set_result(part)
        # Wake the workers only for work they can claim: a repeat adds no row, and an
        # occurrence no rule wants is journaled already done. The alert names let a
        # dispatch lane that takes only some alerts (P0) stay asleep for the others.
        if self._on_commit is not None:
            names = frozenset(
                o.alertname for new, o in zip(results, flat, strict=True) if new and o.pending
            )
            if names:
                self._on_commit(names)

    async def close(self) -> None:
        """Stop taking new work, write everything already queued (for at most
        ``CLOSE_WITHIN`` s: a request still waiting answers 503 and is retried), then stop."""
        self._closed = True
        for _ in self._tasks:
            self._queue.put_nowait(None)
        await finish_or_cancel(self._tasks, grace=CLOSE_WITHIN, within=CLOSE_WITHIN)
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if item is not None and not item[1].done():
                item[1].set_exception(StateUnavailable("journal is shutting down"))
