"""Guards on a run before it acts (engine/guards.py: circuit breaker, per-target
lock, cooldown and the rule's hourly budget); a run they stop ends blocked, and a
human hears it once per rule, guard and hour. A live run that failed counts against
its runbook's circuit, and the circuit opening pages.
"""

from __future__ import annotations

import time
from dataclasses import replace

from remediator import commandline
from remediator.engine import guards
from remediator.engine.base import EngineBase, log, run_log
from remediator.engine.rules import Rule
from remediator.paging.base import PageContent
from remediator.runbook_api.steps import Runbook
from remediator.state.backend import Row
from remediator.state.records import Run


def _guard_limit(rule: Rule | None, guard: str) -> str:
    """The limit a guard enforces, in words for the page."""
    if guard == "rate_limit" and rule is not None:
        return f"at most {rule.max_runs_per_hour} runs per hour"
    if guard == "cooldown" and rule is not None:
        return f"cooldown {int(rule.cooldown)} s per target"
    if guard == "blast_radius" and rule is not None and rule.max_targets is not None:
        return (
            f"at most {rule.max_targets.count} distinct targets per {int(rule.max_targets.per)} s"
        )
    return {
        "lock_busy": "another run on the same target was in progress",
        "circuit_open": "the runbook's circuit breaker is open after repeated failures",
        "not_corroborated": "the alert's claim was not confirmed by Prometheus or the target",
        "kill_switch": "the kill switch is on",
    }.get(guard, guard)


class Guarding(EngineBase):
    async def _guard(
        self, run: Run, runbook: Runbook, rule: Rule | None, facts: Row | None
    ) -> str | None:
        """The first guard that blocks this run, or None (engine/guards.py, in the
        order of ``guards.GUARDS``). Mode changes are applied.

        ``facts`` (from run_start_facts, read just after the run was created) saves a
        new run two reads; a resumed run reads them here.
        """
        # The kill switch is not a guard here: a paused daemon still diagnoses, and
        # the gate parks the run at its first mutation (see engine/gate.py).
        ctx = guards.GuardContext(
            run_id=run.id,
            rule=rule,
            runbook=runbook.id,
            target=run.target,
            created_at=run.created_at,
            now=time.time(),
            owner=self.owner,
            store=self.store,
            settings=self.settings,
            metrics=self.metrics,
            circuit=guards.UNREAD if facts is None else facts["circuit"],
        )
        return await guards.first_block(ctx)

    async def _end_blocked(self, run: Run, runbook: Runbook, rule: Rule | None, guard: str) -> None:
        """End a run a guard stopped before it changed anything. One page per rule,
        guard and hour, P0 included: a human hears that the robot stood back, and a
        storm of blocked runs is not a page storm."""
        self.metrics.runbook_runs.labels(runbook.id, "blocked").inc()
        for a in await self.store.approvals_for_run(run.id):
            if a.state == "pending":  # a blocked run offers nothing to approve
                await self.store.transition_approval(a.id, "pending", "expired")
        await self.store.update_run(
            run.id,
            expect_owner=self.owner,
            state="done",
            outcome="blocked",
            blocked_by=guard,
            # The audit trail's "why": the guard's own bound, as the page says it.
            detail=f"{guard} engaged ({_guard_limit(rule, guard)})",
            finished_at=time.time(),
        )
        await self.store.release_lock(run.target, run.id)
        # An open circuit has its own page (it opened); a P0 still hears per rule.
        if guard != "circuit_open" or runbook.page_first:
            await self._guard_page(run, runbook, rule, guard)
        run_log(run).warning("run_blocked", guard=guard)

    async def _guard_page(self, run: Run, runbook: Runbook, rule: Rule | None, guard: str) -> None:
        """One page per rule, guard and clock hour: runs a guard stopped are not
        acted on, and a human must know, once, not once per run.

        The outbox's idempotency key makes it one page across runs and replicas.
        """
        hour = int(run.created_at // 3600)
        limit = _guard_limit(rule, guard)
        await self.pager.send(
            f"guard:{run.rule}:{guard}:{hour}",
            replace(run, blocked_by=guard),
            runbook,
            f"rule {run.rule}: {guard} engaged ({limit}); runs it stops are"
            " not acted on: act by hand if the alert needs it",
            steps=[],
            approvals=[],
            dedup_key=f"remediator/guard/{run.rule}/{guard}/{hour}",
        )

    async def _circuit_failure(self, runbook: Runbook) -> None:
        """A live run failed: count it, and page when that opens the circuit. (A
        success closes the circuit with the run's hand-over.)"""
        state, opened = await guards.record_circuit_result(
            self.store, runbook.id, False, self.settings.engine.circuit_failures
        )
        self.metrics.circuit_state.labels(runbook.id).set(
            {"closed": 0, "half-open": 1, "open": 2}[state]
        )
        if opened:
            log.error("circuit_opened", runbook=runbook.id)
            content = PageContent(
                dedup_key=f"remediator/circuit/{runbook.id}",
                severity="P1",
                title=f"[{runbook.id}] circuit breaker opened: "
                f"{self.settings.engine.circuit_failures} consecutive failed runs",
                alertname="RemediatorCircuitOpen",
                runbook=runbook.id,
                rule="-",
                mode="live",
                skipped=(
                    f"new {runbook.id} runs are blocked for "
                    f"{int(self.settings.engine.circuit_reset)} s, then one trial run",
                ),
                left_for_human=(
                    f"look at `{commandline.command(self.settings, 'actions')}` for the failures",
                ),
            )
            await self.outbox.enqueue(
                f"circuit:{runbook.id}:{int(time.time())}", "trigger", content
            )
