"""What Slack approvals keep in the state store.

- ``slack_messages``: the message (channel id and ``ts``) each page was posted as with
  ``chat.postMessage``, so every later page of the same incident updates it in place.
- ``approvals.slack_nonce``: one random single-use nonce per approval, minted the first
  time a page shows its buttons and carried in both buttons' ``value``.

A click is taken by one conditional UPDATE that consumes the nonce (it must match,
be unused, and the approval still pending and unexpired): of any number of clicks, on
any number of replicas, one wins, and a replayed click finds the nonce used. The
nonce is stored as it is (not hashed): it is not a credential (Slack's signature is),
it only makes a click single-use, and a page sent again must show the same buttons.

This module records and explains; it never decides an approval (the engine does).
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from remediator.state.store import StateStore

NONCE_BYTES = 16

# Why a click changed nothing (see ``refusal``).
Refusal = Literal["not_found", "mismatch", "replayed", "decided", "expired"]


@dataclass(frozen=True)
class MessageRef:
    channel: str  # the channel id Slack answered with (chat.update needs the id)
    ts: str


@dataclass(frozen=True)
class ApprovalState:
    """An approval as a click sees it."""

    id: int
    run_id: str
    step: str
    state: str
    decided_by: str | None
    decided_at: float | None
    expires_at: float
    nonce: str | None
    nonce_used: bool


async def message_for(store: StateStore, dedup_key: str) -> MessageRef | None:
    async with store.backend.read() as c:
        rows = await c.fetch(
            "SELECT channel, ts FROM slack_messages WHERE dedup_key = ?", dedup_key
        )
    return MessageRef(str(rows[0]["channel"]), str(rows[0]["ts"])) if rows else None


async def save_message(
    store: StateStore, dedup_key: str, run_id: str | None, ref: MessageRef, *, replace: bool
) -> None:
    """Remember where the page was posted. ``replace``: a new post replaces a message
    that is gone; otherwise the first one recorded stays (a click adopting a message)."""
    conflict = (
        "DO UPDATE SET channel = excluded.channel, ts = excluded.ts, posted_at = excluded.posted_at"
        if replace
        else "DO NOTHING"
    )
    async with store.backend.statement(durable=False) as c:
        await c.execute(
            "INSERT INTO slack_messages (dedup_key, run_id, channel, ts, posted_at)"
            f" VALUES (?, ?, ?, ?, ?) ON CONFLICT (dedup_key) {conflict}",
            dedup_key,
            run_id,
            ref.channel,
            ref.ts,
            time.time(),
        )


async def nonces_for(store: StateStore, approval_ids: Iterable[int]) -> dict[int, str]:
    """The nonce of each approval, minting the ones not minted yet (once: a
    conditional UPDATE, so two replicas rendering at once agree on one)."""
    ids = sorted(set(approval_ids))
    result: dict[int, str] = {}
    for approval_id in ids:
        async with store.backend.statement(durable=False) as c:
            await c.execute(
                "UPDATE approvals SET slack_nonce = ? WHERE id = ? AND slack_nonce IS NULL",
                secrets.token_hex(NONCE_BYTES),
                approval_id,
            )
        state = await approval_state(store, approval_id)
        if state is not None and state.nonce is not None:
            result[approval_id] = state.nonce
    return result


async def approval_state(store: StateStore, approval_id: int) -> ApprovalState | None:
    async with store.backend.read() as c:
        rows = await c.fetch(
            "SELECT id, run_id, step, state, decided_by, decided_at, expires_at,"
            " slack_nonce, slack_nonce_used_at FROM approvals WHERE id = ?",
            approval_id,
        )
    if not rows:
        return None
    r = rows[0]
    return ApprovalState(
        id=int(r["id"]),
        run_id=str(r["run_id"]),
        step=str(r["step"]),
        state=str(r["state"]),
        decided_by=r["decided_by"],
        decided_at=float(r["decided_at"]) if r["decided_at"] is not None else None,
        expires_at=float(r["expires_at"]),
        nonce=r["slack_nonce"],
        nonce_used=r["slack_nonce_used_at"] is not None,
    )


async def consume_nonce(store: StateStore, approval_id: int, nonce: str, now: float) -> bool:
    """Take the click: True for exactly one click per approval, ever."""
    async with store.backend.statement(durable=False) as c:
        n: int = await c.execute(
            "UPDATE approvals SET slack_nonce_used_at = ?"
            " WHERE id = ? AND slack_nonce = ? AND slack_nonce_used_at IS NULL"
            " AND state = 'pending' AND expires_at > ?",
            now,
            approval_id,
            nonce,
            now,
        )
    return n == 1


def refusal(state: ApprovalState | None, nonce: str, now: float) -> Refusal:
    """Why ``consume_nonce`` refused a click (read after it did)."""
    if state is None:
        return "not_found"
    if state.nonce is None or not hmac.compare_digest(state.nonce.encode(), nonce.encode()):
        return "mismatch"
    if state.nonce_used:
        return "replayed"
    if state.state != "pending":
        return "decided"
    return "expired"
