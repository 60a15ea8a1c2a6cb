"""Steps of runs: the audit trail of what each run did, and the actions view."""

from __future__ import annotations

from typing import Any

from remediator.state.backend import Row
from remediator.state.records import StepRecord
from remediator.state.store_base import StoreBase, dumps, loads

_STEP_COLUMNS = (
    "run_id",
    "phase",
    "seq",
    "name",
    "kind",
    "mutates",
    "approval",
    "state",
    "outcome",
    "rendered",
    "result",
    "changes",
    "reason",
    "attempts",
    "started_at",
    "finished_at",
)
_STEP_UPSERT = (
    f"INSERT INTO steps ({', '.join(_STEP_COLUMNS)})"
    f" VALUES ({', '.join('?' for _ in _STEP_COLUMNS)})"
    " ON CONFLICT (run_id, phase, name) DO UPDATE SET "
    + ", ".join(
        f"{c} = excluded.{c}" for c in _STEP_COLUMNS if c not in ("run_id", "phase", "name")
    )
)


def step_upsert(step: Row) -> tuple[str, list[Any]]:
    """The statement and values that insert or update one step row."""
    row = dict(step)
    row["mutates"] = int(bool(row.get("mutates")))
    row.setdefault("attempts", 0)
    row["result"] = dumps(row["result"]) if row.get("result") is not None else None
    row["changes"] = dumps(row["changes"]) if row.get("changes") is not None else None
    return _STEP_UPSERT, [row.get(c) for c in _STEP_COLUMNS]


class StepStore(StoreBase):
    async def record_step(self, step: Row, *, durable: bool = False) -> StepRecord:
        """Insert or update one step of a run; the audit trail is these rows. Returns
        the step as recorded (its id from the same statement).

        ``durable``: on disk before this returns, and every earlier commit with it."""
        sql, values = step_upsert(step)
        rows = await self._fetch(sql + " RETURNING id", *values, durable=durable)
        return StepRecord.from_row({"attempts": 0, **step, "id": rows[0]["id"]})

    async def steps_for_run(self, run_id: str, phase: str | None = None) -> list[StepRecord]:
        if phase is None:
            rows = await self._read(
                "SELECT * FROM steps WHERE run_id = ? ORDER BY started_at, id", run_id
            )
        else:
            rows = await self._read(
                "SELECT * FROM steps WHERE run_id = ? AND phase = ? ORDER BY seq", run_id, phase
            )
        for r in rows:
            r["result"] = loads(r["result"])
            r["changes"] = loads(r["changes"])
        return [StepRecord.from_row(r) for r in rows]

    async def list_actions(self, limit: int = 50) -> list[Row]:
        rows = await self._read(
            "SELECT s.*, r.rule, r.runbook, r.alertname, r.fingerprint, r.mode AS run_mode"
            " FROM steps s JOIN runs r ON r.id = s.run_id"
            " ORDER BY s.started_at DESC, s.id DESC LIMIT ?",
            limit,
        )
        for r in rows:
            r["result"] = loads(r["result"])
            r["changes"] = loads(r["changes"])
            r["mutates"] = bool(r["mutates"])
        return rows
