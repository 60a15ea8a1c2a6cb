"""A run's hand-over commits three things together, on both backends: the run's new
state, its target lock released, and (after a success) its runbook's circuit closed.
The lock and the circuit are written even when another replica owns the run now."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from remediator.engine.guards import record_circuit_result
from remediator.state.store import StateStore


def run_row(run_id: str) -> dict[str, Any]:
    now = time.time()
    return {
        "id": run_id, "rule": "r", "runbook": "RB-T", "fingerprint": run_id,
        "starts_at": "2026-11-28T00:20:04Z", "alertname": "A", "target": "RB-T:x",
        "mode": "live", "state": "running", "alert": {"labels": {}}, "params": {},
        "severity": "P2", "received_at": now, "created_at": now, "updated_at": now,
        "owner": "me", "lease_until": now + 30,
    }  # fmt: skip


@pytest.fixture
async def store(state_url: str) -> AsyncIterator[StateStore]:
    """A run r1 owned by "me" holding the lock on RB-T:x, and RB-T's circuit with two
    failures counted."""
    s = await StateStore.open(state_url)
    try:
        assert await s.create_run(run_row("r1"))
        assert await s.acquire_lock("RB-T:x", "r1", "me", 60)
        for _ in range(2):
            await record_circuit_result(s, "RB-T", False, threshold=5)
        circuit = await s.get_circuit("RB-T")
        assert circuit is not None and circuit["failures"] == 2
        yield s
    finally:
        await s.close()


async def test_hand_over_releases_the_lock_and_closes_the_circuit_in_one_commit(store):
    current = await store.hand_over_run(
        "r1", "me", "mitigated", release_lock="RB-T:x", close_circuit="RB-T",
        mitigated_at=123.5,
    )  # fmt: skip
    assert current is not None
    assert (current["state"], current["outcome"]) == ("waiting", "mitigated")
    assert current["mitigated_at"] == 123.5
    circuit = await store.get_circuit("RB-T")
    assert circuit is not None and (circuit["state"], circuit["failures"]) == ("closed", 0)
    # The lock is free: another run takes the target at once.
    assert await store.acquire_lock("RB-T:x", "r2", "me", 60)


async def test_a_failed_run_hands_over_without_touching_the_circuit(store):
    current = await store.hand_over_run("r1", "me", "failed", release_lock="RB-T:x")
    assert current is not None and current["outcome"] == "failed"
    circuit = await store.get_circuit("RB-T")
    assert circuit is not None and circuit["failures"] == 2
    assert await store.acquire_lock("RB-T:x", "r2", "me", 60)


async def test_a_run_taken_over_still_frees_its_lock_but_keeps_its_state(store):
    await store.update_run("r1", owner="other-replica")  # another replica resumed it
    current = await store.hand_over_run(
        "r1", "me", "mitigated", release_lock="RB-T:x", close_circuit="RB-T"
    )
    assert current is None  # not ours any more
    row = await store.get_run("r1")
    assert row is not None and (row["state"], row["outcome"]) == ("running", None)
    assert await store.acquire_lock("RB-T:x", "r2", "me", 60)
