"""Every past occurrence through the real rules and the guards, in simulated time.

Occurrences go in order of start. Each is matched with the loaded ``RuleSet`` (the
daemon's own index and matchers); each rule that selects it makes a run at the
occurrence's start, named by the runbook's real target (``engine/targets.py``),
decided by the guards (``guards.py``), and paged as ``paging.py`` says. A run that
passes acts as the runbook declares its fire phase: its auto mutating steps mutate
(live only), its approve steps ask for an approval. Every step succeeds, unless
``fail_rate`` says what share of live runs fail (drawn from a seeded generator, so
two backtests of one history agree).

The simulation is live, whatever the config's ``mode`` (the question is what the
daemon would do if let act); a rule that sets ``mode: dry-run`` stays dry-run: its
runs mutate nothing, so no blast radius, no circuit, and its P0 pages may fold.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from remediator.backtest.guards import SIMULATED, Guards
from remediator.backtest.occurrences import PastOccurrence
from remediator.backtest.paging import PageEvent
from remediator.engine.rules import Rule, RuleSet
from remediator.engine.targets import run_target
from remediator.runbook_api.context import Clients
from remediator.runbook_api.registry import Registry
from remediator.runbook_api.steps import Runbook
from remediator.settings import Settings

SEED = 20261207
# The severity of an escalation and of a circuit's page (Upkeep, Engine._circuit_failure).
ESCALATION_SEVERITY = "P1"
CIRCUIT_SEVERITY = "P1"


@dataclass
class RuleStats:
    rule: str
    runbook: str
    severity: str
    occurrences: int = 0
    runs: int = 0
    blocked: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SIMULATED, 0))
    approvals: int = 0
    pages: dict[str, int] = field(default_factory=dict)
    failed: int = 0
    escalated: int = 0
    max_duration_undos: int = 0
    circuit_opened: int = 0

    def page(self, severity: str) -> None:
        self.pages[severity] = self.pages.get(severity, 0) + 1


@dataclass(frozen=True)
class RunMark:
    """One run, for the timeline: when, and whether it acted."""

    time: float
    acted: bool


@dataclass
class Simulation:
    rules: list[RuleStats]
    unmatched: int
    pages: list[PageEvent]
    runs: list[RunMark]


@dataclass(frozen=True)
class _Shape:
    """What a runbook's fire phase does, as its steps declare it."""

    mutates: bool  # an auto step that mutates: it passes the gate (blast radius)
    approvals: int  # approve steps: each asks a human

    @classmethod
    def of(cls, runbook: Runbook) -> _Shape:
        return cls(
            mutates=any(s.mutates and s.approval == "auto" for s in runbook.steps),
            approvals=sum(1 for s in runbook.steps if s.approval == "approve"),
        )


class _Simulator:
    def __init__(
        self,
        ruleset: RuleSet,
        registry: Registry,
        settings: Settings,
        *,
        until: float,
        fail_rate: float,
        seed: int,
    ) -> None:
        self.ruleset = ruleset
        self.registry = registry
        self.until = until
        self.fail_rate = fail_rate
        self.rng = random.Random(seed)
        # Targets as the daemon names them with this config (RB-02's providers).
        self.clients = Clients(settings=settings)
        self.guards = Guards(
            circuit_failures=settings.engine.circuit_failures,
            circuit_reset=settings.engine.circuit_reset,
        )
        self.stats: dict[str, RuleStats] = {}
        for rule in ruleset.rules:
            runbook = self._runbook(rule)
            self.stats[rule.name] = RuleStats(rule.name, rule.runbook, runbook.severity)
        self.shapes = {rb.id: _Shape.of(rb) for rb in registry}
        self.pages: list[PageEvent] = []
        self.runs: list[RunMark] = []
        self.unmatched = 0
        self._seq = 0
        self._incidents: set[tuple[str, str]] = set()

    def _runbook(self, rule: Rule) -> Runbook:
        runbook = self.registry.get(rule.runbook)
        if runbook is None:  # rules.load refuses unknown runbooks
            raise ValueError(f"rule {rule.name}: unknown runbook {rule.runbook}")
        return runbook

    def _page(self, rule: Rule, time: float, severity: str, key: str, never_fold: bool) -> None:
        self._seq += 1
        self.pages.append(PageEvent(time, self._seq, rule.name, severity, key, never_fold))
        # A new page of that severity, not an update of one (an escalation is a P1 page
        # on the run's incident; a max_duration undo updates the run's own page).
        if (key, severity) not in self._incidents:
            self._incidents.add((key, severity))
            self.stats[rule.name].page(severity)

    def occurrence(self, index: int, occ: PastOccurrence) -> None:
        selected = self.ruleset.select(occ.labels)
        if not selected:
            self.unmatched += 1
        for rule in selected:
            self._run(index, occ, rule)

    def _run(self, index: int, occ: PastOccurrence, rule: Rule) -> None:
        runbook = self._runbook(rule)
        stats = self.stats[rule.name]
        stats.occurrences += 1
        now = occ.start
        target = run_target(runbook, occ.labels, rule.params, self.clients)
        live = rule.mode != "dry-run"
        shape = self.shapes[runbook.id]
        guard = self.guards.check(rule, runbook.id, target, now, index)
        if (
            guard is None
            and live
            and shape.mutates
            and not self.guards.admit_mutation(rule, target, now)
        ):
            guard = "blast_radius"
        self.runs.append(RunMark(now, guard is None))
        if guard is not None:
            stats.blocked[guard] += 1
            if guard != "circuit_open" or runbook.page_first:
                key = f"remediator/guard/{rule.name}/{guard}/{int(now // 3600)}"
                self._page(rule, now, runbook.severity, key, never_fold=False)
            return
        self.guards.passed(rule, target, now, index)
        stats.runs += 1
        stats.approvals += shape.approvals
        self._seq += 1
        key = f"remediator/run/{self._seq}"
        acted = live and shape.mutates
        self._page(rule, now, runbook.severity, key, never_fold=runbook.severity == "P0" and acted)
        after = runbook.escalate_after(rule.params) if runbook.escalate_after else None
        if after is not None and now + after <= self.until and occ.firing_at(now + after):
            stats.escalated += 1
            self._page(rule, now + after, ESCALATION_SEVERITY, key, never_fold=False)
        expiry = rule.max_duration
        if expiry is not None and now + expiry <= self.until and occ.firing_at(now + expiry):
            # Undone, and the run's incident updated: no new page.
            stats.max_duration_undos += 1
            self._page(rule, now + expiry, runbook.severity, key, never_fold=False)
        if not live:
            return
        failed = self.fail_rate > 0 and self.rng.random() < self.fail_rate
        stats.failed += failed
        if self.guards.outcome(runbook.id, failed, now):
            stats.circuit_opened += 1
            circuit = f"remediator/circuit/{runbook.id}"
            self._page(rule, now, CIRCUIT_SEVERITY, circuit, never_fold=False)


def simulate(
    occurrences: Sequence[PastOccurrence],
    ruleset: RuleSet,
    registry: Registry,
    settings: Settings,
    *,
    until: float,
    fail_rate: float = 0.0,
    seed: int = SEED,
) -> Simulation:
    """Run ``occurrences`` (sorted by start) through the rules and the guards."""
    sim = _Simulator(ruleset, registry, settings, until=until, fail_rate=fail_rate, seed=seed)
    for index, occ in enumerate(occurrences):
        sim.occurrence(index, occ)
    return Simulation(list(sim.stats.values()), sim.unmatched, sim.pages, sim.runs)
