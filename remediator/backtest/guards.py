"""The engine's guards, in simulated time, with the same rules and the same order.

The engine decides a run's guards in this order (``engine.guards.GUARDS``): the runbook's
circuit breaker, the target's lock, the rule's cooldown on that target, the rule's
hourly rate limit; then, at the run's first mutating step, the rule's blast radius
(``state/gate.py``). Each rule here mirrors the store query it stands for:

- cooldown: the last run of the rule on the target that passed its guards started
  less than ``cooldown`` seconds before (``last_run_for_target``);
- rate_limit: ``max_runs_per_hour`` runs of the rule that passed their guards were
  created in the hour up to now (``count_runs_since``), blocked ones not counted;
- lock_busy: another occurrence's run holds the target now. A run holds it only
  while its fire phase runs (the hand-over releases it), which takes no simulated
  time: so the lock stops the runs of distinct occurrences that start on the same
  target at the same evaluation, which the daemon's workers would process at once.
  Runs of one occurrence (several rules) go one after another, as ``Engine.process``
  runs them;
- blast_radius: the rule already mutated ``max_targets.count`` distinct targets in
  the last ``max_targets.per`` seconds, and this target is not one of them;
- circuit_open: the runbook's circuit opened after ``engine.circuit_failures`` live
  runs failed in a row, and ``engine.circuit_reset`` seconds have not passed (then
  one run is let through as the trial: a failure opens it again, a success closes it).

Kill switch and corroboration are not simulated (see ``report.ASSUMPTIONS``).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from remediator.engine.guards import GUARDS
from remediator.engine.rules import Rule

RATE_WINDOW = 3600.0  # max_runs_per_hour counts the last hour
# The guards the backtest decides, in the order a report lists them: the engine's
# (their names are those of guard_blocks_total).
SIMULATED = tuple(g.name for g in GUARDS)


@dataclass
class Circuit:
    state: str = "closed"  # closed | open | half-open
    failures: int = 0
    opened_at: float = 0.0


@dataclass
class _RuleBook:
    passed: deque[float] = field(default_factory=deque)  # start times, for the rate limit
    last_on_target: dict[str, float] = field(default_factory=dict)
    mutated: deque[tuple[float, str]] = field(default_factory=deque)  # (time, target)


class Guards:
    def __init__(self, *, circuit_failures: int, circuit_reset: float) -> None:
        self.circuit_failures = circuit_failures
        self.circuit_reset = circuit_reset
        self.circuits: dict[str, Circuit] = {}
        self._rules: dict[str, _RuleBook] = {}
        # target -> (time, occurrence) of the run whose fire phase holds it
        self._locks: dict[str, tuple[float, int]] = {}

    def _book(self, rule: str) -> _RuleBook:
        book = self._rules.get(rule)
        if book is None:
            book = self._rules[rule] = _RuleBook()
        return book

    def check(
        self, rule: Rule, runbook: str, target: str, now: float, occurrence: int
    ) -> str | None:
        """The first guard that blocks a run starting at ``now``, or None (it passes:
        the caller then calls ``admit_mutation`` if it mutates, and ``passed``)."""
        circuit = self.circuits.get(runbook)
        if circuit is not None and circuit.state == "open":
            if circuit.opened_at > now - self.circuit_reset:
                return "circuit_open"
            circuit.state = "half-open"  # this run is the trial
        held = self._locks.get(target)
        if held is not None and held[0] == now and held[1] != occurrence:
            return "lock_busy"
        book = self._book(rule.name)
        if rule.cooldown > 0:
            last = book.last_on_target.get(target)
            if last is not None and last > now - rule.cooldown:
                return "cooldown"
        if rule.max_runs_per_hour is not None:
            while book.passed and book.passed[0] < now - RATE_WINDOW:
                book.passed.popleft()
            if len(book.passed) >= rule.max_runs_per_hour:
                return "rate_limit"
        return None

    def admit_mutation(self, rule: Rule, target: str, now: float) -> bool:
        """The gate's blast radius at the run's first mutating step: may it act?"""
        limit = rule.max_targets
        book = self._book(rule.name)
        if limit is None:
            return True
        while book.mutated and book.mutated[0][0] < now - limit.per:
            book.mutated.popleft()
        targets = {t for _, t in book.mutated}
        if target not in targets and len(targets) >= limit.count:
            return False
        book.mutated.append((now, target))
        return True

    def passed(self, rule: Rule, target: str, now: float, occurrence: int) -> None:
        """A run passed every guard and acts: it counts for the guards of later runs."""
        book = self._book(rule.name)
        book.passed.append(now)
        book.last_on_target[target] = now
        self._locks[target] = (now, occurrence)

    def outcome(self, runbook: str, failed: bool, now: float) -> bool:
        """A live run's outcome, for the runbook's circuit; True if it opened it now."""
        circuit = self.circuits.setdefault(runbook, Circuit())
        if not failed:
            circuit.state, circuit.failures = "closed", 0
            return False
        circuit.failures += 1
        before = circuit.state
        if circuit.failures >= self.circuit_failures or before == "half-open":
            circuit.state = "open"
        if circuit.state == "open" and before != "open":
            circuit.opened_at = now
            return True
        return False
