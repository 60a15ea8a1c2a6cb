"""The page outbox rows: queued durably, claimed by a delivery worker, settled."""

from __future__ import annotations

import time
from typing import Any

from remediator.state.backend import Row
from remediator.state.records import QueuedPage
from remediator.state.store_base import StoreBase, dumps, loads


class PageStore(StoreBase):
    async def enqueue_pages(self, pages: list[tuple[str, str, str, str, dict[str, Any]]]) -> int:
        """Queue (idem, pager, action, dedup_key, event) rows in ONE durable
        statement: a queued page survives a crash. Returns how many were new."""
        if not pages:
            return 0
        now = time.time()
        values = ", ".join(["(?, ?, ?, ?, ?, 'pending', ?, ?)"] * len(pages))
        args = [
            v
            for idem, pager, action, dedup_key, event in pages
            for v in (idem, pager, action, dedup_key, dumps(event), now, now)
        ]
        return await self._execute(
            "INSERT INTO outbox (idem, pager, action, dedup_key, event, state,"
            f" next_attempt_at, created_at) VALUES {values} ON CONFLICT (idem) DO NOTHING",
            *args,
            durable=True,
        )

    async def claim_pages(self, owner: str, limit: int, lease: float) -> list[QueuedPage]:
        """Claim due pages. The owner's own live claims are claimable again: its one
        outbox loop has nothing in flight when it claims, so such a claim is one whose
        release was lost (the store failed between the send and its record) and must
        not hold the page back for the rest of the lease."""
        now = time.time()
        rows = await self._claim(
            "outbox",
            take="claimed_by = ?, claim_until = ?, attempts = attempts + 1",
            take_args=(owner, now + lease),
            due="state = 'pending' AND next_attempt_at <= ?"
            " AND (claim_until IS NULL OR claim_until < ? OR claimed_by = ?)",
            due_args=(now, now, owner),
            order="id",
            limit=limit,
        )
        return sorted((_page(r) for r in rows), key=lambda p: p.id)

    async def page_sent(self, page_id: int) -> None:
        await self._execute(
            "UPDATE outbox SET state = 'sent', sent_at = ?, claim_until = NULL WHERE id = ?",
            time.time(),
            page_id,
        )

    async def page_retry(self, page_id: int, at: float, error: str) -> None:
        await self._execute(
            "UPDATE outbox SET next_attempt_at = ?, last_error = ?, claim_until = NULL"
            " WHERE id = ?",
            at,
            error,
            page_id,
        )

    async def page_failed(self, page_id: int, error: str) -> None:
        await self._execute(
            "UPDATE outbox SET state = 'failed', last_error = ?, claim_until = NULL WHERE id = ?",
            error,
            page_id,
        )

    async def list_pages(self, limit: int = 100) -> list[QueuedPage]:
        rows = await self._read("SELECT * FROM outbox ORDER BY id DESC LIMIT ?", limit)
        return [_page(r) for r in rows]


def _page(row: Row) -> QueuedPage:
    try:
        event = loads(row["event"])
    except ValueError:  # a corrupt row is failed by the outbox, not a crash here
        event = None
    return QueuedPage.from_row(row, event)
