"""Flags (the kill switch) and the run leases a live owner renews."""

from __future__ import annotations

import time

from remediator.state.backend import Row
from remediator.state.store_base import StoreBase

# The advisory lock key the mutation gate holds shared and the kill switch exclusive.
GATE_LOCK = 7240513


class FlagStore(StoreBase):
    async def get_flag(self, name: str) -> Row | None:
        rows = await self._read("SELECT * FROM flags WHERE name = ?", name)
        return rows[0] if rows else None

    async def set_flag(self, name: str, value: str, who: str) -> None:
        async with self.backend.transaction(durable=True) as c:  # the kill switch
            if self.backend.dialect == "postgres":
                # Exclusive against the mutation gate's shared lock (state/gate.py):
                # the switch flips only once no admission is deciding, so after this
                # returns no step can be admitted on the old value.
                await c.execute("SELECT pg_advisory_xact_lock(?)", GATE_LOCK)
            await c.execute(
                "INSERT INTO flags (name, value, updated_at, updated_by) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (name) DO UPDATE SET value = excluded.value,"
                " updated_at = excluded.updated_at, updated_by = excluded.updated_by",
                name,
                value,
                time.time(),
                who,
            )

    async def renew_leases(self, owner: str, lease: float) -> int:
        now = time.time()
        return await self._execute(
            "UPDATE runs SET lease_until = ? WHERE owner = ? AND state IN ('running', 'undoing')",
            now + lease,
            owner,
            durable=False,  # a lost renewal only lets another replica resume sooner
        )
