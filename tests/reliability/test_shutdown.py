"""Graceful shutdown: SIGTERM during load loses nothing and abandons nothing.

A replica that gets SIGTERM stops taking webhooks, lets the steps in hand finish
(a mutation cut in half would leave its outcome unknown), and hands what it cannot
finish to the other replicas. Every webhook it answered 202 is processed, by the
survivor or after a restart.
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from remediator.testing import resolved
from tests.reliability._bench import World, audit, rows_of, world
from tests.reliability._cluster import Cluster, Sender, settle
from tests.reliability._report import record

pytestmark = pytest.mark.timeout(180)


def cluster_of(tmp_path: Path, state_dsn: str, w: World, replicas: int) -> Cluster:
    return Cluster(
        tmp_path, state_dsn, rules_yaml=w.rules_yaml(), targets=w.targets(), replicas=replicas
    )


async def wait_for(conn: asyncpg.Connection, sql: str, *args: Any, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await conn.fetchval(sql, *args)
        if value:
            return value
        await asyncio.sleep(0.02)
    raise AssertionError(f"never true: {sql} {args}")


async def test_sigterm_lets_the_mutation_in_progress_finish(
    request: pytest.FixtureRequest, pg_schema_dsn: str, tmp_path: Path
) -> None:
    async with world(request.config, 1) as w:
        cluster = cluster_of(tmp_path, pg_schema_dsn, w, 2)
        state = await asyncpg.connect(pg_schema_dsn)
        target = await asyncpg.connect(w.target_dsn)
        try:
            await cluster.start_all()
            # Hold the provider's rows: the pause step blocks inside its transaction.
            tx = target.transaction()
            await tx.start()
            await target.execute(
                "SELECT id FROM alerts WHERE id = ANY($1) FOR UPDATE", rows_of(w.providers[0])
            )
            # No connection stays open: the HTTP server stops at once, and the step in
            # hand finishes because the daemon waits for it, not for an idle client.
            async with httpx.AsyncClient(timeout=30) as client:
                sender = Sender(cluster, client)
                assert await sender.send(0, [w.alert(0)])
            if True:
                run_id = await wait_for(
                    state,
                    "SELECT run_id FROM steps WHERE name = 'pause_alerts' AND state = 'started'",
                )
                owner = await state.fetchval("SELECT owner FROM runs WHERE id = $1", run_id)
                stopping = asyncio.create_task(cluster.terminate(0))
                await asyncio.sleep(3.0)  # SIGTERM has arrived; the step is still blocked
                assert not stopping.done()
                await tx.rollback()
                code = await stopping
                await settle(pg_schema_dsn, timeout=30)
                a = await audit(w, pg_schema_dsn, sender)
            run = await state.fetchrow("SELECT * FROM runs WHERE id = $1", run_id)
            errors = cluster.internal_errors()
        finally:
            await target.close()
            await state.close()
            await cluster.close()
    assert code == 0
    assert a.problems() == {}
    assert (a.runs, a.applied, a.unknown) == (1, 1, [])
    # Finished by the replica that was stopping, not abandoned to the other one.
    assert (run["state"], run["owner"]) == ("waiting", owner)
    assert errors == []
    record("shutdown", name="mutation in progress finishes", **a.figures(), sigterms=1)


async def test_sigterm_during_load_loses_nothing_and_hands_over_the_rest(
    request: pytest.FixtureRequest, pg_schema_dsn: str, tmp_path: Path
) -> None:
    n = 80
    rng = random.Random(3)
    async with world(request.config, n, delay=0.4) as w:
        cluster = cluster_of(tmp_path, pg_schema_dsn, w, 2)
        state = await asyncpg.connect(pg_schema_dsn)
        try:
            await cluster.start_all()
            pid0 = cluster.replicas[0].pid
            async with httpx.AsyncClient(timeout=30) as client:
                sender = Sender(cluster, client)

                async def one(i: int) -> None:
                    alert = w.alert(i)
                    # A stopped replica refuses connections: fall over quickly.
                    await sender.send(rng.randrange(2), [alert], deadline=0.5)
                    if i % 2 == 0:
                        await asyncio.sleep(rng.uniform(0.2, 2.0))
                        await sender.send(rng.randrange(2), [resolved(alert)], deadline=0.5)

                tasks = []
                for i in range(n):
                    tasks.append(asyncio.create_task(one(i)))
                    await asyncio.sleep(0.1)
                    if i == n // 2:
                        await wait_for(
                            state,
                            "SELECT count(*) FROM runs WHERE state IN ('running', 'undoing')"
                            " AND owner LIKE $1",
                            cluster.replicas[0].owner_like(),
                        )
                        in_flight = {
                            r["id"]
                            for r in await state.fetch(
                                "SELECT id FROM runs WHERE state IN ('running', 'undoing')"
                                " AND owner LIKE $1",
                                cluster.replicas[0].owner_like(),
                            )
                        }
                        stopping = asyncio.create_task(cluster.terminate(0))
                await asyncio.gather(*tasks)
                code = await stopping
                await settle(pg_schema_dsn, timeout=60)
                a = await audit(w, pg_schema_dsn, sender)
            owners = {
                r["id"]: r["owner"]
                for r in await state.fetch(
                    "SELECT id, owner FROM runs WHERE id = ANY($1)", list(in_flight)
                )
            }
            errors = cluster.internal_errors()
        finally:
            await state.close()
            await cluster.close()
    assert code == 0
    assert sender.undelivered == []
    assert a.accepted == a.journaled
    assert a.problems() == {}
    assert (a.runs, a.applied, a.unknown) == (n, n, [])
    assert in_flight
    finished_here = sum(1 for o in owners.values() if f":{pid0}:" in o)
    assert errors == []
    record(
        "shutdown",
        name="SIGTERM under load, 2 replicas",
        **a.figures(),
        sigterms=1,
        runs_in_flight_at_sigterm=len(in_flight),
        finished_by_stopping_replica=finished_here,
        handed_over=len(in_flight) - finished_here,
    )


async def test_sigterm_of_the_only_replica_then_restart_processes_every_202(
    request: pytest.FixtureRequest, pg_schema_dsn: str, tmp_path: Path
) -> None:
    n = 60
    async with world(request.config, n, delay=0.2) as w:
        cluster = cluster_of(tmp_path, pg_schema_dsn, w, 1)
        state = await asyncpg.connect(pg_schema_dsn)
        try:
            await cluster.start_all()
            async with httpx.AsyncClient(timeout=30) as client:
                sender = Sender(cluster, client)
                # Twenty groups of three, one every 0.1 s: faster than one replica works
                # them off, and still arriving while it stops and restarts.
                groups = [[w.alert(i + k) for k in range(3)] for i in range(0, n, 3)]

                async def send_all() -> None:
                    tasks = []
                    for g in groups:
                        tasks.append(asyncio.create_task(sender.send(0, g, deadline=30)))
                        await asyncio.sleep(0.1)
                    await asyncio.gather(*tasks)

                sending = asyncio.create_task(send_all())
                await wait_for(state, "SELECT count(*) >= 15 FROM occurrences")
                code = await cluster.terminate(0)
                left = await state.fetchval(
                    "SELECT count(*) FROM occurrences WHERE state IN ('pending', 'processing')"
                )
                await cluster.start(0)  # Alertmanager's retries reach the new process
                await sending
                await settle(pg_schema_dsn, timeout=60)
                a = await audit(w, pg_schema_dsn, sender)
            errors = cluster.internal_errors()
        finally:
            await state.close()
            await cluster.close()
    assert code == 0
    assert sender.undelivered == []
    assert a.accepted == n == a.journaled
    assert a.problems() == {}
    assert (a.runs, a.applied, a.unknown) == (n, n, [])
    assert errors == []
    record(
        "shutdown",
        name="SIGTERM of the only replica, then restart",
        **a.figures(),
        sigterms=1,
        journal_left_at_stop=left,
    )
