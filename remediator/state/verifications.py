"""The state side of verification: a durable schedule of Prometheus polls.

``runs.verify_at`` is when a run's mitigation is next checked (NULL: nothing to
check). Every replica's maintenance pass looks for due rows; a poll is claimed by
moving ``verify_at`` forward from the value it read (compare-and-set), so exactly
one replica polls at a time, and a replica that dies mid-poll only delays the next
one by the claim's length. The poll's record (the ``verify`` step row) is written
in the same transaction as the next ``verify_at``, and only while the claim holds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from remediator.state.backend import Row
from remediator.state.steps import step_upsert
from remediator.state.store import StateStore

VERIFY_FAILED = "verify_failed"  # runs.undo_reason of an undo a failed verification asked for


@dataclass(frozen=True)
class DuePoll:
    run_id: str
    verify_at: float  # as read: the claim moves it on from exactly this value


async def due_polls(store: StateStore, now: float, limit: int) -> list[DuePoll]:
    async with store.backend.read() as c:
        rows = await c.fetch(
            "SELECT id, verify_at FROM runs WHERE verify_at IS NOT NULL AND verify_at <= ?"
            " ORDER BY verify_at LIMIT ?",
            now,
            limit,
        )
    return [DuePoll(r["id"], float(r["verify_at"])) for r in rows]


async def claim_poll(store: StateStore, poll: DuePoll, until: float) -> bool:
    """Take this poll (no other replica can until ``until``); False if taken."""
    async with store.backend.statement(durable=False) as c:
        n: int = await c.execute(
            "UPDATE runs SET verify_at = ? WHERE id = ? AND verify_at = ?",
            until,
            poll.run_id,
            poll.verify_at,
        )
    return n == 1


async def record_poll(store: StateStore, step: Row, claimed: float, next_at: float | None) -> bool:
    """Write the poll's step row and the next poll time, if our claim still holds."""
    async with store.backend.transaction(durable=True) as c:
        n = await c.execute(
            "UPDATE runs SET verify_at = ? WHERE id = ? AND verify_at = ?",
            next_at,
            step["run_id"],
            claimed,
        )
        if n != 1:
            return False
        sql, values = step_upsert(step)
        await c.execute(sql, *values)
    return True


async def request_undo(store: StateStore, run_id: str) -> bool:
    """Ask for the undo of a run whose mitigation did not hold (one replica wins).

    Only a run waiting for its resolve: one already undoing or undone (resolved,
    max_duration) has nothing left for this undo to put back."""
    async with store.backend.statement(durable=True) as c:
        n: int = await c.execute(
            "UPDATE runs SET undo_state = 'requested', undo_reason = ?, updated_at = ?"
            " WHERE id = ? AND state = 'waiting' AND undo_state IS NULL",
            VERIFY_FAILED,
            time.time(),
            run_id,
        )
    return n == 1
