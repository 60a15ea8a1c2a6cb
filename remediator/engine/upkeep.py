"""Upkeep: the background pass every replica makes, and the work it hands off.

Renew the leases of the runs this process executes; then hand off (to the daemon's
``Background`` tasks, or run in turn under a test harness) runs whose owner died,
deferred undos, runs woken from a wait or parked by the kill switch, approved steps,
and mitigations past ``max_duration``. Approval expiry and escalations only page, so
they run here. Nothing here runs a step inline when a ``background`` is set.
"""

from __future__ import annotations

import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from remediator.engine.base import run_log
from remediator.runbook_api.steps import Runbook
from remediator.state.records import Run

if TYPE_CHECKING:
    from remediator.engine.engine import Engine


class Upkeep:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def expired_page(self, run: Run, runbook: Runbook) -> None:
        """max_duration: the mitigations are undone, the alert may still fire."""
        rule = self.engine._current_rule(run.rule)
        after = int(rule.max_duration) if rule is not None and rule.max_duration else 0
        await self.engine.pager.send(
            f"{run.id}:max_duration",
            run,
            runbook,
            f"no resolve after max_duration ({after} s): temporary mitigations"
            " undone; the alert may still be firing: look at it by hand",
        )

    async def expire_mitigations(self) -> None:
        """Undo, through the gate, what runs of rules with max_duration still hold."""
        ruleset = self.engine.rules()
        if ruleset is None:
            return
        now = time.time()
        for rule in ruleset.rules:
            if rule.max_duration is None:
                continue
            for run in await self.engine.store.runs_past_duration(
                rule.name, now - rule.max_duration
            ):
                if await self.engine.store.expire_run(run.id, now):
                    run_log(run).warning("max_duration_reached")
                    await self._hand_off(f"run:{run.id}", self.engine.try_undo(run.id))

    async def expire_approvals(self) -> None:
        for a in await self.engine.store.expire_approvals():
            run = await self.engine.store.get_run(a.run_id)
            runbook = self.engine.registry.get(run.runbook) if run else None
            if run is None:
                continue
            run_log(run).warning("approval_expired", approval=a.id, step=a.step)
            await self.engine.pager.send(
                f"{run.id}:expired:{a.id}",
                run,
                runbook,
                f"approval {a.id} for {a.step} expired unanswered",
            )

    async def run(self) -> None:
        """One pass of the background work every replica does.

        Renew the leases of the runs we are executing; then schedule (with a
        ``background`` set, as the daemon does) or run (a test harness): runs whose
        owner died or whose execution here was cut short, undos deferred by the kill
        switch or a resolve not yet confirmed, runs woken from a wait or parked by
        the kill switch, approved steps, and mitigations past their max_duration.
        Approval expiry and escalations only page, so they run here.
        """
        engine = self.engine
        await engine.renew_leases()
        # Claim one run at a time, right before it starts: a run claimed in a batch
        # waits behind the others, is not yet executing (so not renewed), and its
        # lease could run out and let another replica take it while we still meant to.
        for _ in range(self._room()):
            claimed = await engine.store.claim_expired_runs(engine.owner, engine.lease, limit=1)
            if not claimed:
                break
            await self._hand_off(f"run:{claimed[0].id}", engine.resume(claimed[0]))
        paused = await engine.is_paused()
        if not paused:
            for run in await engine.store.runs_waiting_undo(limit=self._room()):
                await self._hand_off(f"run:{run.id}", engine.try_undo(run.id))
            for _ in range(self._room()):
                parked = await engine.store.claim_parked_runs(engine.owner, engine.lease)
                if not parked:
                    break
                work = engine.resume(parked[0], parked=True)
                await self._hand_off(f"run:{parked[0].id}", work)
        await self.expire_approvals()
        if not paused:
            if self._room():
                for approval in await engine.store.claim_approved(limit=self._room()):
                    await self._hand_off(f"approval:{approval.id}", engine.run_approved(approval))
            await self.expire_mitigations()
        await self.escalate_long_runs()
        # Verification polls only read Prometheus: they go on under the kill switch
        # too (an undo one of them asks for still waits at the gate).
        for due in await engine.verifier.due(self._room()):
            await self._hand_off(f"verify:{due.run_id}", engine.verifier.poll(due))

    def _room(self) -> int:
        return 10 if self.engine.background is None else min(10, self.engine.background.room())

    async def _hand_off(self, key: str, work: Coroutine[Any, Any, None]) -> None:
        if self.engine.background is None:
            await work
        else:
            self.engine.background.submit(key, work)

    async def escalate_long_runs(self) -> None:
        """Page when a notify-level incident outlasts its runbook's threshold."""
        escalating = {rb.id: rb for rb in self.engine.registry if rb.escalate_after is not None}
        now = time.time()
        for run in await self.engine.store.runs_to_escalate(list(escalating)):
            runbook = escalating[run.runbook]
            assert runbook.escalate_after is not None
            after = runbook.escalate_after(runbook.params.model_validate(run.params))
            if after is None or run.created_at > now - after:
                continue
            if not await self.engine.store.mark_escalated(run.id):
                continue
            run_log(run).warning("run_escalated", after=after)
            await self.engine.pager.send(
                f"{run.id}:escalated",
                run,
                runbook,
                f"still firing after {int(after)} s: escalated to a page",
                severity="P1",
            )
