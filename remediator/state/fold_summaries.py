"""Summary incidents: the counts a summary shows, and when and how it resolves."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from remediator.state.connection import Row
from remediator.state.fold_rows import (
    WINDOW,
    FoldStore,
    fetch_in,
    in_flight,
    insert_rows,
    lock_pagers,
    transaction,
    wait_durable,
)
from remediator.state.store_base import dumps, loads


@dataclass(frozen=True)
class TopicCount:
    topic: str
    count: int  # incidents folded under this topic
    resolved: int  # of those, resolved since
    own: int  # of those, paged on their own later (a P0 that then acted)
    sample: dict[str, Any] | None  # one folded page's event, for its links


@dataclass(frozen=True)
class SummaryStats:
    pager: str
    key: str
    window_start: float
    topics: list[TopicCount]
    resolved: bool  # the summary itself


# A fold is settled once its key resolved or the pager got it as its own incident.
_SETTLED = (
    "EXISTS (SELECT 1 FROM outbox d WHERE d.pager = f.pager AND d.dedup_key = f.dedup_key"
    " AND d.id > f.id AND {})"
)
_RESOLVED = _SETTLED.format("d.action = 'resolve'")
_OWN = _SETTLED.format("d.incident = 'new'")


async def summary_stats(store: FoldStore, pager: str, key: str) -> SummaryStats:
    """The counts a summary shows, as they stand."""
    async with store.backend.read() as conn:
        head = await conn.fetch(
            "SELECT incident, created_at FROM outbox WHERE pager = ? AND dedup_key = ?"
            " AND incident IN ('summary', 'summary_resolve')",
            pager,
            key,
        )
        counts = await conn.fetch(
            "SELECT f.topic AS topic, COUNT(*) AS n,"
            f" SUM(CASE WHEN {_RESOLVED} THEN 1 ELSE 0 END) AS resolved,"
            f" SUM(CASE WHEN {_OWN} THEN 1 ELSE 0 END) AS own,"
            " MIN(f.id) AS sample"
            " FROM outbox f WHERE f.folded_into = ? AND f.incident = 'fold'"
            " GROUP BY f.topic ORDER BY n DESC, topic",
            key,
        )
        samples = await fetch_in(
            conn, "SELECT id, event FROM outbox WHERE id IN ({})", [], [r["sample"] for r in counts]
        )
    events = {r["id"]: loads(r["event"]) for r in samples}
    start = min((r["created_at"] for r in head if r["incident"] == "summary"), default=0.0)
    return SummaryStats(
        pager=pager,
        key=key,
        window_start=float(start),
        topics=[
            TopicCount(
                topic=r["topic"],
                count=int(r["n"]),
                resolved=int(r["resolved"] or 0),
                own=int(r["own"] or 0),
                sample=events.get(r["sample"]),
            )
            for r in counts
        ],
        resolved=any(r["incident"] == "summary_resolve" for r in head),
    )


async def closable(store: FoldStore, *, now: float) -> list[Row]:
    """Summaries to resolve: the window has ended (nothing more can fold in) and every
    incident folded into them has settled. One that holds a page that never resolves
    by itself (a guard's or a circuit's) stays open for a human, as that page would."""
    settled = _SETTLED.format("(d.action = 'resolve' OR d.incident = 'new')")
    return await _read(
        store,
        "SELECT s.pager AS pager, s.dedup_key AS dedup_key FROM outbox s"
        " WHERE s.incident = 'summary' AND s.created_at <= ?"
        " AND NOT EXISTS (SELECT 1 FROM outbox r WHERE r.pager = s.pager"
        " AND r.dedup_key = s.dedup_key AND r.incident = 'summary_resolve')"
        " AND NOT EXISTS (SELECT 1 FROM outbox f WHERE f.folded_into = s.dedup_key"
        f" AND f.incident = 'fold' AND NOT {settled})",
        now - WINDOW,
    )


async def resolve_summary(
    store: FoldStore, pager: str, key: str, *, now: float, event: dict[str, Any]
) -> bool:
    """Queue the summary's resolve, dropping re-sends not yet taken (a trigger after
    the resolve would open a new incident). Not while a re-send is in flight: the
    next sweep does it. True if queued."""
    async with transaction(store) as conn:
        await lock_pagers(store, conn, [pager])
        rows = await conn.fetch(
            "SELECT incident, state, claim_until FROM outbox WHERE pager = ? AND dedup_key = ?",
            pager,
            key,
        )
        if any(r["incident"] == "summary_resolve" for r in rows):
            return False
        if any(in_flight(r, now) for r in rows):
            return False
        await conn.execute(
            "UPDATE outbox SET state = 'skipped', last_error = 'the summary resolved',"
            " claim_until = NULL WHERE pager = ? AND dedup_key = ? AND state = 'pending'",
            pager,
            key,
        )
        opening = (f"{key}#resolve", pager, "resolve", key, dumps(event), "pending", now, now)
        inserted = await insert_rows(conn, [(*opening, "summary_resolve", None, None)])
    await wait_durable(store, max(inserted.values(), default=None))
    return bool(inserted)


async def skip(store: FoldStore, page_id: int, reason: str) -> None:
    """A queued page that must not be sent after all (a summary re-send after its
    summary resolved)."""
    async with store.backend.statement(durable=False) as conn:
        await conn.execute(
            "UPDATE outbox SET state = 'skipped', last_error = ?, claim_until = NULL WHERE id = ?",
            reason,
            page_id,
        )


async def _read(store: FoldStore, sql: str, *args: Any) -> list[Row]:
    async with store.backend.read() as conn:
        rows: list[Row] = await conn.fetch(sql, *args)
        return rows
