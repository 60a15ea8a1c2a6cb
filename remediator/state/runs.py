"""Runs: created once per (rule, alert), claimed, handed over, resumed, escalated."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from remediator.state.backend import Row
from remediator.state.guards import CLOSE_CIRCUIT, RELEASE_LOCK
from remediator.state.records import Run
from remediator.state.store_base import StoreBase, decode_run, dumps

_RUN_COLUMNS = (
    "id",
    "rule",
    "runbook",
    "fingerprint",
    "starts_at",
    "alertname",
    "target",
    "mode",
    "state",
    "alert",
    "params",
    "severity",
    "received_at",
    "created_at",
    "updated_at",
    "owner",
    "lease_until",
)


class RunStore(StoreBase):
    async def create_run(self, run: Row) -> bool:
        """Insert a run unless (rule, fingerprint, starts_at) already has one."""
        values = [run[c] for c in _RUN_COLUMNS]
        values[_RUN_COLUMNS.index("alert")] = dumps(run["alert"])
        values[_RUN_COLUMNS.index("params")] = dumps(run["params"])
        n = await self._execute(
            f"INSERT INTO runs ({', '.join(_RUN_COLUMNS)}) VALUES"
            f" ({', '.join('?' for _ in _RUN_COLUMNS)})"
            " ON CONFLICT (rule, fingerprint, starts_at) DO NOTHING",
            *values,
        )
        return n == 1

    async def get_run(self, run_id: str) -> Run | None:
        rows = await self._read("SELECT * FROM runs WHERE id = ?", run_id)
        return decode_run(rows[0]) if rows else None

    async def runs_for_alert(self, fingerprint: str, starts_at: str) -> list[Run]:
        rows = await self._read(
            "SELECT * FROM runs WHERE fingerprint = ? AND starts_at = ? ORDER BY created_at",
            fingerprint,
            starts_at,
        )
        return [decode_run(r) for r in rows]

    async def list_runs(self, limit: int = 50) -> list[Run]:
        rows = await self._read("SELECT * FROM runs ORDER BY created_at DESC LIMIT ?", limit)
        return [decode_run(r) for r in rows]

    async def update_run(
        self,
        run_id: str,
        *,
        expect_owner: str | None = None,
        expect_state: str | None = None,
        **fields: Any,
    ) -> bool:
        fields["updated_at"] = time.time()
        sets = ", ".join(f"{k} = ?" for k in fields)
        sql = f"UPDATE runs SET {sets} WHERE id = ?"
        args: list[Any] = [*fields.values(), run_id]
        if expect_owner is not None:
            sql += " AND owner = ?"
            args.append(expect_owner)
        if expect_state is not None:
            sql += " AND state = ?"
            args.append(expect_state)
        return await self._execute(sql, *args) == 1

    async def run_start_facts(
        self, fingerprint: str, starts_at: str, runbook: str, flag: str
    ) -> Row:
        """What a new run must know before its guards, in one read: has its alert
        already resolved, is the kill switch on, and its runbook's circuit state."""
        rows = await self._read(
            "SELECT EXISTS (SELECT 1 FROM occurrences WHERE fingerprint = ?"
            " AND starts_at = ? AND status = 'resolved') AS resolved,"
            " (SELECT value FROM flags WHERE name = ?) AS flag,"
            " (SELECT state FROM circuits WHERE runbook = ?) AS circuit",
            fingerprint,
            starts_at,
            flag,
            runbook,
        )
        row = rows[0]
        row["resolved"] = bool(row["resolved"])
        return row

    async def hand_over_run(
        self,
        run_id: str,
        owner: str,
        outcome: str,
        *,
        release_lock: str | None = None,
        close_circuit: str | None = None,
        **fields: Any,
    ) -> Run | None:
        """End a run's fire phase: waiting for the resolve, or undoing at once if the
        alert resolved meanwhile. None if we no longer own it.

        In the same commit, and whether or not we still own the run: release its
        lock on ``release_lock`` (a target) and, after a success, close the circuit
        of runbook ``close_circuit``. On Postgres that is ONE statement (the other
        writes as data-modifying CTEs), so one round trip instead of three."""
        now = time.time()
        fields["updated_at"] = now
        sets = ", ".join(f"{k} = ?" for k in fields)
        hand_over = (
            "UPDATE runs SET state = CASE WHEN undo_state = 'requested' THEN 'undoing'"
            f" ELSE 'waiting' END, outcome = ?, {sets}"
            " WHERE id = ? AND owner = ? AND state = 'running' RETURNING *"
        )
        hand_over_args = (outcome, *fields.values(), run_id, owner)
        extra: list[tuple[str, tuple[Any, ...]]] = []
        if release_lock is not None:
            extra.append((RELEASE_LOCK, (release_lock, run_id)))
        if close_circuit is not None:
            extra.append((CLOSE_CIRCUIT, (now, close_circuit)))
        if self.backend.dialect == "postgres":
            ctes = ", ".join(f"w{i} AS ({sql})" for i, (sql, _) in enumerate(extra))
            args = [a for _, sql_args in extra for a in sql_args]
            rows = await self._fetch(
                (f"WITH {ctes} " if ctes else "") + hand_over, *args, *hand_over_args
            )
        else:
            async with self.backend.transaction(durable=False) as c:
                for sql, sql_args in extra:
                    await c.execute(sql, *sql_args)
                rows = await c.fetch(hand_over, *hand_over_args)
        return decode_run(rows[0]) if rows else None

    async def request_undo(self, run_id: str, now: float) -> bool:
        """First resolve notification wins; repeats return False (undo runs once)."""
        n = await self._execute(
            "UPDATE runs SET resolved_at = ?, undo_state = 'requested',"
            " undo_reason = COALESCE(undo_reason, 'resolved'), updated_at = ?"
            " WHERE id = ? AND resolved_at IS NULL",
            now,
            now,
            run_id,
        )
        return n == 1

    async def expire_run(self, run_id: str, now: float) -> bool:
        """``max_duration`` passed with no resolve: ask for the undo (one replica wins)."""
        n = await self._execute(
            "UPDATE runs SET undo_state = 'requested', undo_reason = 'max_duration',"
            " updated_at = ? WHERE id = ? AND state = 'waiting' AND undo_state IS NULL",
            now,
            run_id,
        )
        return n == 1

    async def runs_past_duration(self, rule: str, created_before: float) -> list[Run]:
        """Waiting runs of ``rule`` created before the time, with changes to undo."""
        rows = await self._read(
            "SELECT * FROM runs WHERE rule = ? AND state = 'waiting' AND undo_state IS NULL"
            " AND created_at < ? AND EXISTS (SELECT 1 FROM steps s WHERE s.run_id = runs.id"
            " AND s.phase IN ('fire', 'approved') AND s.outcome = 'applied'"
            " AND s.changes IS NOT NULL) ORDER BY created_at LIMIT 20",
            rule,
            created_before,
        )
        return [decode_run(r) for r in rows]

    async def next_wake_up(self) -> float | None:
        """When the next run parked in a wait is due (None: no such run)."""
        rows = await self._read(
            "SELECT MIN(retry_at) AS due FROM runs WHERE state = 'parked' AND retry_at IS NOT NULL"
        )
        due = rows[0]["due"] if rows else None
        return float(due) if due is not None else None

    async def claim_parked_runs(self, owner: str, lease: float, limit: int = 1) -> list[Run]:
        """Take runs the kill switch parked, to go on with them after ``resume``."""
        now = time.time()
        rows = await self._claim(
            "runs",
            take="state = 'running', owner = ?, lease_until = ?, updated_at = ?, retry_at = NULL",
            take_args=(owner, now + lease, now),
            due="state = 'parked' AND (retry_at IS NULL OR retry_at <= ?)",
            due_args=(now,),
            order="COALESCE(retry_at, created_at)",
            limit=limit,
        )
        return [decode_run(r) for r in rows]

    async def claim_run(
        self, run_id: str, owner: str, lease: float, from_state: str, to_state: str
    ) -> bool:
        now = time.time()
        n = await self._execute(
            "UPDATE runs SET state = ?, owner = ?, lease_until = ?, updated_at = ?"
            " WHERE id = ? AND state = ?",
            to_state,
            owner,
            now + lease,
            now,
            run_id,
            from_state,
        )
        return n == 1

    async def claim_expired_runs(self, owner: str, lease: float, limit: int = 10) -> list[Run]:
        """Take over runs whose owner stopped renewing its lease (crash, kill -9)."""
        now = time.time()
        rows = await self._claim(
            "runs",
            take="owner = ?, lease_until = ?, updated_at = ?",
            take_args=(owner, now + lease, now),
            due="state IN ('running', 'undoing') AND lease_until < ?",
            due_args=(now,),
            order="created_at",
            limit=limit,
        )
        return [decode_run(r) for r in rows]

    async def runs_waiting_undo(self, limit: int = 10) -> list[Run]:
        """Runs whose alert resolved but whose undo has not started (e.g. paused then)."""
        rows = await self._read(
            "SELECT * FROM runs WHERE state = 'waiting' AND undo_state = 'requested'"
            " AND (retry_at IS NULL OR retry_at <= ?) ORDER BY resolved_at LIMIT ?",
            time.time(),
            limit,
        )
        return [decode_run(r) for r in rows]

    async def runs_to_escalate(self, runbooks: Sequence[str], limit: int = 50) -> list[Run]:
        """Waiting, unresolved, not yet escalated runs of these runbooks, oldest first."""
        if not runbooks:
            return []
        marks = ", ".join("?" for _ in runbooks)
        rows = await self._read(
            f"SELECT * FROM runs WHERE runbook IN ({marks}) AND state = 'waiting'"
            " AND resolved_at IS NULL AND escalated_at IS NULL AND blocked_by IS NULL"
            " ORDER BY created_at LIMIT ?",
            *runbooks,
            limit,
        )
        return [decode_run(r) for r in rows]

    async def mark_escalated(self, run_id: str) -> bool:
        """One replica wins the escalation of a run."""
        n = await self._execute(
            "UPDATE runs SET escalated_at = ? WHERE id = ? AND escalated_at IS NULL",
            time.time(),
            run_id,
        )
        return n == 1
