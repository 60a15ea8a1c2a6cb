"""The state store: journal, runs, steps, approvals, guards, kill switch, outbox.

One facade over either backend, composed of one class per aggregate (each in its
own module). Every write that decides "who does this" is a conditional statement
(a unique key, or ``UPDATE ... WHERE state = ...``), so the answer is the same with
one replica or ten: exactly one of them wins.

The store never decides policy (what to run, whether a guard blocks, when a circuit
opens: engine/guards.py); it only records and claims. Times are unix seconds; JSON
columns hold text.
"""

from __future__ import annotations

from remediator.state.approvals import ApprovalStore
from remediator.state.backend import open_backend
from remediator.state.flags import GATE_LOCK, FlagStore
from remediator.state.guards import GuardStore
from remediator.state.occurrences import OccurrenceStore
from remediator.state.outbox import PageStore
from remediator.state.runs import RunStore
from remediator.state.steps import StepStore, step_upsert
from remediator.state.store_base import dumps, loads

__all__ = ["GATE_LOCK", "StateStore", "dumps", "loads", "step_upsert"]


class StateStore(
    OccurrenceStore, RunStore, StepStore, ApprovalStore, GuardStore, FlagStore, PageStore
):
    """The whole store: one class per aggregate (journal, runs, steps, approvals,
    guards, flags and leases, outbox), composed over one backend."""

    @classmethod
    async def open(cls, url: str) -> StateStore:
        return cls(await open_backend(url))

    async def close(self) -> None:
        await self.backend.close()

    async def ping(self) -> None:
        await self.backend.ping()
