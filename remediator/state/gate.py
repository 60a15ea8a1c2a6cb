"""The state side of the mutation gate: one transaction right before a step acts.

In that one transaction the gate reads the kill switch, renews the run's lease (the
fence: a replica that stalled past it must not act), counts the rule's blast
radius, and records the step as ``started``. Either all of it commits, and the step
may act, or the step is refused and nothing of it is written.

On Postgres every admission holds an advisory lock shared, and ``remediator pause``
takes it exclusive around its write (``StateStore.set_flag``): pause waits for every
admission already deciding, and an admission that starts meanwhile reads the flag only
once pause has committed. So once ``pause`` has returned no step can be admitted that
did not already show as started. (A ``FOR SHARE`` on the flag row did the same, but
every admission then wrote a multixact to that one row: 200 runs/s queued on it.) The
blast radius count takes a transaction-scoped advisory lock per rule, so replicas
deciding for the same rule at once count each other.

This module records and counts; the engine decides what a refusal means.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

from remediator.state.backend import Row
from remediator.state.flags import GATE_LOCK
from remediator.state.steps import step_upsert
from remediator.state.store import StateStore

PAUSE_FLAG = "paused"

Refusal = Literal["kill_switch", "lease_lost", "blast_radius"]

# Steps that changed (or may have changed) a target: started and not finished, or
# finished as applied or failed. Dry-run plans, deferrals and skips changed nothing.
_MUTATED = (
    "s.mutates = 1 AND s.phase IN ('fire', 'approved')"
    " AND (s.state = 'started' OR s.outcome IN ('applied', 'failed'))"
)


@dataclass(frozen=True)
class BlastLimit:
    """At most ``count`` distinct targets of ``rule`` mutated since ``since``."""

    rule: str
    target: str
    count: int
    since: float


async def admit_step(
    store: StateStore,
    step: Row,
    *,
    owner: str | None,
    lease_until: float | None,
    blast: BlastLimit | None,
) -> Refusal | None:
    """Record ``step`` as started unless the kill switch, the lease or the blast
    radius refuses it; returns the refusal, or None when the step may act.

    ``owner``/``lease_until``: fence the run (its owner must still be us), and
    renew the lease. None for phases any replica may run (approved steps).
    """
    backend = store.backend
    postgres = backend.dialect == "postgres"
    async with backend.transaction(durable=True) as c:
        if postgres:
            await c.execute("SELECT pg_advisory_xact_lock_shared(?)", GATE_LOCK)
        flag = await c.fetch("SELECT value FROM flags WHERE name = ?", PAUSE_FLAG)
        if flag and flag[0]["value"] == "1":
            return "kill_switch"
        if owner is not None:
            n = await c.execute(
                "UPDATE runs SET lease_until = ?, updated_at = ? WHERE id = ? AND owner = ?",
                lease_until,
                time.time(),
                step["run_id"],
                owner,
            )
            if n != 1:
                return "lease_lost"
        if blast is not None:
            if postgres:
                await c.execute("SELECT pg_advisory_xact_lock(hashtext(?))", f"gate:{blast.rule}")
            rows = await c.fetch(
                "SELECT DISTINCT r.target AS target FROM steps s JOIN runs r ON r.id = s.run_id"
                f" WHERE r.rule = ? AND s.started_at >= ? AND {_MUTATED}",
                blast.rule,
                blast.since,
            )
            targets = {r["target"] for r in rows}
            if blast.target not in targets and len(targets) >= blast.count:
                return "blast_radius"
        sql, values = step_upsert(step)
        await c.execute(sql, *values)
    return None
