"""HA: three ``remediator serve`` replicas on one Postgres state store act as one.

Alertmanager HA peers each send every notification to every replica; whatever the
interleaving, each (rule, fingerprint, startsAt) gets one run and each mitigation
lands once in the target database. The kill switch, cooldowns, the per-target lock
and approvals live in the state store, so one replica's decision binds the others.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from remediator.testing import make_alert, resolved
from tests.reliability import _bench
from tests.reliability._bench import World, audit, batches, world
from tests.reliability._cluster import Cluster, Sender, settle, soak_marks
from tests.reliability._report import record

pytestmark = pytest.mark.timeout(300)


@asynccontextmanager
async def cluster_for(
    tmp_path: Path, state_dsn: str, w: World, *, replicas: int = 3, **kw: Any
) -> AsyncIterator[Cluster]:
    cluster = Cluster(
        tmp_path,
        state_dsn,
        rules_yaml=w.rules_yaml(**kw),
        targets=w.targets(),
        replicas=replicas,
    )
    try:
        await cluster.start_all()
        yield cluster
    finally:
        await cluster.close()


async def from_peers(
    sender: Sender, payloads: list[list[dict[str, Any]]], *, peers: int = 3
) -> None:
    """Each peer sends every payload to every replica, all at once.

    Peers keep the order of a firing and its resolve (one Alertmanager never sends a
    resolve before its firing) but interleave groups differently.
    """
    replicas = range(len(sender.cluster.replicas))

    async def peer(seed: int) -> None:
        order = list(range(0, len(payloads), 2))
        random.Random(seed).shuffle(order)
        for i in order:
            for g in payloads[i : i + 2]:
                await asyncio.gather(*(sender.send(r, g) for r in replicas))

    await asyncio.gather(*(peer(p) for p in range(peers)))


async def fetch(dsn: str, sql: str, *args: Any) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        return [dict(r) for r in await conn.fetch(sql, *args)]
    finally:
        await conn.close()


async def steps_by_run(dsn: str, name: str, phase: str = "fire") -> dict[str, dict[str, Any]]:
    rows = await fetch(
        dsn, "SELECT * FROM steps WHERE name = $1 AND phase = $2 ORDER BY id", name, phase
    )
    return {r["run_id"]: r for r in rows}


@pytest.mark.parametrize("n", [200, pytest.param(1000, marks=soak_marks(timeout=1200))])
async def test_three_peers_to_three_replicas_give_one_run_and_one_action_per_alert(
    n: int, request: pytest.FixtureRequest, pg_schema_dsn: str, tmp_path: Path
) -> None:
    async with (
        world(request.config, n) as w,
        cluster_for(tmp_path, pg_schema_dsn, w) as cluster,
        httpx.AsyncClient(timeout=30) as client,
    ):
        sender = Sender(cluster, client)
        firing = [w.alert(i) for i in range(n)]
        # Groups of 10, each followed at once by the resolve of half of its alerts: a
        # resolve often reaches a replica before its firing has been processed.
        payloads: list[list[dict[str, Any]]] = []
        for g in batches(firing, 10):
            payloads += [g, [resolved(x) for x in g[::2]]]
        started = time.monotonic()
        await from_peers(sender, payloads)
        sent = time.monotonic() - started
        await settle(pg_schema_dsn, timeout=max(60.0, n * 0.3))
        elapsed = time.monotonic() - started
        a = await audit(w, pg_schema_dsn, sender)
        errors = cluster.internal_errors()
    assert sender.undelivered == []
    assert set(sender.statuses) == {"202"}, sender.statuses
    assert a.accepted == n + n // 2 == a.journaled
    for k, v in a.problems().items():
        print("PROBLEM", k, len(v), v[:3])
    assert a.problems() == {}
    assert (a.runs, a.applied, a.undone, a.unknown) == (n, n, n // 2, [])
    assert errors == []
    figures = a.figures()
    record(
        "ha",
        name=f"{n} alerts x 3 peers x 3 replicas",
        **figures,
        replicas=3,
        peers=3,
        deliveries=sender.requests,
        duplicates=sender.delivered - a.journaled,
        runs_per_replica=sorted(a.owners.values()),
        duration_s=round(elapsed, 1),
    )
    record(
        "load",
        name=f"HA {n} alerts x 3 peers x 3 replicas",
        alerts=a.accepted,
        requests=sender.requests,
        replicas=3,
        send_s=round(sent, 1),
        duration_s=round(elapsed, 1),
    )


async def test_kill_switch_set_on_one_replica_binds_the_others(
    request: pytest.FixtureRequest, pg_schema_dsn: str, tmp_path: Path
) -> None:
    async with (
        world(request.config, 30) as w,
        cluster_for(tmp_path, pg_schema_dsn, w) as cluster,
        httpx.AsyncClient(timeout=30, headers=cluster.operator_headers()) as client,
    ):
        sender = Sender(cluster, client)
        r0, r1, r2 = (r.url for r in cluster.replicas)
        before = [w.alert(i) for i in range(0, 10)]  # mitigated before the pause
        during = [w.alert(i) for i in range(10, 20)]  # arrive while paused
        after = [w.alert(i) for i in range(20, 30)]  # after resume
        await sender.send(0, before)
        await settle(pg_schema_dsn)

        resp = await client.post(r0 + "/api/v1/pause")
        assert resp.status_code == 200 and resp.json() == {"paused": True, "by": "ops"}
        await asyncio.gather(sender.send(1, during), sender.send(2, during))
        # Resolving while paused: the undo waits for the switch, on every replica.
        await sender.send(2, [resolved(x) for x in before])
        await settle(pg_schema_dsn, deferred_undo_ok=True)
        metrics = [(await client.get(u + "/metrics")).text for u in (r1, r2)]
        paused_runs = await fetch(
            pg_schema_dsn,
            "SELECT id, fingerprint, mode, undo_state, state FROM runs WHERE alertname = $1",
            _bench.PROVIDER_ALERT,
        )
        pause_steps = await steps_by_run(pg_schema_dsn, "pause_alerts")
        changes_while_paused = await w.changes()

        resp = await client.post(r2 + "/api/v1/resume")
        assert resp.status_code == 200 and resp.json() == {"paused": False, "by": "ops"}
        await sender.send(1, after)
        await settle(pg_schema_dsn)
        a = await audit(w, pg_schema_dsn, sender)
        errors = cluster.internal_errors()

    assert all("remediator_paused 1.0" in m for m in metrics)
    during_fps = {x["fingerprint"] for x in during}
    by_fp = {r["fingerprint"]: r for r in paused_runs}
    for fp in during_fps:
        # Diagnosed, then parked at the gate of its first mutation, whichever replica.
        run = by_fp[fp]
        assert run["state"] == "parked"
        step = pause_steps[run["id"]]
        assert step["state"] == "deferred" and "kill switch" in step["reason"]
    # While paused: the ten "before" runs had paused their rows; nothing else changed,
    # and the resolved ones were not undone yet.
    assert {(c["old"], c["new"]) for c in changes_while_paused if c["col"] == "active"} == {
        ("true", "false")
    }
    assert len([c for c in changes_while_paused if c["col"] == "active"]) == 10 * 2
    assert {r["undo_state"] for r in paused_runs if r["fingerprint"] not in during_fps} == {
        "requested"
    }
    # After resume: the deferred undos ran once, the parked runs went on (their alerts
    # still fire) and the new alerts were mitigated: each mitigation exactly once.
    assert a.problems() == {}
    assert (a.runs, a.applied, a.undone, a.unknown) == (30, 30, 10, [])
    assert errors == []
    record("ha", name="kill switch shared", **a.figures())


async def test_cooldown_and_lock_are_shared_by_the_replicas(
    request: pytest.FixtureRequest, pg_schema_dsn: str, tmp_path: Path
) -> None:
    """Six instances report the same provider at once, to every replica: one run acts."""
    async with (
        world(request.config, 1) as w,
        cluster_for(tmp_path, pg_schema_dsn, w) as cluster,
        httpx.AsyncClient(timeout=30) as client,
    ):
        sender = Sender(cluster, client)
        burst = [w.alert(0, instance=f"exporter-{k}") for k in range(6)]
        await asyncio.gather(
            *(sender.send(r, [x]) for x in burst for r in range(3)),
        )
        await settle(pg_schema_dsn)
        later = w.alert(0, instance="exporter-9", wave=1)
        await sender.send(2, [later])
        await settle(pg_schema_dsn)
        runs = await fetch(pg_schema_dsn, "SELECT * FROM runs ORDER BY created_at")
        a = await audit(w, pg_schema_dsn, sender)
        errors = cluster.internal_errors()
    assert len(runs) == 7
    acted = [r for r in runs if r["blocked_by"] is None]
    assert len(acted) == 1, [(r["fingerprint"], r["blocked_by"]) for r in runs]
    assert acted[0]["fingerprint"] in {x["fingerprint"] for x in burst}
    blocked = {r["fingerprint"]: r["blocked_by"] for r in runs if r["blocked_by"]}
    assert set(blocked.values()) <= {"cooldown", "lock_busy"}
    assert blocked[later["fingerprint"]] == "cooldown"
    assert a.problems() == {}
    assert a.applied == 1
    assert errors == []
    record("ha", name="cooldown and lock shared", **a.figures(), blocked=sorted(blocked.values()))


async def test_approval_given_on_one_replica_is_executed_once(
    request: pytest.FixtureRequest, pg_schema_dsn: str, tmp_path: Path
) -> None:
    """RB-03: the storm is mitigated once; its approved delete runs once, anywhere."""
    async with (
        world(request.config, 1) as w,
        cluster_for(tmp_path, pg_schema_dsn, w) as cluster,
        httpx.AsyncClient(timeout=30, headers=cluster.operator_headers()) as client,
    ):
        dup_ids = await add_duplicates(w.target_dsn)
        sender = Sender(cluster, client)
        storm = make_alert(_bench.STORM_ALERT, {"service": "dawsos", "severity": "page"})
        await asyncio.gather(*(sender.send(r, [storm]) for r in range(3) for _ in range(3)))
        await settle(pg_schema_dsn)
        [approval] = await fetch(
            pg_schema_dsn, "SELECT * FROM approvals WHERE step = 'delete_duplicates'"
        )
        answers = await asyncio.gather(
            *(
                client.post(f"{r.url}/api/v1/actions/{approval['id']}/approve")
                for r in cluster.replicas
            )
        )
        await settle(pg_schema_dsn)
        decided = (
            await fetch(pg_schema_dsn, "SELECT * FROM approvals WHERE id = $1", approval["id"])
        )[0]
        approved = await fetch(pg_schema_dsn, "SELECT * FROM steps WHERE phase = 'approved'")
        runs = await fetch(pg_schema_dsn, "SELECT * FROM runs")
        changes = await w.changes()
        errors = cluster.internal_errors()
    assert sorted(r.status_code for r in answers) == [200, 409, 409]
    assert decided["state"] == "executed" and decided["decided_by"] == "ops"
    assert [(s["name"], s["outcome"]) for s in approved] == [("delete_duplicates", "applied")]
    assert [r["rule"] for r in runs] == [_bench.STORM_RULE]
    deletes = [c for c in changes if c["tbl"] == "notifications"]
    assert [c["n"] for c in deletes] == [len(dup_ids)]
    cooled = [c for c in changes if c["col"] == "cooldown_minutes"]
    # The global cooldown changed each alert once, to 60 minutes.
    assert len(cooled) == len({c["row_id"] for c in cooled}) > 0
    assert {c["new"] for c in cooled} == {"60"}
    assert errors == []
    record(
        "ha",
        name="approval shared",
        alerts=1,
        runs=len(runs),
        approvals_answered=len(answers),
        doubled=len(approved)
        - 1
        + len(deletes)
        - 1
        + len(cooled)
        - len({c["row_id"] for c in cooled}),
    )


async def add_duplicates(dsn: str) -> list[int]:
    """Drop the unique index and add three same-day duplicates (as the RB-03 tests do)."""
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        await conn.execute("DROP INDEX uq_notify_user_alert_day")
        rows = await conn.fetch(
            "INSERT INTO notifications (user_id, alert_id, payload_json, created_at)"
            " SELECT n.user_id, n.alert_id, n.payload_json, n.created_at"
            " FROM (VALUES ('abc-123', 2), ('def-456', 1)) AS k(alert_id, copies)"
            " CROSS JOIN LATERAL generate_series(1, k.copies)"
            " JOIN notifications n"
            "   ON n.id = (SELECT min(id) FROM notifications WHERE alert_id = k.alert_id)"
            " RETURNING id"
        )
    finally:
        await conn.close()
    return sorted(r["id"] for r in rows)
