"""What every part of the engine shares: its wiring (store, gate, step runner,
pager), the leases of the runs this process executes, the rules as they stand now,
the kill switch, a run's step context and its bound logger.

The parts (engine/fire.py, undo.py, guarding.py, approvals.py, recovery.py) are
mixins of ``EngineBase``; engine/engine.py composes them into ``Engine``.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from remediator import logs
from remediator.background import Background
from remediator.engine import targets
from remediator.engine.gate import Gate
from remediator.engine.rules import BlastRadius, Rule, RuleSet
from remediator.engine.run_pages import RunPager
from remediator.engine.runner import StepRunner
from remediator.errors import LeaseLost
from remediator.metrics import Metrics
from remediator.paging.base import PageContent
from remediator.paging.outbox import Outbox
from remediator.runbook_api.context import AlertView, Clients, Mode, StepContext
from remediator.runbook_api.registry import Registry
from remediator.runbook_api.steps import Runbook
from remediator.settings import Settings
from remediator.state.records import Run, StepRecord
from remediator.state.store import StateStore

if TYPE_CHECKING:
    from remediator.engine.upkeep import Upkeep
    from remediator.engine.verify import Verifier

log = logs.get("remediator.engine")

PAUSE_FLAG = "paused"
LOCK_TTL = 900.0


def run_log(run: Run, logger: Any = log) -> Any:
    """``logger`` with the run's context bound: every line about a run carries its
    id, rule, fingerprint and alertname."""
    return logger.bind(
        run_id=run.id,
        rule=run.rule,
        fingerprint=run.fingerprint,
        alertname=run.alertname,
    )


class EngineBase:
    # Set by Engine (they take the whole engine): maintenance and verification.
    upkeep: Upkeep
    verifier: Verifier

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
        self.store = store
        self.registry = registry
        self.metrics = metrics
        self.settings = settings
        self.clients = clients
        self.outbox = outbox
        self.owner = owner
        self.rules = rules
        self.lease = settings.engine.lease
        self.pager = RunPager(store, outbox, settings)
        # lease_until of each run we execute, as we last wrote it: lets the per-step
        # fence skip its round trip while the lease is young (see StepRunner._fence).
        self._leases: dict[str, float] = {}
        self.gate = Gate(
            store,
            metrics,
            owner=owner,
            lease=settings.engine.lease,
            leases=self._leases,
            mode_now=self._mode_now,
            blast_for=self._blast_for,
        )
        self.steps = StepRunner(
            store, metrics, self.gate, owner=owner, lease=settings.engine.lease, leases=self._leases
        )
        # Runs this process is executing right now (fire or undo). Only these get their
        # lease renewed: a run whose execution died here (the state store went away
        # under it) must let its lease run out, so that this or another replica
        # resumes it. Renewing every run we own would keep such a run "running" forever.
        self._active: Counter[str] = Counter()
        # Set by the daemon: maintenance hands its work to these tasks instead of
        # running it inline (a harness leaves it None and runs everything in turn).
        self.background: Background | None = None

    # ----------------------------------------------------------------- leases

    @contextmanager
    def _executing(self, run_id: str) -> Iterator[None]:
        self._active[run_id] += 1
        try:
            yield
        finally:
            self._active[run_id] -= 1
            if self._active[run_id] <= 0:
                del self._active[run_id]
                self._leases.pop(run_id, None)

    async def renew_leases(self) -> None:
        """Extend the lease of every run this process is executing right now."""
        until = time.time() + self.lease
        for run_id in list(self._active):
            if await self.store.update_run(run_id, expect_owner=self.owner, lease_until=until):
                if run_id in self._active:
                    self._leases[run_id] = until
            else:
                self._leases.pop(run_id, None)  # taken over: the next fence stops the run

    def _lease_lost(self, run: Run, exc: LeaseLost) -> None:
        run_log(run).warning("lease_lost", detail=str(exc))

    # ------------------------------------------------------------------ rules

    def _current_rule(self, name: str) -> Rule | None:
        ruleset = self.rules()
        return ruleset.get(name) if ruleset is not None else None

    def _mode_now(self, ctx: StepContext) -> Mode:
        """The effective mode as the config and rules say now, not at run start."""
        rule = self._current_rule(ctx.rule)
        rule_mode = rule.mode if rule is not None else None
        return "dry-run" if "dry-run" in (self.settings.mode, rule_mode, ctx.mode) else "live"

    def _blast_for(self, rule_name: str) -> BlastRadius | None:
        rule = self._current_rule(rule_name)
        return rule.max_targets if rule is not None else None

    # ------------------------------------------------------------ kill switch

    async def is_paused(self) -> bool:
        flag = await self.store.get_flag(PAUSE_FLAG)
        return flag is not None and flag["value"] == "1"

    async def set_paused(self, paused: bool, who: str) -> None:
        await self.store.set_flag(PAUSE_FLAG, "1" if paused else "0", who)
        self.metrics.paused.set(1 if paused else 0)
        log.warning("kill_switch", paused=paused, by=who)

    # ---------------------------------------------------------------- context

    def _target(self, runbook: Runbook, labels: Mapping[str, str], params: BaseModel) -> str:
        return targets.run_target(runbook, labels, params, self.clients)

    def _ctx(self, run: Run, runbook: Runbook, steps: list[StepRecord]) -> StepContext:
        ctx = self._bare_ctx(run, runbook, steps)
        ctx.target = run.target
        ctx.undo_reason = run.undo_reason or ("resolved" if run.undo_state == "requested" else None)
        return ctx

    def _bare_ctx(self, run: Run, runbook: Runbook, steps: list[StepRecord]) -> StepContext:
        params = runbook.params.model_validate(run.params)
        results: dict[str, Mapping[str, Any]] = {}
        for s in steps:
            if s.result and s.outcome in ("applied", "skipped"):
                results[s.name] = s.data
        return StepContext(
            run_id=run.id,
            rule=run.rule,
            runbook=runbook.id,
            alert=AlertView(
                alertname=run.alertname,
                fingerprint=run.fingerprint,
                starts_at=run.starts_at,
                labels=run.labels,
                annotations=run.annotations,
                generator_url=run.generator_url,
                source=run.source,
            ),
            params=params,
            mode=run.mode,
            clients=self.clients,
            results=results,
        )

    # ------------------------------------------------------------- mitigation

    def _observe_mitigation(self, run: Run) -> Run | None:
        """The first mitigation of a run: feed the histogram and return the run with
        its time noted (not yet stored); None if it was mitigated before."""
        if run.mitigated_at:
            return None
        now = time.time()
        self.metrics.time_to_mitigation.labels(run.runbook).observe(now - run.received_at)
        return replace(run, mitigated_at=now)

    async def _mitigated(self, run: Run) -> Run:
        """Note and store the first mitigation of a run; the run as it now stands."""
        mitigated = self._observe_mitigation(run)
        if mitigated is None:
            return run
        await self.store.update_run(run.id, mitigated_at=mitigated.mitigated_at)
        return mitigated

    async def run_page(
        self, run: Run, runbook: Runbook | None, headline: str, *, at_resolve: bool = False
    ) -> PageContent:
        """The page for ``run`` as its steps and approvals stand now."""
        return await self.pager.content(run, runbook, headline, at_resolve=at_resolve)
