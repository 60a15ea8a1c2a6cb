"""What the guards read and write: circuits, per-target locks, and the runs the
cooldown and the hourly budget count.

The policy (when a circuit opens, whether a guard blocks) is the engine's
(engine/guards.py); this module only stores, each write atomic.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from remediator.state.backend import Row
from remediator.state.records import Run
from remediator.state.store_base import StoreBase, decode_run

RELEASE_LOCK = "DELETE FROM locks WHERE target = ? AND run_id = ?"
# A success closes the circuit; no write at all when it is closed with no failures.
CLOSE_CIRCUIT = (
    "UPDATE circuits SET state = 'closed', failures = 0, opened_at = NULL,"
    " updated_at = ? WHERE runbook = ? AND (state <> 'closed' OR failures <> 0)"
)


@dataclass(frozen=True)
class Circuit:
    """A runbook's circuit as stored: ``state`` is closed, open or half-open."""

    state: str
    failures: int
    opened_at: float | None


# A runbook with no circuit row yet.
CLOSED = Circuit("closed", 0, None)


class GuardStore(StoreBase):
    async def get_circuit(self, runbook: str) -> Row | None:
        rows = await self._read("SELECT * FROM circuits WHERE runbook = ?", runbook)
        return rows[0] if rows else None

    async def all_circuits(self) -> list[Row]:
        return await self._read("SELECT * FROM circuits ORDER BY runbook")

    async def update_circuit(
        self, runbook: str, decide: Callable[[Circuit, float], Circuit]
    ) -> tuple[Circuit, Circuit]:
        """Read the circuit, row-locked, and write ``decide(previous, now)`` in the same
        transaction; returns (previous, new). The caller's ``decide`` is the policy."""
        now = time.time()
        async with self.backend.transaction(durable=False) as c:
            rows = await c.fetch(
                f"SELECT * FROM circuits WHERE runbook = ?{self._skip.replace(' SKIP LOCKED', '')}",
                runbook,
            )
            prev = (
                Circuit(rows[0]["state"], int(rows[0]["failures"]), rows[0]["opened_at"])
                if rows
                else CLOSED
            )
            new = decide(prev, now)
            await c.execute(
                "INSERT INTO circuits (runbook, state, failures, opened_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (runbook) DO UPDATE SET"
                " state = excluded.state, failures = excluded.failures,"
                " opened_at = excluded.opened_at, updated_at = excluded.updated_at",
                runbook,
                new.state,
                new.failures,
                new.opened_at,
                now,
            )
        return prev, new

    async def half_open_circuit(self, runbook: str, reset_after: float) -> bool:
        """open -> half-open once the reset time has passed; one caller wins the trial."""
        now = time.time()
        n = await self._execute(
            "UPDATE circuits SET state = 'half-open', updated_at = ?"
            " WHERE runbook = ? AND state = 'open' AND opened_at <= ?",
            now,
            runbook,
            now - reset_after,
        )
        return n == 1

    # ------------------------------------------------------------------- locks

    async def acquire_lock(self, target: str, run_id: str, owner: str, ttl: float) -> bool:
        now = time.time()
        n = await self._execute(
            "INSERT INTO locks (target, run_id, owner, expires_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (target) DO UPDATE SET run_id = excluded.run_id,"
            " owner = excluded.owner, expires_at = excluded.expires_at"
            " WHERE locks.expires_at < ? OR locks.run_id = excluded.run_id",
            target,
            run_id,
            owner,
            now + ttl,
            now,
        )
        return n == 1

    async def release_lock(self, target: str, run_id: str) -> None:
        await self._execute(RELEASE_LOCK, target, run_id)

    async def count_runs_since(
        self, rule: str, since: float, before: tuple[float, str] | None = None
    ) -> int:
        """Runs of ``rule`` created since ``since`` and not blocked by a guard.

        With ``before`` (a run's created_at and id) only the runs created before that
        run count, so guards decide in creation order: of runs created together, the
        first ones pass, instead of each counting all the others and every one of
        them being blocked.
        """
        sql = "SELECT COUNT(*) AS n FROM runs WHERE rule = ? AND created_at >= ?"
        args: list[Any] = [rule, since]
        if before is not None:
            sql += " AND (created_at < ? OR (created_at = ? AND id < ?))"
            args += [before[0], before[0], before[1]]
        rows = await self._read(sql + " AND blocked_by IS NULL", *args)
        return int(rows[0]["n"])

    async def last_run_for_target(self, rule: str, target: str, exclude: str) -> Run | None:
        """The latest run of ``rule`` on ``target`` that passed its guards (it has steps).

        A run still deciding has no step yet and is not counted.
        """
        rows = await self._read(
            "SELECT * FROM runs WHERE rule = ? AND target = ? AND id <> ?"
            " AND blocked_by IS NULL"
            " AND EXISTS (SELECT 1 FROM steps WHERE steps.run_id = runs.id)"
            " ORDER BY created_at DESC LIMIT 1",
            rule,
            target,
            exclude,
        )
        return decode_run(rows[0]) if rows else None
