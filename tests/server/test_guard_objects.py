"""Each guard a run passes before it acts (engine/guards.py), against a real store on
both backends, and the list they form: the engine's order, the metric's names."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest
from pydantic import BaseModel

from remediator.engine.guards import (
    GUARDS,
    BlastRadiusGuard,
    CircuitGuard,
    CooldownGuard,
    GuardContext,
    LockGuard,
    RateLimitGuard,
    first_block,
    record_circuit_result,
)
from remediator.engine.rules import BlastRadius, Rule
from remediator.metrics import GUARDS as GUARD_NAMES
from remediator.metrics import Metrics
from remediator.settings import EngineSettings, Settings
from remediator.state.store import StateStore

TARGET = "RB-T:db1"


class NoParams(BaseModel):
    pass


def make_rule(cooldown: float = 0.0, max_runs_per_hour: int | None = None, **kw: Any) -> Rule:
    return Rule(
        name="r", matchers=(), runbook="RB-T", params=NoParams(), mode=None,
        cooldown=cooldown, max_runs_per_hour=max_runs_per_hour, source="test", **kw,
    )  # fmt: skip


def run_row(run_id: str, created_at: float, target: str = TARGET, **kw: Any) -> dict[str, Any]:
    return {
        "id": run_id, "rule": "r", "runbook": "RB-T", "fingerprint": run_id,
        "starts_at": "2026-11-28T00:20:04Z", "alertname": "A", "target": target,
        "mode": "live", "state": "running", "alert": {"labels": {}}, "params": {},
        "severity": "P2", "received_at": created_at, "created_at": created_at,
        "updated_at": created_at, "owner": "me", "lease_until": created_at + 30, **kw,
    }  # fmt: skip


async def add_run(store: StateStore, run_id: str, created_at: float, **kw: Any) -> None:
    assert await store.create_run(run_row(run_id, created_at, **kw))


async def add_step(store: StateStore, run_id: str) -> None:
    """A run that passed its guards has a step row."""
    now = time.time()
    await store.record_step({
        "run_id": run_id, "phase": "fire", "seq": 0, "name": "diagnose", "kind": "diagnose",
        "mutates": False, "approval": "auto", "state": "done", "outcome": "applied",
        "rendered": "", "result": None, "changes": None, "reason": None, "attempts": 1,
        "started_at": now, "finished_at": now,
    })  # fmt: skip


@pytest.fixture
async def store(state_url: str) -> AsyncIterator[StateStore]:
    s = await StateStore.open(state_url)
    try:
        yield s
    finally:
        await s.close()


def context(
    store: StateStore,
    run_id: str = "new",
    *,
    rule: Rule | None = None,
    created_at: float | None = None,
    circuit_reset: float = 600.0,
    metrics: Metrics | None = None,
    owner: str = "me",
) -> GuardContext:
    now = time.time()
    return GuardContext(
        run_id=run_id,
        rule=rule if rule is not None else make_rule(),
        runbook="RB-T",
        target=TARGET,
        created_at=created_at if created_at is not None else now,
        now=now,
        owner=owner,
        store=store,
        settings=Settings(engine=EngineSettings(circuit_reset=circuit_reset)),
        metrics=metrics if metrics is not None else Metrics(),
    )


async def open_circuit(store: StateStore) -> None:
    for _ in range(2):
        await record_circuit_result(store, "RB-T", False, threshold=2)


def circuit_gauge(metrics: Metrics) -> float | None:
    return metrics.registry.get_sample_value("remediator_circuit_state", {"runbook": "RB-T"})


# ------------------------------------------------------------------ the list


def test_the_guards_run_in_the_engines_order_under_the_metrics_names() -> None:
    names = [g.name for g in GUARDS]
    assert names == ["circuit_open", "lock_busy", "cooldown", "rate_limit", "blast_radius"]
    assert set(names) <= set(GUARD_NAMES)


# ------------------------------------------------------------------ circuit


async def test_a_runbook_with_no_circuit_row_passes_the_circuit(store: StateStore) -> None:
    assert not await CircuitGuard().blocks(context(store))


async def test_an_open_circuit_blocks_until_its_reset_time(store: StateStore) -> None:
    await open_circuit(store)
    assert await CircuitGuard().blocks(context(store, circuit_reset=600.0))
    row = await store.get_circuit("RB-T")
    assert row is not None and row["state"] == "open"


async def test_after_the_reset_one_run_passes_as_the_half_open_trial(store: StateStore) -> None:
    await open_circuit(store)
    metrics = Metrics()
    first = context(store, "t1", circuit_reset=0.0, metrics=metrics)
    assert not await CircuitGuard().blocks(first)
    row = await store.get_circuit("RB-T")
    assert row is not None and row["state"] == "half-open"
    assert circuit_gauge(metrics) == 1
    # A run that read the circuit open just before, deciding at the same time, does
    # not get a trial too: one caller wins the move to half-open.
    racing = replace(context(store, "t2", circuit_reset=0.0), circuit="open")
    assert await CircuitGuard().blocks(racing)


async def test_the_circuit_read_with_the_runs_start_facts_is_not_read_again(
    store: StateStore,
) -> None:
    await open_circuit(store)
    told_closed = replace(context(store), circuit="closed")
    assert not await CircuitGuard().blocks(told_closed)
    told_open = replace(context(store), circuit="open")
    assert await CircuitGuard().blocks(told_open)


# ------------------------------------------------------------------ lock


async def test_the_lock_lets_one_run_per_target_through(store: StateStore) -> None:
    lock = LockGuard(ttl=60.0)
    first, second = context(store, "r1"), context(store, "r2", owner="other-replica")
    assert not await lock.blocks(first)
    assert await lock.blocks(second)
    assert not await lock.blocks(first)  # its own lock, taken again
    await lock.release(first)
    assert not await lock.blocks(second)


async def test_an_expired_lock_is_taken_over(store: StateStore) -> None:
    assert not await LockGuard(ttl=-1.0).blocks(context(store, "r1"))
    assert not await LockGuard(ttl=60.0).blocks(context(store, "r2"))


# ------------------------------------------------------------------ cooldown


async def test_a_run_that_acted_on_the_target_within_the_cooldown_blocks(
    store: StateStore,
) -> None:
    await add_run(store, "old", time.time() - 10)
    await add_step(store, "old")
    assert await CooldownGuard().blocks(context(store, rule=make_rule(cooldown=300)))


async def test_the_cooldown_ignores_older_runs_other_targets_and_runs_still_deciding(
    store: StateStore,
) -> None:
    await add_run(store, "long-ago", time.time() - 600)
    await add_step(store, "long-ago")
    await add_run(store, "elsewhere", time.time() - 10, target="RB-T:db2")
    await add_step(store, "elsewhere")
    await add_run(store, "deciding", time.time() - 5)  # no step yet
    assert not await CooldownGuard().blocks(context(store, rule=make_rule(cooldown=300)))


async def test_a_rule_without_cooldown_or_a_run_without_rule_passes_it(
    store: StateStore,
) -> None:
    await add_run(store, "old", time.time() - 10)
    await add_step(store, "old")
    assert not await CooldownGuard().blocks(context(store, rule=make_rule(cooldown=0)))
    assert not await CooldownGuard().blocks(replace(context(store), rule=None))


# ------------------------------------------------------------------ rate limit


async def test_the_hourly_budget_counts_the_runs_created_before_this_one(
    store: StateStore,
) -> None:
    now = time.time()
    for i in range(2):
        await add_run(store, f"r{i}", now - 100 + i, target=f"RB-T:db{i}")
    await add_run(store, "later", now + 5, target="RB-T:db9")  # created after: not counted
    rule = make_rule(max_runs_per_hour=2)
    assert await RateLimitGuard().blocks(context(store, rule=rule, created_at=now))
    assert not await RateLimitGuard().blocks(context(store, rule=make_rule(max_runs_per_hour=3)))
    # The second run, deciding in creation order, saw only the first.
    assert not await RateLimitGuard().blocks(context(store, "r1", rule=rule, created_at=now - 99))


async def test_blocked_runs_and_runs_older_than_an_hour_do_not_spend_the_budget(
    store: StateStore,
) -> None:
    now = time.time()
    await add_run(store, "blocked", now - 50)
    await store.update_run("blocked", state="done", outcome="blocked", blocked_by="cooldown")
    await add_run(store, "old", now - 4000, target="RB-T:db2")
    rule = make_rule(max_runs_per_hour=1)
    assert not await RateLimitGuard().blocks(context(store, rule=rule, created_at=now))


# ------------------------------------------------------------------ blast radius


async def test_the_blast_radius_is_left_to_the_gate(store: StateStore) -> None:
    """Counted before acting it could not be atomic with the change; the gate's
    transaction decides it (tests/reliability/test_gate_blast_radius.py)."""
    rule = make_rule(max_targets=BlastRadius(count=0, per=3600.0))
    assert not await BlastRadiusGuard().blocks(context(store, rule=rule))


# ------------------------------------------------------------------ the walk


async def test_the_first_guard_that_blocks_names_the_block(store: StateStore) -> None:
    await open_circuit(store)
    assert await store.acquire_lock(TARGET, "holder", "other-replica", 60)
    assert await first_block(context(store)) == "circuit_open"


async def test_a_guard_after_the_lock_blocking_gives_the_lock_back(store: StateStore) -> None:
    await add_run(store, "old", time.time() - 10)
    await add_step(store, "old")
    blocked = context(store, "new", rule=make_rule(cooldown=300))
    assert await first_block(blocked) == "cooldown"
    assert await store.acquire_lock(TARGET, "another", "other-replica", 60)


async def test_a_run_every_guard_passes_holds_its_targets_lock(store: StateStore) -> None:
    assert await first_block(context(store, "new")) is None
    assert not await store.acquire_lock(TARGET, "another", "other-replica", 60)
