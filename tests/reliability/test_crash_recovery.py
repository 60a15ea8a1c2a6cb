"""Crash recovery: kill -9 replicas in the middle of runs, again and again, under load.

Three replicas share the state store; alerts arrive steadily (each to one replica,
retried like Alertmanager retries), half of them resolve a few seconds later, and a
replica that owns runs in flight is killed with SIGKILL and restarted, at least ten
times. Afterwards every alert that got a 202 was processed exactly once, every run
finished, no mitigation landed twice in the target database and no undo was lost.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from remediator.models import WebhookPayload, occurrences
from remediator.state.store import StateStore
from remediator.testing import make_payload, resolved
from tests.reliability._bench import audit, world
from tests.reliability._cluster import Cluster, Sender, key_of, settle, soak_marks
from tests.reliability._report import record


async def in_flight(cluster: Cluster, conn: asyncpg.Connection) -> dict[int, list[str]]:
    """Runs running or undoing, by the live replica that owns them."""
    rows = await conn.fetch(
        "SELECT id, owner FROM runs WHERE state IN ('running', 'undoing') AND owner IS NOT NULL"
    )
    out: dict[int, list[str]] = {}
    for r in cluster.replicas:
        if r.alive:
            pid = f":{r.pid}:"
            out[r.index] = [row["id"] for row in rows if pid in row["owner"]]
    return out


class Chaos:
    """Kills a replica that owns runs in flight, restarts it, and keeps count."""

    def __init__(self, cluster: Cluster, state_dsn: str, rng: random.Random) -> None:
        self.cluster = cluster
        self.state_dsn = state_dsn
        self.rng = rng
        self.kills = 0
        self.hit: dict[str, int] = {}  # run in flight on a replica when it was killed -> pid
        self.restart_s: list[float] = []

    async def run(self, kills: int, interval: float) -> None:
        conn = await asyncpg.connect(self.state_dsn, timeout=5)
        try:
            for _ in range(kills):
                await asyncio.sleep(interval * (0.5 + self.rng.random()))
                victim, runs = await self._victim(conn)
                pid = self.cluster.kill(victim)
                self.kills += 1
                self.hit.update(dict.fromkeys(runs, pid))
                await asyncio.sleep(self.rng.uniform(0.1, 1.0))
                started = time.monotonic()
                await self.cluster.start(victim)
                self.restart_s.append(time.monotonic() - started)
        finally:
            await conn.close()

    async def _victim(self, conn: asyncpg.Connection) -> tuple[int, list[str]]:
        # Wait (briefly) for a replica that is in the middle of runs; kill the busiest.
        for _ in range(40):
            busy = await in_flight(self.cluster, conn)
            best = max(busy.items(), key=lambda kv: len(kv[1]), default=(0, []))
            if best[1]:
                return best
            await asyncio.sleep(0.05)
        alive = [r.index for r in self.cluster.replicas if r.alive]
        return self.rng.choice(alive), []


class Load:
    """Steady firing alerts, each to one random replica; every other one resolves later."""

    def __init__(self, sender: Sender, alerts: list[dict[str, Any]], rng: random.Random) -> None:
        self.sender = sender
        self.alerts = alerts
        self.rng = rng
        self.resolves = 0

    async def _one(self, i: int) -> None:
        n = len(self.sender.cluster.replicas)
        alert = self.alerts[i]
        if not await self.sender.send(self.rng.randrange(n), [alert]):
            return
        if i % 2 == 0:
            await asyncio.sleep(self.rng.uniform(0.3, 4.0))
            if await self.sender.send(self.rng.randrange(n), [resolved(alert)]):
                self.resolves += 1

    async def run(self, duration: float) -> None:
        gap = duration / len(self.alerts)
        tasks = []
        for i in range(len(self.alerts)):
            tasks.append(asyncio.create_task(self._one(i)))
            await asyncio.sleep(gap)
        await asyncio.gather(*tasks)


@pytest.mark.parametrize(
    ("kills", "alerts"),
    [
        pytest.param(12, 250, marks=pytest.mark.timeout(400)),
        pytest.param(60, 1250, marks=soak_marks(timeout=2400)),
    ],
)
async def test_kill_9_in_the_middle_of_runs_loses_nothing_and_doubles_nothing(
    kills: int, alerts: int, request: pytest.FixtureRequest, pg_schema_dsn: str, tmp_path: Path
) -> None:
    rng = random.Random(7)
    interval = 1.5  # seconds of load between a restart and the next kill, on average
    # Each run waits 0.4 s for a provider's status page, and so does each resolve: a
    # killed replica is almost always in the middle of runs and undos.
    async with world(request.config, alerts, delay=0.4) as w:
        cluster = Cluster(tmp_path, pg_schema_dsn, rules_yaml=w.rules_yaml(), targets=w.targets())
        try:
            await cluster.start_all()
            async with httpx.AsyncClient(timeout=30) as client:
                sender = Sender(cluster, client)
                chaos = Chaos(cluster, pg_schema_dsn, rng)
                load = Load(sender, [w.alert(i) for i in range(alerts)], rng)
                started = time.monotonic()
                # About five alerts a second, while a kill (and restart) every ~5 s.
                await asyncio.gather(load.run(alerts / 5), chaos.run(kills, interval))
                loaded = time.monotonic() - started
                await settle(pg_schema_dsn, timeout=120)
                elapsed = time.monotonic() - started
            a = await audit(w, pg_schema_dsn, sender)
            taken_over = await _taken_over(pg_schema_dsn, chaos.hit)
            resumed = cluster.count_events("run_resumed")
            stale = cluster.count_events("lease_lost")
            errors = cluster.internal_errors()
        finally:
            await cluster.close()

    assert chaos.kills == kills
    assert sender.undelivered == []
    assert a.accepted == alerts + load.resolves == a.journaled
    assert a.problems() == {}, "\n".join(f"{k}: {x}" for k, v in a.problems().items() for x in v)
    # Every alert acted on: no run was blocked or failed because of a crash, except a
    # mutation whose outcome a kill hid (recorded, paged, never repeated blindly).
    assert a.runs == alerts
    assert a.applied + len(a.unknown) == alerts, a.not_applied
    assert taken_over > 0  # some kills did land in the middle of runs
    assert errors == []
    record(
        "crash",
        name=f"kill -9 x{kills} under {alerts} alerts, 3 replicas",
        **a.figures(),
        resolves=load.resolves,
        kills=chaos.kills,
        runs_in_flight_at_kill=len(chaos.hit),
        runs_taken_over=taken_over,
        resumed_events=resumed,
        stale_owner_stops=stale,
        restart_s_max=round(max(chaos.restart_s), 2),
        duration_s=round(elapsed, 1),
    )
    record(
        "load",
        name=f"kill -9 x{kills} under {alerts} alerts in {round(loaded)} s",
        alerts=a.accepted,
        requests=sender.requests,
        replicas=3,
        duration_s=round(elapsed, 1),
    )


async def _taken_over(state_dsn: str, hit: dict[str, int]) -> int:
    """How many runs in flight at a kill were finished by another process."""
    conn = await asyncpg.connect(state_dsn, timeout=5)
    try:
        rows = await conn.fetch("SELECT id, owner FROM runs WHERE id = ANY($1)", list(hit))
    finally:
        await conn.close()
    return sum(1 for r in rows if f":{hit[r['id']]}:" not in (r["owner"] or ""))


async def test_a_resolve_processed_before_its_firing_still_undoes_the_mitigation(
    request: pytest.FixtureRequest, pg_schema_dsn: str, tmp_path: Path
) -> None:
    """A replica claimed the firing alert and died; the resolve came meanwhile.

    The resolve is processed first (the firing is held by the dead replica's claim
    until its lease runs out) and finds no run to undo. When the firing is claimed
    again and its run mitigates, the undo must still happen.
    """
    async with world(request.config, 1) as w:
        alert = w.alert(0)
        payload = WebhookPayload.model_validate(make_payload(alert))
        store = await StateStore.open(pg_schema_dsn)
        try:
            await store.append_occurrences(occurrences(payload, time.time()))
            [claimed] = await store.claim_occurrences("dead-replica:1:x", 1, 3.0)
            assert claimed["status"] == "firing"
            gone = WebhookPayload.model_validate(make_payload(resolved(alert)))
            await store.append_occurrences(occurrences(gone, time.time()))
        finally:
            await store.close()
        cluster = Cluster(
            tmp_path, pg_schema_dsn, rules_yaml=w.rules_yaml(), targets=w.targets(), replicas=1
        )
        try:
            await cluster.start_all()
            await settle(pg_schema_dsn, timeout=30)
            async with httpx.AsyncClient() as client:
                sender = Sender(cluster, client)
                sender.accepted.update({key_of(alert), key_of(resolved(alert))})
                a = await audit(w, pg_schema_dsn, sender)
            errors = cluster.internal_errors()
        finally:
            await cluster.close()
    assert a.problems() == {}
    assert (a.runs, a.applied, a.undone) == (1, 1, 1)
    assert errors == []


async def test_a_replica_that_stalls_past_its_lease_does_not_act_on_the_run_again(
    request: pytest.FixtureRequest, pg_schema_dsn: str, tmp_path: Path
) -> None:
    """Replica 0 freezes (SIGSTOP) in the middle of a run; replica 1 takes it over and
    finishes it; when replica 0 wakes up it must stop, not run the next steps too."""
    async with world(request.config, 1, delay=2.0) as w:
        cluster = Cluster(
            tmp_path, pg_schema_dsn, rules_yaml=w.rules_yaml(), targets=w.targets(), replicas=2
        )
        state = await asyncpg.connect(pg_schema_dsn)
        try:
            await cluster.start(0)
            async with httpx.AsyncClient(timeout=30) as client:
                sender = Sender(cluster, client)
                assert await sender.send(0, [w.alert(0)])
                run_id = await _poll(
                    state,
                    "SELECT run_id FROM steps WHERE name = 'provider_status' AND state = 'started'",
                )
                first = await state.fetchval("SELECT owner FROM runs WHERE id = $1", run_id)
                cluster.freeze(0)  # stalls while its status request is in flight
                await cluster.start(1)
                await _poll(
                    state,
                    "SELECT 1 FROM runs WHERE id = $1 AND state = 'waiting' AND owner <> $2",
                    run_id,
                    first,
                )
                cluster.thaw(0)
                # Replica 0 either stops at its next step or goes on with it.
                woke = await _poll_log(
                    cluster,
                    0,
                    lambda e: (
                        e.get("event") == "lease_lost"
                        or (e.get("event") == "step_finished" and e.get("step") == "pause_alerts")
                    ),
                )
                await settle(pg_schema_dsn, timeout=30)
                a = await audit(w, pg_schema_dsn, sender)
            steps = {
                r["name"]: r["outcome"]
                for r in await state.fetch("SELECT * FROM steps WHERE run_id = $1", run_id)
            }
            errors = cluster.internal_errors()
        finally:
            await state.close()
            await cluster.close()
    assert a.problems() == {}
    assert (a.runs, a.applied) == (1, 1)
    assert woke["event"] == "lease_lost"
    assert steps["pause_alerts"] == "applied"  # the new owner's record, not overwritten
    assert errors == []
    record("crash", name="stalled owner (SIGSTOP past its lease)", **a.figures(), stalls=1)


async def _poll(conn: asyncpg.Connection, sql: str, *args: Any, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await conn.fetchval(sql, *args)
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"never true: {sql} {args}")


async def _poll_log(
    cluster: Cluster, i: int, match: Callable[[dict[str, Any]], bool], timeout: float = 30
) -> dict[str, Any]:
    """The first log event of replica i that matches (waits for it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for e in cluster.events():
            if e["replica"] == i and match(e):
                return e
        await asyncio.sleep(0.1)
    raise AssertionError(f"replica {i} never logged the event:\n{cluster.tail(i)}")
