"""The crash cells of the kill-switch matrix, with real processes and a Postgres state store.

Every cell uses the shipped RB-02 against a fresh DawsOS database whose triggers log
each change (``rel_changes``), and a provider status page that answers slowly, so
runs are in the middle of a step when a replica dies or stalls. ``remediator pause``
and ``remediator resume`` are the real CLI against the same state store.

(a) Resumed after kill -9: runs in flight, both firing (in their diagnosis) and
    undoing (a resolve's DLQ replay), when every replica is killed; ``pause`` runs
    while they are all down; after the restart nothing in the target changes for
    several lease periods: the firing runs are parked, the undos wait. After
    ``resume`` the deferred work runs, each mutation exactly once.
(b) Taken over after a lease: the replica executing a run freezes (SIGSTOP) past its
    lease; ``pause`` meanwhile; another replica takes the run over and parks it; the
    frozen one, thawed, must not act (its lease fence refuses). After ``resume``:
    exactly one mitigation.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from remediator.testing import resolved
from tests.reliability._bench import RULE, World, audit, rows_of, world
from tests.reliability._cluster import ROOT, Cluster, Sender, settle

LEASE = 2.0  # the Cluster's engine.lease
DELAY = 1.5  # the provider status page answers after this long


async def remediator_cli(cluster: Cluster, command: str) -> str:
    """``python -m remediator pause|resume --config FILE`` against the cluster's state."""
    env = {k: v for k, v in os.environ.items() if k != "REMEDIATOR_CONFIG"}
    env["PYTHONPATH"] = str(ROOT)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "remediator",
        command,
        "--config",
        str(cluster.replicas[0].config),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    text = out.decode(errors="replace")
    assert proc.returncode == 0, f"remediator {command} exited {proc.returncode}: {text}"
    return text


async def poll(conn: asyncpg.Connection, sql: str, *args: Any, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await conn.fetchval(sql, *args)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"never true after {timeout} s: {sql} {args}")
        await asyncio.sleep(0.05)


def flips(changes: list[dict[str, Any]]) -> Counter[tuple[str, str, str]]:
    """(row, old, new) -> how many times the target row changed that way."""
    return Counter((c["row_id"], c["old"], c["new"]) for c in changes if c["col"] == "active")


def _providers_of(w: World, idx: range) -> list[str]:
    return [w.providers[i] for i in idx]


@pytest.mark.timeout(120)
async def test_kill_9_all_replicas_pause_while_down_nothing_changes_until_resume_then_once(
    request: pytest.FixtureRequest, pg_schema_dsn: str, tmp_path: Path
) -> None:
    undoing, firing = range(0, 3), range(3, 9)
    async with world(request.config, 9, delay=DELAY) as w:
        cluster = Cluster(tmp_path, pg_schema_dsn, rules_yaml=w.rules_yaml(), targets=w.targets())
        state = await asyncpg.connect(pg_schema_dsn)
        try:
            await cluster.start_all()
            async with httpx.AsyncClient(timeout=30) as client:
                sender = Sender(cluster, client)
                # Three alerts mitigated first: their resolves will be undoing at the kill.
                for i in undoing:
                    assert await sender.send(i % 3, [w.alert(i)])
                await settle(pg_schema_dsn, timeout=30)
                assert len(await w.changes()) == 2 * len(undoing)
                # Six new alerts (diagnosing: the status page takes DELAY s) and the
                # three resolves (replaying the DLQ: the same status page) at once.
                batch = [w.alert(i) for i in firing] + [resolved(w.alert(i)) for i in undoing]
                sent = await asyncio.gather(*(sender.send(k % 3, [a]) for k, a in enumerate(batch)))
                assert all(sent)
                await poll(
                    state,
                    "SELECT count(*) = $1 FROM steps WHERE state = 'started'"
                    " AND name IN ('provider_status', 'replay_dlq')",
                    len(batch),
                )
                in_flight = await state.fetch(
                    "SELECT id, state FROM runs WHERE state IN ('running', 'undoing')"
                )
                for i in range(3):
                    cluster.kill(i)
                before = await w.changes()
                assert len(before) == 2 * len(undoing)  # only the first three mitigations
                assert "paused" in await remediator_cli(cluster, "pause")
                await cluster.start_all()

                # Every run in flight is taken over: the firing ones park at their
                # mutation, the undos go back to waiting. Nothing changes meanwhile.
                await poll(
                    state,
                    "SELECT count(*) = $1 FROM runs WHERE state = 'parked'",
                    len(firing),
                    timeout=40,
                )
                await poll(
                    state,
                    "SELECT count(*) = $1 FROM runs WHERE state = 'waiting'"
                    " AND undo_state = 'requested'",
                    len(undoing),
                )
                await asyncio.sleep(3 * LEASE)  # several lease periods, many maintenance passes
                during = await w.changes()
                parked = await state.fetch("SELECT id, state FROM runs WHERE state = 'parked'")
                deferred = await state.fetch(
                    "SELECT name, phase FROM steps WHERE state = 'deferred' ORDER BY name"
                )

                assert "resumed" in await remediator_cli(cluster, "resume")
                await settle(pg_schema_dsn, timeout=40)
                a = await audit(w, pg_schema_dsn, sender)
            after = await w.changes()
            runs = [dict(r) for r in await state.fetch("SELECT * FROM runs WHERE rule = $1", RULE)]
            resumed = cluster.count_events("run_resumed")
            errors = cluster.internal_errors()
        finally:
            await state.close()
            await cluster.close()

    assert len(in_flight) == len(batch)
    assert during == before, "the target changed while paused"
    assert len(parked) == len(firing)
    assert Counter((d["phase"], d["name"]) for d in deferred) == {
        ("fire", "pause_alerts"): len(firing),
        ("resolve", "replay_dlq"): len(undoing),
    }
    assert resumed >= len(batch)
    # After resume: each deferred mitigation once, each deferred undo once.
    want: Counter[tuple[str, str, str]] = Counter()
    for p in _providers_of(w, firing):
        want.update((r, "true", "false") for r in rows_of(p))
    for p in _providers_of(w, undoing):
        want.update((r, "true", "false") for r in rows_of(p))
        want.update((r, "false", "true") for r in rows_of(p))
    assert flips(after) == want
    assert a.problems() == {}, a.problems()
    assert (a.runs, a.applied, a.undone, len(a.unknown)) == (9, 9, 3, 0)
    assert {(r["state"], r["outcome"]) for r in runs} == {
        ("waiting", "mitigated"),
        ("done", "mitigated"),
    }
    assert errors == []


@pytest.mark.timeout(120)
async def test_a_run_taken_over_while_paused_is_parked_and_its_stalled_owner_does_not_act(
    request: pytest.FixtureRequest, pg_schema_dsn: str, tmp_path: Path
) -> None:
    async with world(request.config, 1, delay=DELAY) as w:
        cluster = Cluster(
            tmp_path, pg_schema_dsn, rules_yaml=w.rules_yaml(), targets=w.targets(), replicas=2
        )
        state = await asyncpg.connect(pg_schema_dsn)
        try:
            await cluster.start(0)
            async with httpx.AsyncClient(timeout=30) as client:
                sender = Sender(cluster, client)
                assert await sender.send(0, [w.alert(0)])
                run_id = await poll(
                    state,
                    "SELECT run_id FROM steps WHERE name = 'provider_status' AND state = 'started'",
                )
                first = await state.fetchval("SELECT owner FROM runs WHERE id = $1", run_id)
                cluster.freeze(0)  # stalls while its status request is in flight
                try:
                    assert "paused" in await remediator_cli(cluster, "pause")
                    await cluster.start(1)
                    # Replica 1 takes the run over once the lease ran out, diagnoses
                    # again and parks the run at its mutation.
                    await poll(
                        state,
                        "SELECT 1 FROM runs WHERE id = $1 AND state = 'parked' AND owner <> $2",
                        run_id,
                        first,
                        timeout=30,
                    )
                finally:
                    cluster.thaw(0)
                # Replica 0 wakes up mid-run, with the kill switch on and the run no
                # longer its own: its next step must be refused by the lease fence.
                deadline = time.monotonic() + 20
                while not any(
                    e["replica"] == 0 and e.get("event") == "lease_lost" for e in cluster.events()
                ):
                    assert time.monotonic() < deadline, cluster.tail(0)
                    await asyncio.sleep(0.1)
                await asyncio.sleep(2 * LEASE)
                during = await w.changes()
                # What replica 0 did with the run, up to here (after `resume` any
                # replica, replica 0 too, may go on with it legitimately).
                stale = [
                    e["event"]
                    for e in cluster.events()
                    if e["replica"] == 0 and e.get("run_id") == run_id
                ]
                still = await state.fetchrow("SELECT state, owner FROM runs WHERE id = $1", run_id)

                assert "resumed" in await remediator_cli(cluster, "resume")
                await settle(pg_schema_dsn, timeout=30)
                a = await audit(w, pg_schema_dsn, sender)
            after = await w.changes()
            steps = {
                r["name"]: dict(r)
                for r in await state.fetch(
                    "SELECT * FROM steps WHERE run_id = $1 AND phase = 'fire'", run_id
                )
            }
            run = await state.fetchrow("SELECT * FROM runs WHERE id = $1", run_id)
            errors = cluster.internal_errors()
        finally:
            await state.close()
            await cluster.close()

    assert during == [], "the target changed while paused"
    assert still is not None and still["state"] == "parked" and still["owner"] != first
    # Replica 0 started the run, and after the takeover did nothing more with it: not
    # the mutation, nor even the record of the diagnosis it had in flight.
    assert stale == ["run_started", "lease_lost"]
    assert flips(after) == Counter((r, "true", "false") for r in rows_of(w.providers[0]))
    assert a.problems() == {}, a.problems()
    assert (a.runs, a.applied, len(a.unknown)) == (1, 1, 0)
    assert steps["pause_alerts"]["outcome"] == "applied"
    assert (run["state"], run["outcome"]) == ("waiting", "mitigated")
    assert errors == []


@pytest.mark.timeout(120)
async def test_a_run_killed_mid_step_whose_resolve_came_meanwhile_settles_its_steps_and_undoes(
    request: pytest.FixtureRequest, pg_schema_dsn: str, tmp_path: Path
) -> None:
    """Replica 0 dies (kill -9) in the middle of a run's diagnosis; the resolve arrives
    at replica 1 meanwhile (the run is still ``running``: nothing to undo yet, the undo
    is only requested). Replica 1 resumes the run once the lease runs out: the step
    left ``started`` is settled (a read runs again), the run ends, and what it changed
    is undone. No step may stay ``started`` (for a mutation, that would hide a change
    of unknown outcome from the undo and from the human)."""
    async with world(request.config, 1, delay=DELAY) as w:
        cluster = Cluster(
            tmp_path, pg_schema_dsn, rules_yaml=w.rules_yaml(), targets=w.targets(), replicas=2
        )
        state = await asyncpg.connect(pg_schema_dsn)
        try:
            await cluster.start_all()
            async with httpx.AsyncClient(timeout=30) as client:
                sender = Sender(cluster, client)
                assert await sender.send(0, [w.alert(0)])
                run_id = await poll(
                    state,
                    "SELECT run_id FROM steps WHERE name = 'provider_status' AND state = 'started'",
                )
                owner = await state.fetchval("SELECT owner FROM runs WHERE id = $1", run_id)
                victim = next(r.index for r in cluster.replicas if f":{r.pid}:" in owner)
                cluster.kill(victim)
                assert await sender.send(1 - victim, [resolved(w.alert(0))])
                await poll(
                    state,
                    "SELECT 1 FROM runs WHERE id = $1 AND undo_state = 'requested'",
                    run_id,
                )
                await settle(pg_schema_dsn, timeout=40)
                a = await audit(w, pg_schema_dsn, sender)
            after = await w.changes()
            steps = [
                (r["phase"], r["name"], r["state"], r["outcome"])
                for r in await state.fetch(
                    "SELECT * FROM steps WHERE run_id = $1 ORDER BY phase, seq", run_id
                )
            ]
            run = await state.fetchrow("SELECT * FROM runs WHERE id = $1", run_id)
            errors = cluster.internal_errors()
        finally:
            await state.close()
            await cluster.close()

    assert all(s[2] == "done" for s in steps), steps
    assert a.problems() == {}, a.problems()
    assert (a.runs, a.applied, a.undone) == (1, 1, 1)
    assert (run["state"], run["undo_state"]) == ("done", "done")
    rows = rows_of(w.providers[0])
    assert flips(after) == Counter(
        [(r, "true", "false") for r in rows] + [(r, "false", "true") for r in rows]
    )
    assert errors == []
