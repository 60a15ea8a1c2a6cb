"""Guard policy: the guards a run passes before it acts, in order, and the circuit
breaker's state machine.

``GUARDS`` is the engine's order (engine/guarding.py walks it; the backtest lists
its guards in the same order): the runbook's circuit, the target's lock, the rule's
cooldown on that target, the rule's hourly budget, and last the rule's blast radius,
which only the safety gate can decide (see ``BlastRadiusGuard``). A guard's name is
the ``guard`` label of ``guard_blocks_total`` (``remediator.metrics.GUARDS``).

The store keeps what the guards read and writes each change atomically (the circuit
row: ``update_circuit``, a row-locked read and the write in one transaction); what
blocks a run, and what the circuit's next state is, is decided here.
"""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass
from typing import Literal, Protocol

from remediator.engine.base import LOCK_TTL
from remediator.engine.rules import Rule
from remediator.metrics import GUARDS as GUARD_NAMES
from remediator.metrics import Metrics
from remediator.settings import Settings
from remediator.state.guards import Circuit
from remediator.state.store import StateStore

RATE_WINDOW = 3600.0  # max_runs_per_hour counts the runs of the last hour


class _Unread(enum.Enum):
    UNREAD = "unread"


# The circuit's state was not read with the run's start facts: the guard reads it.
UNREAD = _Unread.UNREAD


@dataclass(frozen=True)
class GuardContext:
    """What the guards of one run need to decide."""

    run_id: str
    rule: Rule | None  # None: the run's rule is gone (a resumed run after a reload)
    runbook: str  # the runbook's id: its circuit
    target: str
    created_at: float  # the run's: the hourly budget counts the runs created before
    now: float
    owner: str  # this replica: the lock's holder
    store: StateStore
    settings: Settings
    metrics: Metrics
    # The runbook's circuit state (None: no row yet) if a new run read it with its
    # start facts (``run_start_facts``), saving a read; UNREAD for a resumed run.
    circuit: str | Literal[_Unread.UNREAD] | None = UNREAD


class Guard(Protocol):
    """One check before a run acts."""

    @property
    def name(self) -> str:
        """The guard's name on pages, in ``runs.blocked_by`` and in the metric."""
        ...

    async def blocks(self, ctx: GuardContext) -> bool:
        """Whether this guard stops the run. It may take something the run then
        holds (the target's lock), given back by ``release`` if a later guard
        stops the run."""
        ...

    async def release(self, ctx: GuardContext) -> None:
        """Give back what ``blocks`` took, when a later guard stopped the run."""
        ...


class CircuitGuard:
    """The runbook's circuit breaker: an open circuit blocks its runs until
    ``engine.circuit_reset`` has passed; then one run (one caller, across replicas)
    moves it to half-open and goes through as the trial."""

    name = "circuit_open"

    async def blocks(self, ctx: GuardContext) -> bool:
        state = ctx.circuit
        if state is UNREAD:
            circuit = await ctx.store.get_circuit(ctx.runbook)
            state = circuit["state"] if circuit is not None else None
        if state != "open":
            return False
        if not await ctx.store.half_open_circuit(ctx.runbook, ctx.settings.engine.circuit_reset):
            return True
        ctx.metrics.circuit_state.labels(ctx.runbook).set(1)
        return False

    async def release(self, ctx: GuardContext) -> None:
        """Nothing: the trial stays half-open (its outcome, or the next run, decides)."""


class LockGuard:
    """One run at a time per target. Taken before the cooldown: it serialises the
    decision per target, so of several runs for one target arriving together
    (several instances, several replicas) exactly one passes. Checked under the
    lock, the cooldown counts the runs that passed before this one, never those
    still deciding: counting those made concurrent runs block each other and none
    acted."""

    name = "lock_busy"

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl

    async def blocks(self, ctx: GuardContext) -> bool:
        return not await ctx.store.acquire_lock(ctx.target, ctx.run_id, ctx.owner, self.ttl)

    async def release(self, ctx: GuardContext) -> None:
        await ctx.store.release_lock(ctx.target, ctx.run_id)


class CooldownGuard:
    """The rule's cooldown per target: the last run of the rule on this target that
    passed its guards started less than ``cooldown`` seconds ago."""

    name = "cooldown"

    async def blocks(self, ctx: GuardContext) -> bool:
        if ctx.rule is None or ctx.rule.cooldown <= 0:
            return False
        last = await ctx.store.last_run_for_target(ctx.rule.name, ctx.target, ctx.run_id)
        return last is not None and bool(last.created_at > ctx.now - ctx.rule.cooldown)

    async def release(self, ctx: GuardContext) -> None:
        """Nothing taken."""


class RateLimitGuard:
    """The rule's hourly budget, counting only the runs created before this one that
    passed their guards: runs created together then pass in creation order up to
    the limit (every run that passed is counted by those after it, so the limit
    holds across replicas), instead of each counting all the others and none
    acting."""

    name = "rate_limit"

    async def blocks(self, ctx: GuardContext) -> bool:
        if ctx.rule is None or ctx.rule.max_runs_per_hour is None:
            return False
        passed = await ctx.store.count_runs_since(
            ctx.rule.name, ctx.now - RATE_WINDOW, before=(ctx.created_at, ctx.run_id)
        )
        return passed >= ctx.rule.max_runs_per_hour

    async def release(self, ctx: GuardContext) -> None:
        """Nothing taken."""


class BlastRadiusGuard:
    """The rule's blast radius: at most ``max_targets.count`` distinct targets
    changed per ``max_targets.per`` seconds. Listed here for its place in the order
    (after every guard above), but decided by the safety gate at the run's first
    mutating step, in the same transaction that records the step as started
    (``state.gate.admit_step``, under a per-rule advisory lock on Postgres): only
    there do replicas deciding at once count each other's changes. A count here,
    before the run acts, could not be atomic with the mutation, so it never blocks."""

    name = "blast_radius"

    async def blocks(self, ctx: GuardContext) -> bool:
        return False  # the gate decides (engine/gate.py)

    async def release(self, ctx: GuardContext) -> None:
        """Nothing taken."""


GUARDS: tuple[Guard, ...] = (
    CircuitGuard(),
    LockGuard(LOCK_TTL),
    CooldownGuard(),
    RateLimitGuard(),
    BlastRadiusGuard(),
)
assert {g.name for g in GUARDS} <= set(GUARD_NAMES), "names must be guard_blocks_total's"


async def first_block(ctx: GuardContext, guards: tuple[Guard, ...] = GUARDS) -> str | None:
    """The name of the first guard that stops the run, or None: it may act. What
    the guards before it took is given back, last taken first."""
    passed: list[Guard] = []
    for guard in guards:
        if await guard.blocks(ctx):
            for taken in reversed(passed):
                await taken.release(ctx)
            return guard.name
        passed.append(guard)
    return None


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
