"""Guard policy: the circuit breaker's state machine.

The store keeps the circuit row and writes it atomically (``update_circuit``: a
row-locked read and the write in one transaction); what the next state is, is
decided here, in a pure function the store calls inside that transaction.
"""

from __future__ import annotations

import functools

from remediator.state.guards import Circuit
from remediator.state.store import StateStore


def circuit_after(prev: Circuit, now: float, *, ok: bool, threshold: int) -> Circuit:
    """The circuit after one run's result: a success closes it; ``threshold``
    consecutive failures open it, and so does the failure of a half-open trial."""
    if ok:
        return Circuit("closed", 0, None)
    failures = prev.failures + 1
    state = "open" if failures >= threshold else prev.state
    if prev.state == "half-open":
        state = "open"  # the trial run failed
    opened_at = now if state == "open" and prev.state != "open" else prev.opened_at
    return Circuit(state, failures, opened_at)


async def record_circuit_result(
    store: StateStore, runbook: str, ok: bool, threshold: int
) -> tuple[str, bool]:
    """Count consecutive failures; returns (state, opened_now)."""
    prev, new = await store.update_circuit(
        runbook, functools.partial(circuit_after, ok=ok, threshold=threshold)
    )
    return new.state, new.state == "open" and prev.state != "open"
