"""Approvals: requested for a step, decided once by a human, claimed to execute."""

from __future__ import annotations

import time

from remediator.state.records import Approval
from remediator.state.store_base import StoreBase


class ApprovalStore(StoreBase):
    async def create_approval(self, run_id: str, step: str, expires_at: float) -> int:
        async with self.backend.transaction(durable=False) as c:
            await c.execute(
                "INSERT INTO approvals (run_id, step, state, requested_at, expires_at)"
                " VALUES (?, ?, 'pending', ?, ?) ON CONFLICT (run_id, step) DO NOTHING",
                run_id,
                step,
                time.time(),
                expires_at,
            )
            rows = await c.fetch(
                "SELECT id FROM approvals WHERE run_id = ? AND step = ?", run_id, step
            )
        return int(rows[0]["id"])

    async def get_approval(self, approval_id: int) -> Approval | None:
        rows = await self._read("SELECT * FROM approvals WHERE id = ?", approval_id)
        return Approval.from_row(rows[0]) if rows else None

    async def approvals_for_run(self, run_id: str) -> list[Approval]:
        rows = await self._read("SELECT * FROM approvals WHERE run_id = ? ORDER BY id", run_id)
        return [Approval.from_row(r) for r in rows]

    async def decide_approval(self, approval_id: int, decision: str, who: str) -> bool:
        """pending -> approved|rejected, only before it expires. One decision wins."""
        now = time.time()
        n = await self._execute(
            "UPDATE approvals SET state = ?, decided_by = ?, decided_at = ?"
            " WHERE id = ? AND state = 'pending' AND expires_at > ?",
            decision,
            who,
            now,
            approval_id,
            now,
            durable=True,  # a human decision
        )
        return n == 1

    async def transition_approval(self, approval_id: int, from_state: str, to_state: str) -> bool:
        n = await self._execute(
            "UPDATE approvals SET state = ? WHERE id = ? AND state = ?",
            to_state,
            approval_id,
            from_state,
        )
        return n == 1

    async def claim_approved(self, limit: int = 10) -> list[Approval]:
        rows = await self._claim(
            "approvals",
            take="state = 'executing'",
            take_args=(),
            due="state = 'approved'",
            due_args=(),
            order="id",
            limit=limit,
        )
        return [Approval.from_row(r) for r in rows]

    async def expire_approvals(self) -> list[Approval]:
        rows = await self._fetch(
            "UPDATE approvals SET state = 'expired' WHERE id IN (SELECT id FROM approvals"
            f" WHERE state = 'pending' AND expires_at <= ? ORDER BY id{self._skip})"
            " RETURNING *",
            time.time(),
        )
        return [Approval.from_row(r) for r in rows]

    async def count_pending_approvals(self) -> int:
        rows = await self._read("SELECT COUNT(*) AS n FROM approvals WHERE state = 'pending'")
        return int(rows[0]["n"])
