"""The circuit breaker: its policy (engine/guards.py) over the store's atomic write
(``StateStore.update_circuit``), on both backends."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from remediator.engine.guards import circuit_after, record_circuit_result
from remediator.state.guards import CLOSED, Circuit
from remediator.state.store import StateStore


def test_failures_below_the_threshold_keep_the_circuit_closed_and_counting() -> None:
    after = circuit_after(Circuit("closed", 1, None), 100.0, ok=False, threshold=3)
    assert after == Circuit("closed", 2, None)


def test_the_failure_that_reaches_the_threshold_opens_the_circuit_at_that_time() -> None:
    after = circuit_after(Circuit("closed", 2, None), 100.0, ok=False, threshold=3)
    assert after == Circuit("open", 3, 100.0)


def test_a_failure_of_an_open_circuit_keeps_the_time_it_opened() -> None:
    after = circuit_after(Circuit("open", 3, 50.0), 100.0, ok=False, threshold=3)
    assert after == Circuit("open", 4, 50.0)


def test_a_failed_half_open_trial_opens_the_circuit_again_below_the_threshold() -> None:
    after = circuit_after(Circuit("half-open", 1, 50.0), 100.0, ok=False, threshold=3)
    assert after == Circuit("open", 2, 100.0)


def test_a_success_closes_the_circuit_and_forgets_the_failures() -> None:
    assert circuit_after(Circuit("half-open", 5, 50.0), 100.0, ok=True, threshold=3) == CLOSED


@pytest.fixture
async def store(state_url: str) -> AsyncIterator[StateStore]:
    s = await StateStore.open(state_url)
    try:
        yield s
    finally:
        await s.close()


async def test_the_circuit_opens_once_at_the_threshold_and_is_stored(store: StateStore) -> None:
    answers = [await record_circuit_result(store, "RB-T", False, threshold=3) for _ in range(4)]
    assert answers == [("closed", False), ("closed", False), ("open", True), ("open", False)]
    row = await store.get_circuit("RB-T")
    assert row is not None and (row["state"], row["failures"]) == ("open", 4)
    assert row["opened_at"] is not None


async def test_a_failed_trial_reopens_and_a_success_closes(store: StateStore) -> None:
    for _ in range(2):
        await record_circuit_result(store, "RB-T", False, threshold=2)
    assert await store.half_open_circuit("RB-T", reset_after=0.0)
    assert await record_circuit_result(store, "RB-T", False, threshold=2) == ("open", True)
    assert await store.half_open_circuit("RB-T", reset_after=0.0)
    assert await record_circuit_result(store, "RB-T", True, threshold=2) == ("closed", False)
    row = await store.get_circuit("RB-T")
    assert row is not None and (row["state"], row["failures"], row["opened_at"]) == (
        "closed",
        0,
        None,
    )
