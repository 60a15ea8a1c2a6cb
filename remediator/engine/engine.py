"""The engine: from a journaled occurrence to runs, guards, steps, undo and pages.

    occurrence (firing)   -> match rules -> one run per (rule, fingerprint, startsAt)
                          -> guards (kill switch, circuit, rate limit, cooldown, lock)
                          -> fire phase: steps in order, each recorded before the next
                          -> page (trigger)
    occurrence (resolved) -> undo exactly what each run recorded, once -> page (resolve)
    approval decided      -> run that one step -> page (update)

Every "who does this" decision is a conditional write in the state store, so any
number of replicas can run this code against one Postgres and still act once.

``Engine`` composes the parts, one concern each:

    engine/base.py       wiring, leases, rules now, kill switch, step context
    engine/run_pages.py  the one way to page about a run
    engine/guarding.py   guards before a run acts, circuit failures, their pages
    engine/fire.py       occurrences to runs, the fire phase, park, hand-over
    engine/undo.py       resolve and undo
    engine/approvals.py  decisions and approved steps
    engine/recovery.py   resume a run another owner (or the kill switch) left
    engine/runner.py     StepRunner: one step, recorded, through the gate
"""

from __future__ import annotations

from collections.abc import Callable

from remediator.engine.approvals import Approvals, Decision
from remediator.engine.base import LOCK_TTL, PAUSE_FLAG
from remediator.engine.recovery import Recovery
from remediator.engine.rules import RuleSet
from remediator.engine.undo import UNDO_RECHECK
from remediator.engine.upkeep import Upkeep
from remediator.engine.verify import Verifier
from remediator.metrics import Metrics
from remediator.paging.outbox import Outbox
from remediator.runbook_api.context import Clients
from remediator.runbook_api.registry import Registry
from remediator.settings import Settings
from remediator.state.store import StateStore

__all__ = ["LOCK_TTL", "PAUSE_FLAG", "UNDO_RECHECK", "Decision", "Engine"]


class Engine(Recovery, Approvals):
    def __init__(
        self,
        *,
        store: StateStore,
        registry: Registry,
        metrics: Metrics,
        settings: Settings,
        clients: Clients,
        outbox: Outbox,
        owner: str,
        rules: Callable[[], RuleSet | None],
    ) -> None:
        super().__init__(
            store=store,
            registry=registry,
            metrics=metrics,
            settings=settings,
            clients=clients,
            outbox=outbox,
            owner=owner,
            rules=rules,
        )
        self.upkeep = Upkeep(self)
        self.verifier = Verifier(self)
