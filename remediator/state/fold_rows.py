"""What page folding shares (``folds.py``, ``fold_summaries.py``): the outbox row
layout, the per-pager lock, and its transactions."""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, Protocol

from remediator.state.connection import Backend, Conn, Row


class FoldStore(Protocol):
    """What folding needs of the store: its backend."""

    @property
    def backend(self) -> Backend: ...


WINDOW = 3600.0  # the rolling hour of the budget, and a summary's window
SUMMARY_SENDS = ("summary", "summary_update")
FOLDED = ("fold", "folded")
SUMMARY_ROWS = (*SUMMARY_SENDS, "summary_resolve")
# pg_advisory_xact_lock(int4, int4) keys live apart from the one-bigint keys that
# migrations use; the second half is the pager.
_LOCK_CLASS = 7240513
# Bound parameters per statement stay far below SQLite's and asyncpg's limits.
_CHUNK = 500
COLUMNS = (
    "idem, pager, action, dedup_key, event, state, next_attempt_at, created_at,"
    " incident, folded_into, topic"
)


def summary_key(pager: str, start: float) -> str:
    return f"remediator/folded/{pager}/{int(start)}"


def _lock_key(pager: str) -> int:
    n = zlib.crc32(pager.encode())
    return n - 2**32 if n >= 2**31 else n


async def fetch_in(conn: Conn, sql: str, head: Sequence[Any], values: Sequence[Any]) -> list[Row]:
    """``sql`` has one ``{}`` for an IN list; ``values`` are sent in chunks."""
    rows: list[Row] = []
    for i in range(0, len(values), _CHUNK):
        part = values[i : i + _CHUNK]
        rows += await conn.fetch(sql.format(", ".join("?" * len(part))), *head, *part)
    return rows


@asynccontextmanager
async def transaction(store: FoldStore) -> AsyncIterator[Conn]:
    # On Postgres the lock is held until the commit ends, and a durable commit would
    # hold it through the WAL flush: every replica's pages would queue behind each
    # fsync in turn. So the commit does not wait, and ``wait_durable`` waits for the
    # flush once the lock is free. SQLite's durable commit already waits outside
    # its lock, and its transactions are serialised anyway.
    async with store.backend.transaction(durable=store.backend.dialect != "postgres") as c:
        yield c


async def wait_durable(store: FoldStore, page_id: int | None) -> None:
    """Postgres: return once the commit that queued ``page_id`` is on disk."""
    if store.backend.dialect == "postgres" and page_id is not None:
        # A durable commit waits for the WAL flush up to its own commit record, so
        # past every commit before it; concurrent waits share one flush. It must
        # write WAL to wait at all (a bare SELECT, even one taking an xid, does not):
        # rewriting a column of our own row, unindexed, is the smallest such write.
        async with store.backend.statement(durable=True) as conn:
            await conn.execute("UPDATE outbox SET attempts = attempts WHERE id = ?", page_id)


async def lock_pagers(store: FoldStore, conn: Conn, pagers: Sequence[str]) -> None:
    if store.backend.dialect != "postgres":
        return  # SQLite: the transaction already holds the only write lock
    # One statement; in key order everywhere, so two replicas never deadlock. (A
    # volatile function in the target list runs after the ORDER BY.)
    await conn.execute(
        "SELECT pg_advisory_xact_lock(?, k) FROM unnest(?::int[]) AS k ORDER BY k",
        _LOCK_CLASS,
        sorted({_lock_key(p) for p in pagers}),
    )


async def insert_rows(conn: Conn, rows: list[tuple[Any, ...]]) -> dict[str, int]:
    """Insert outbox rows; returns the new ones' ids by idem (repeats are not new)."""
    inserted: dict[str, int] = {}
    per = _CHUNK // 5
    for i in range(0, len(rows), per):
        part = rows[i : i + per]
        values = ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"] * len(part))
        new = await conn.fetch(
            f"INSERT INTO outbox ({COLUMNS}) VALUES {values}"
            " ON CONFLICT (idem) DO NOTHING RETURNING id, idem",
            *[v for r in part for v in r],
        )
        inserted.update((r["idem"], r["id"]) for r in new)
    return inserted


def in_flight(r: Row, now: float) -> bool:
    return r["state"] == "pending" and r["claim_until"] is not None and r["claim_until"] >= now
