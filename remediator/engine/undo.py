"""Undo: a resolved alert's runs put back exactly what each recorded, once.

    occurrence (resolved) -> resolve actions -> undo in reverse order of change
                          -> page (resolve)

max_duration and a failed verification undo too, without the resolve actions (the
alert still fires) and with their own page.
"""

from __future__ import annotations

import time

from remediator.engine.base import EngineBase, log, run_log
from remediator.engine.gate import Deferred
from remediator.errors import LeaseLost
from remediator.state.backend import Row
from remediator.state.records import Run
from remediator.state.verifications import VERIFY_FAILED

# A resolve Prometheus does not confirm yet (the alert still fires) is asked again
# this often: a forged resolve holds the undo back, a real one lets it go.
UNDO_RECHECK = 30.0


class Undoing(EngineBase):
    async def resolve(self, occ: Row) -> None:
        for run in await self.store.runs_for_alert(occ["fingerprint"], occ["starts_at"]):
            if run.outcome == "blocked" or run.blocked_by:
                continue
            if not await self.store.request_undo(run.id, time.time()):
                run_log(run).info("resolve_repeat")
                continue
            await self.try_undo(run.id)

    async def try_undo(self, run_id: str) -> None:
        if await self.is_paused():
            log.warning("undo_deferred", run_id=run_id, reason="kill switch on")
            return
        claimed_at = time.time()
        if await self.store.claim_run(run_id, self.owner, self.lease, "waiting", "undoing"):
            self._leases[run_id] = claimed_at + self.lease
            run = await self.store.get_run(run_id)
            assert run is not None
            await self.undo(run)

    async def undo(self, run: Run) -> None:
        with self._executing(run.id):
            try:
                await self._undo(run)
            except LeaseLost as exc:
                self._lease_lost(run, exc)

    async def _undo(self, run: Run) -> None:
        runbook = self.registry.get(run.runbook)
        if runbook is None:
            return
        all_steps = await self.store.steps_for_run(run.id)
        done_undos = {s.name: s for s in all_steps if s.phase == "undo"}
        to_undo = [
            s
            for s in all_steps
            if s.phase in ("fire", "approved") and s.outcome == "applied" and s.changes is not None
        ]
        to_undo.sort(key=lambda s: s.finished_at or 0, reverse=True)
        ctx = self._ctx(run, runbook, [s for s in all_steps if s.phase != "undo"])
        # New actions on resolve first (RB-02 replays the DLQ before re-enabling
        # alerts, as the runbook orders it), then undo in reverse order of change.
        resolved_rows = {s.name: s for s in all_steps if s.phase == "resolve"}
        try:
            for seq, step in enumerate(runbook.resolve_steps):
                if run.undo_reason in ("max_duration", VERIFY_FAILED):
                    break  # the alert has not resolved: its resolve actions wait for it
                await self.steps.run(
                    step, ctx, phase="resolve", seq=seq, existing=resolved_rows.get(step.name)
                )
            ctx.mode = "live"  # undo puts back what was actually changed
            for seq, s in enumerate(to_undo):
                step = runbook.step(s.name)
                if step.undo is None:
                    continue
                await self.steps.run(
                    step,
                    ctx,
                    phase="undo",
                    seq=seq,
                    existing=done_undos.get(step.name),
                    changes=s.changes,
                )
        except Deferred as exc:
            # Kept, never lost: back to waiting, and the maintenance loop tries again
            # after `resume`, or (an unconfirmed resolve) after UNDO_RECHECK.
            retry_at = time.time() + (UNDO_RECHECK if exc.guard == "not_corroborated" else 0)
            await self.store.update_run(
                run.id, expect_owner=self.owner, state="waiting", retry_at=retry_at
            )
            run_log(run).warning("undo_deferred", reason=exc.reason)
            return
        if run.undo_reason in ("max_duration", VERIFY_FAILED):
            if run.undo_reason == VERIFY_FAILED:
                await self.verifier.undone_page(run, runbook)
            else:
                await self.upkeep.expired_page(run, runbook)
            await self.store.update_run(
                run.id,
                expect_owner=self.owner,
                state="done",
                undo_state="done",
                finished_at=time.time(),
            )
            return
        for a in await self.store.approvals_for_run(run.id):
            if a.state == "pending":  # the alert is gone: nothing left to approve
                await self.store.transition_approval(a.id, "pending", "expired")
        await self.pager.send(
            f"{run.id}:resolve",
            run,
            runbook,
            "alert resolved",
            action="resolve",
            at_resolve=True,
        )
        await self.store.update_run(
            run.id,
            expect_owner=self.owner,
            state="done",
            undo_state="done",
            finished_at=time.time(),
        )
        run_log(run).info("run_undone", undone=len(to_undo))
