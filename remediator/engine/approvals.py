"""Approvals: a human's decision on an approval step, and the approved step run.

approval decided -> (maintenance claims it) -> run that one step -> page (update)
"""

from __future__ import annotations

from dataclasses import dataclass

from remediator.engine.base import EngineBase, log
from remediator.engine.gate import Blocked, Deferred
from remediator.state.records import Approval


@dataclass(frozen=True)
class Decision:
    status: str  # ok | not_found | conflict
    detail: str = ""


class Approvals(EngineBase):
    async def decide(self, approval_id: int, decision: str, who: str) -> Decision:
        a = await self.store.get_approval(approval_id)
        if a is None:
            return Decision("not_found")
        if not await self.store.decide_approval(approval_id, decision, who):
            current = await self.store.get_approval(approval_id)
            state = current.state if current else "?"
            if state == "pending":
                state = "expired"
            return Decision("conflict", f"approval {approval_id} is {state}")
        log.warning(
            "approval_decided",
            approval=approval_id,
            decision=decision,
            by=who,
            run_id=a.run_id,
            step=a.step,
        )
        return Decision("ok")

    async def run_approved(self, approval: Approval) -> None:
        run = await self.store.get_run(approval.run_id)
        runbook = self.registry.get(run.runbook) if run else None
        if run is None or runbook is None:
            await self.store.transition_approval(approval.id, "executing", "failed")
            return
        step = runbook.step(approval.step)
        steps = await self.store.steps_for_run(run.id)
        ctx = self._ctx(run, runbook, [s for s in steps if s.phase == "fire"])
        prior = next((s for s in steps if s.phase == "approved" and s.name == step.name), None)
        try:
            row = await self.steps.run(step, ctx, phase="approved", seq=len(steps), existing=prior)
            outcome = str(row.outcome)
        except Deferred:
            # The decision stands; the step runs after `resume`.
            await self.store.transition_approval(approval.id, "executing", "approved")
            return
        except Blocked:
            outcome = "blocked"
        # The decision was carried out unless the step failed or a guard stopped it: a
        # step that found nothing to do (skipped) or a dry run ran as approved; its own
        # row, phase "approved", says what it did.
        done = outcome in ("applied", "skipped", "dry_run")
        await self.store.transition_approval(
            approval.id, "executing", "executed" if done else "failed"
        )
        if outcome == "applied" and step.kind == "mitigate":
            run = await self._mitigated(run)
            await self.verifier.schedule_after_approval(run)
        await self.pager.send(
            f"{run.id}:approved:{approval.id}",
            run,
            runbook,
            f"approved step {step.name}: {outcome}",
        )
