"""Retention: finished rows go after their age, on one replica at a time, in bounded
batches; nothing an unfinished occurrence, a live run or a human still needs goes.

Time is moved by passing ``now`` to the pass, never by sleeping."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from remediator.errors import ConfigError
from remediator.models import Occurrence
from remediator.settings import from_mapping
from remediator.state import retention
from remediator.state.store import StateStore
from tests.conftest import PG_DSN
from tests.engine import _testbook
from tests.helpers import running_daemon

DAY = 86400.0
NOW = time.time()
POLICY = retention.Policy(occurrences=7 * DAY, runs=90 * DAY)


@pytest.fixture
async def store(state_url: str) -> AsyncIterator[StateStore]:
    s = await StateStore.open(state_url)
    try:
        yield s
    finally:
        await s.close()


def occ(
    fp: str, received_at: float, *, pending: bool = False, status: str = "firing"
) -> Occurrence:
    return Occurrence(
        fp, "2026-11-28T00:20:04Z", status, "A", {"alertname": "A", "fp": fp}, {}, "",
        "", "{}", received_at, pending,
    )  # fmt: skip


async def sql(store: StateStore, statement: str, *args: Any) -> None:
    async with store.backend.transaction() as c:
        await c.execute(statement, *args)


async def states(store: StateStore) -> dict[str, str]:
    """fingerprint -> state of every occurrence left."""
    return {r["fingerprint"]: r["state"] for r in await store.list_occurrences(100_000)}


# ------------------------------------------------------------------ occurrences


async def test_old_done_occurrences_go_and_recent_or_unfinished_ones_stay(store):
    old, recent = NOW - 8 * DAY, NOW - 6 * DAY
    await store.append_occurrences([occ(f"old-done-{i}", old) for i in range(5)])
    await store.append_occurrences([occ(f"old-queued-{i}", old, pending=True) for i in range(4)])
    await store.append_occurrences([occ(f"recent-done-{i}", recent) for i in range(2)])
    claimed = await store.claim_occurrences("w", 2, lease=60)
    assert [r["fingerprint"] for r in claimed] == ["old-queued-0", "old-queued-1"]
    await store.finish_occurrence(claimed[0]["id"], "w", error="boom")  # failed: finished too
    # Batches of 2 rows, so the pass takes several statements per state.
    small = retention.Policy(occurrences=7 * DAY, runs=90 * DAY, batch=2)

    result = await retention.prune(store, small, now=NOW)

    assert result.pruned and not result.more
    assert result.deleted == {"occurrences": 6, "runs": 0, "steps": 0, "approvals": 0, "outbox": 0}
    assert await states(store) == {
        "old-queued-1": "processing",
        "old-queued-2": "pending",
        "old-queued-3": "pending",
        "recent-done-0": "done",
        "recent-done-1": "done",
    }
    # A day later the recent ones are old too; the unfinished ones never go.
    later = await retention.prune(store, small, now=NOW + 2 * DAY)
    assert later.deleted["occurrences"] == 2
    assert set(await states(store)) == {"old-queued-1", "old-queued-2", "old-queued-3"}


async def test_a_pass_is_bounded_and_says_when_rows_are_left(store):
    await store.append_occurrences([occ(f"o{i}", NOW - 30 * DAY) for i in range(25)])
    tight = retention.Policy(occurrences=7 * DAY, runs=90 * DAY, batch=4, max_batches=3)

    first = await retention.prune(store, tight, now=NOW)
    assert (first.deleted["occurrences"], first.more) == (12, True)
    second = await retention.prune(store, tight, now=NOW)
    third = await retention.prune(store, tight, now=NOW)
    assert (second.deleted["occurrences"], third.deleted["occurrences"]) == (12, 1)
    assert not third.more
    assert await store.count_occurrences() == 0


# ------------------------------------------------------------------------- runs


def run_row(run_id: str, created: float) -> dict[str, Any]:
    return {
        "id": run_id, "rule": "r", "runbook": "RB-T", "fingerprint": run_id,
        "starts_at": "2026-11-28T00:20:04Z", "alertname": "A", "target": f"RB-T:{run_id}",
        "mode": "live", "state": "running", "alert": {"labels": {}}, "params": {},
        "severity": "P2", "received_at": created, "created_at": created,
        "updated_at": created, "owner": "me", "lease_until": created + 30,
    }  # fmt: skip


async def make_run(
    store: StateStore,
    run_id: str,
    *,
    finished: float | None = None,
    approval: str | None = None,
    **fields: Any,
) -> None:
    """A run created 120 days ago with two steps (one applied with changes), its
    trigger page sent then, and optionally an approval in the given state."""
    created = NOW - 120 * DAY
    assert await store.create_run(run_row(run_id, created))
    for seq, (name, changes) in enumerate((("diagnose", None), ("mitigate", {"was": 1}))):
        await store.record_step(
            {
                "run_id": run_id, "phase": "fire", "seq": seq, "name": name,
                "kind": "mitigate", "mutates": changes is not None, "approval": "auto",
                "state": "done", "outcome": "applied", "rendered": "UPDATE knobs ...",
                "result": {"data": {}}, "changes": changes, "reason": None,
                "attempts": 1, "started_at": created, "finished_at": created,
            }
        )  # fmt: skip
    if approval is not None:
        a = await store.create_approval(run_id, "drastic", created + 3600)
        await sql(store, "UPDATE approvals SET state = ? WHERE id = ?", approval, a)
    await store.enqueue_pages([(f"{run_id}:trigger:capture", "capture", "trigger", run_id, {})])
    await sql(
        store,
        "UPDATE outbox SET state = 'sent', sent_at = ?, next_attempt_at = ? WHERE idem = ?",
        created, created, f"{run_id}:trigger:capture",
    )  # fmt: skip
    await store.update_run(run_id, finished_at=finished, **fields)


async def page(store: StateStore, idem: str, state: str, at: float) -> None:
    await store.enqueue_pages([(idem, "capture", "trigger", idem, {})])
    sent_at = at if state == "sent" else None
    await sql(
        store,
        "UPDATE outbox SET state = ?, sent_at = ?, next_attempt_at = ?, created_at = ?"
        " WHERE idem = ?",
        state, sent_at, at, at, idem,
    )  # fmt: skip


async def test_old_finished_runs_go_with_steps_approvals_and_pages_live_ones_stay(store):
    old, recent = NOW - 100 * DAY, NOW - 10 * DAY
    # Gone: finished (undone, or blocked before acting), long ago.
    await make_run(store, "r-undone", state="done", undo_state="done", finished=old,
                   approval="executed")  # fmt: skip
    await make_run(store, "r-rejected", state="done", undo_state="done", finished=old,
                   approval="rejected")  # fmt: skip
    await make_run(store, "r-blocked", state="done", outcome="blocked", blocked_by="cooldown",
                   undo_state="requested", finished=old)  # fmt: skip
    # Kept, however old: an undo still owed, a run not finished, a human still asked.
    # Only the state decides that a run is finished, whatever its timestamps say.
    await make_run(store, "r-recent", state="done", undo_state="done", finished=recent)
    await make_run(store, "r-owes-undo", state="waiting", undo_state="requested",
                   resolved_at=old, finished=old)  # fmt: skip
    await make_run(store, "r-waiting", state="waiting")
    await make_run(store, "r-parked", state="parked", finished=old)
    await make_run(store, "r-undoing", state="undoing", undo_state="requested", finished=old)
    await make_run(store, "r-running", state="running", finished=old)
    await make_run(store, "r-done-owing", state="done", undo_state="requested", finished=old)
    await make_run(store, "r-pending-approval", state="done", undo_state="done", finished=old,
                   approval="pending")  # fmt: skip
    await make_run(store, "r-approved", state="done", undo_state="done", finished=old,
                   approval="approved")  # fmt: skip
    # Pages of no run: old sent and failed ones go, a pending one never, a recent one stays.
    await page(store, "guard:r:cooldown:1:capture", "sent", old)
    await page(store, "circuit:RB-T:1:capture", "failed", old)
    await page(store, "guard:r:cooldown:2:capture", "pending", old)
    await page(store, "guard:r:cooldown:3:capture", "sent", recent)

    result = await retention.prune(
        store, retention.Policy(occurrences=7 * DAY, runs=90 * DAY, run_batch=2), now=NOW
    )

    gone = {"r-undone", "r-rejected", "r-blocked"}
    assert result.deleted == {
        "occurrences": 0, "runs": 3, "steps": 6, "approvals": 2,
        # the trigger pages of the seven done runs (sent 120 days ago), kept or not,
        # and the old sent and failed pages of no run
        "outbox": 7 + 2,
    }  # fmt: skip
    kept = {r["id"] for r in await store.list_runs(100)}
    assert kept == {
        "r-recent", "r-owes-undo", "r-waiting", "r-parked", "r-undoing", "r-running",
        "r-done-owing", "r-pending-approval", "r-approved",
    }  # fmt: skip
    for run_id in gone:
        assert await store.steps_for_run(run_id) == []
        assert await store.approvals_for_run(run_id) == []
    for run_id in kept:
        assert len(await store.steps_for_run(run_id)) == 2
    assert [a["state"] for a in await store.approvals_for_run("r-pending-approval")] == ["pending"]
    assert [a["state"] for a in await store.approvals_for_run("r-approved")] == ["approved"]
    live = {"r-owes-undo", "r-waiting", "r-parked", "r-undoing", "r-running"}
    assert {p["idem"]: p["state"] for p in await store.list_pages(100)} == {
        # A run not done may be resumed and must find its pages already queued.
        **{f"{run_id}:trigger:capture": "sent" for run_id in live},
        "guard:r:cooldown:2:capture": "pending",
        "guard:r:cooldown:3:capture": "sent",
    }


# -------------------------------------------------------------- one at a time


async def test_two_replicas_pruning_at_once_prune_once_without_errors(state_url):
    a, b = await StateStore.open(state_url), await StateStore.open(state_url)
    try:
        await a.append_occurrences([occ(f"o{i}", NOW - 30 * DAY) for i in range(3000)])
        policy = retention.Policy(occurrences=7 * DAY, runs=90 * DAY, batch=100, max_batches=50)

        first, second = await asyncio.gather(
            retention.prune(a, policy, now=NOW), retention.prune(b, policy, now=NOW)
        )

        assert first.deleted["occurrences"] + second.deleted["occurrences"] == 3000
        assert await a.count_occurrences() == 0
        if a.backend.dialect == "postgres":
            # The advisory lock: one replica pruned, the other skipped its pass.
            assert sorted([first.pruned, second.pruned]) == [False, True]
            assert 0 in (first.deleted["occurrences"], second.deleted["occurrences"])
    finally:
        await a.close()
        await b.close()


async def test_a_replica_skips_its_pass_while_another_holds_the_lock(pg_schema_dsn):
    store = await StateStore.open(pg_schema_dsn)
    holder = await asyncpg.connect(pg_schema_dsn)
    try:
        await store.append_occurrences([occ(f"o{i}", NOW - 30 * DAY) for i in range(10)])
        tx = holder.transaction()
        await tx.start()
        assert await holder.fetchval(retention._LOCK)  # another replica mid-pass

        skipped = await retention.prune(store, POLICY, now=NOW)
        assert not skipped.pruned and sum(skipped.deleted.values()) == 0
        assert await store.count_occurrences() == 10

        await tx.rollback()  # that pass ended (or its replica died)
        done = await retention.prune(store, POLICY, now=NOW)
        assert done.pruned and done.deleted["occurrences"] == 10
    finally:
        await holder.close()
        await store.close()


async def test_the_lock_is_per_schema_so_deployments_sharing_a_database_do_not_wait(
    pg_schema_dsn,
):
    store = await StateStore.open(pg_schema_dsn)
    holder = await asyncpg.connect(PG_DSN)  # a pass in another schema (public)
    try:
        await store.append_occurrences([occ("o", NOW - 30 * DAY)])
        async with holder.transaction():
            assert await holder.fetchval(retention._LOCK)
            result = await retention.prune(store, POLICY, now=NOW)
        assert result.pruned and result.deleted["occurrences"] == 1
    finally:
        await holder.close()
        await store.close()


# --------------------------------------------------------------- rows and metrics


async def test_state_rows_counts_every_table(store):
    await store.append_occurrences([occ(f"o{i}", NOW) for i in range(3)])
    await make_run(store, "r1", state="waiting", approval="pending")
    counts = await retention.count_rows(store)
    assert counts == {"occurrences": 3, "runs": 1, "steps": 2, "approvals": 1, "outbox": 1}


async def test_a_big_postgres_table_is_estimated_never_counted_in_full(pg_schema_dsn):
    store = await StateStore.open(pg_schema_dsn)
    try:
        for start in range(0, 12_000, 2_000):
            await store.append_occurrences([occ(f"o{i}", NOW) for i in range(start, start + 2_000)])
        # Before the statistics know the table: at least the bounded exact count.
        assert 10_000 <= (await retention.count_rows(store))["occurrences"] <= 12_000
        await sql(store, "ANALYZE occurrences")
        assert (await retention.count_rows(store))["occurrences"] == 12_000
    finally:
        await store.close()


def daemon_config(state_url: str, tmp_path: Path, **retention_keys: str) -> dict[str, Any]:
    rules = tmp_path / "rules"
    rules.mkdir(exist_ok=True)
    (rules / "test.yaml").write_text(_testbook.rules(cooldown="3d"))
    return {"state": state_url, "rules": str(rules), "retention": retention_keys}


async def test_the_daemon_counts_what_it_prunes_and_the_rows_left(state_url, tmp_path):
    async with running_daemon(
        daemon_config(state_url, tmp_path), registry=_testbook.registry(), workers=False
    ) as d:
        store = d.daemon.store
        await store.append_occurrences([occ(f"o{i}", NOW - 8 * DAY) for i in range(4)])
        await store.append_occurrences([occ("fresh", NOW)])
        await make_run(store, "r-old", state="done", undo_state="done", finished=NOW - 91 * DAY)
        await make_run(store, "r-live", state="waiting")

        await d.daemon.retention_once(now=NOW)

        def deleted(table: str) -> float:
            return d.sample("remediator_retention_deleted_total", {"table": table})

        def rows(table: str) -> float:
            return d.sample("remediator_state_rows", {"table": table})

        assert [deleted(t) for t in retention.TABLES] == [4, 1, 2, 0, 1]
        assert [rows(t) for t in retention.TABLES] == [1, 1, 2, 0, 1]
        await d.daemon.retention_once(now=NOW)  # nothing more to prune: counters stay
        assert deleted("occurrences") == 4 and rows("occurrences") == 1


async def test_the_retention_loop_runs_supervised_and_fills_the_gauges(state_url, tmp_path):
    async with running_daemon(
        daemon_config(state_url, tmp_path), registry=_testbook.registry()
    ) as d:
        for _ in range(200):
            if (
                d.metrics.registry.get_sample_value(
                    "remediator_state_rows", {"table": "occurrences"}
                )
                is not None
            ):
                break
            await asyncio.sleep(0.02)
        assert d.sample("remediator_state_rows", {"table": "occurrences"}) == 0
        assert not any("retention" in p for p in await d.daemon.readiness_problems())


async def test_runs_are_kept_as_long_as_a_rule_guard_counts_them(state_url, tmp_path):
    """A 3-day cooldown counts runs 3 days back: retention.runs of 1d keeps them 3d."""
    async with running_daemon(
        daemon_config(state_url, tmp_path, runs="1d"), registry=_testbook.registry(), workers=False
    ) as d:
        assert d.daemon.retention_policy().runs == 3 * DAY
        await make_run(
            d.daemon.store, "r2", state="done", undo_state="done", finished=NOW - 2 * DAY
        )
        assert (await d.daemon.retention_once(now=NOW)).deleted["runs"] == 0


# ----------------------------------------------------------------------- config


def test_retention_config_defaults_durations_floors_and_unknown_keys():
    r = from_mapping({}, env={}).retention
    assert (r.occurrences, r.runs, r.interval) == (7 * DAY, 90 * DAY, 60.0)
    r = from_mapping(
        {"retention": {"occurrences": "2d", "runs": "30d", "interval": "5m"}}
    ).retention
    assert (r.occurrences, r.runs, r.interval) == (2 * DAY, 30 * DAY, 300.0)
    for bad, message in (
        ({"occurrences": "10m"}, "retention.occurrences: Value error, must be at least 1h"),
        ({"runs": "2h"}, "retention.runs: Value error, must be at least 1d"),
        ({"interval": 0}, "retention.interval: Value error, must be positive"),
        ({"pages": "1d"}, "retention.pages: unknown key"),
    ):
        with pytest.raises(ConfigError, match=message):
            from_mapping({"retention": bad}, env={})
