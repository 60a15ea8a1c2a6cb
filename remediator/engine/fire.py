"""Fire: from a firing occurrence to runs, and each run's steps in order.

    occurrence (firing) -> match rules -> one run per (rule, fingerprint, startsAt)
                        -> guards (engine/guarding.py)
                        -> steps in order, each recorded before the next
                        -> hand over (page, wait for the resolve, or undo now)

A step the kill switch stops parks the run; a step that asks to wait parks it with a
time to wake. ``resume`` (engine/recovery.py) goes on with either.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from remediator import commandline
from remediator.engine import offer
from remediator.engine import outcome as run_outcomes
from remediator.engine.base import LOCK_TTL, PAUSE_FLAG, log, run_log
from remediator.engine.gate import Blocked, Deferred
from remediator.engine.guarding import Guarding
from remediator.engine.rules import Rule
from remediator.engine.runner import Waiting
from remediator.engine.sources import grafana_alert_fields
from remediator.engine.undo import Undoing
from remediator.errors import LeaseLost
from remediator.runbook_api.context import Mode
from remediator.runbook_api.steps import Runbook
from remediator.state.backend import Row
from remediator.state.records import Run, StepRecord


class Firing(Guarding, Undoing):
    async def process(self, occ: Row) -> None:
        """Handle one journaled occurrence (already claimed by this worker)."""
        labels = occ["labels"]
        if occ["status"] == "resolved":
            await self.resolve(occ)
            return
        ruleset = self.rules()
        if ruleset is None:
            return
        for rule in ruleset.select(labels):
            await self.start_run(rule, occ)

    async def start_run(self, rule: Rule, occ: Row) -> str | None:
        runbook = self.registry.get(rule.runbook)
        if runbook is None:
            log.error("unknown_runbook", rule=rule.name, runbook=rule.runbook)
            return None
        now = time.time()
        run_id = "r" + uuid.uuid4().hex[:12]
        mode: Mode = "dry-run" if "dry-run" in (self.settings.mode, rule.mode) else "live"
        alert = {
            "labels": occ["labels"],
            "annotations": occ["annotations"],
            "generator_url": occ["generator_url"],
            **grafana_alert_fields(occ),
        }
        row: Row = {
            "id": run_id,
            "rule": rule.name,
            "runbook": runbook.id,
            "fingerprint": occ["fingerprint"],
            "starts_at": occ["starts_at"],
            "alertname": occ["alertname"],
            "target": self._target(runbook, occ["labels"], rule.params),
            "mode": mode,
            "state": "running",
            "alert": alert,
            "params": rule.params.model_dump(mode="json"),
            "severity": runbook.severity,
            "received_at": occ["received_at"],
            "created_at": now,
            "updated_at": now,
            "owner": self.owner,
            "lease_until": now + self.lease,
        }
        if not await self.store.create_run(row):
            # No run_id: the run this occurrence made already is another one.
            log.info(
                "run_exists",
                rule=rule.name,
                fingerprint=occ["fingerprint"],
                alertname=occ["alertname"],
            )
            return None
        # The run as stored: what we inserted, with the columns it left empty (None).
        run = Run.from_row(row)
        logger = run_log(run)
        logger.info("run_started", runbook=runbook.id, mode=mode)
        self._leases[run_id] = row["lease_until"]
        # A resolve processed before this run existed found nothing to undo (its firing
        # was still queued, or held by a replica that died). Either that resolve sees
        # this run or this check sees the resolve: the journal row was committed before
        # the resolve looked for runs, and the run before this looks for the journal row.
        # The same read brings what the guards need (kill switch, circuit).
        facts = await self.store.run_start_facts(
            occ["fingerprint"], occ["starts_at"], runbook.id, PAUSE_FLAG
        )
        if facts["resolved"] and await self.store.request_undo(run_id, time.time()):
            logger.info("resolved_before_run")
        await self.fire(run, runbook, rule, facts=facts)
        return run_id

    async def fire(
        self, run: Run, runbook: Runbook, rule: Rule | None, *, facts: Row | None = None
    ) -> None:
        with self._executing(run.id):
            try:
                await self._fire(run, runbook, rule, facts)
            except LeaseLost as exc:
                self._lease_lost(run, exc)

    async def _fire(self, run: Run, runbook: Runbook, rule: Rule | None, facts: Row | None) -> None:
        # A run created just now (facts given) has no steps yet; a resumed one may.
        fresh = facts is not None
        existing = [] if fresh else await self.store.steps_for_run(run.id, "fire")
        if not existing and not run.blocked_by:
            guard = await self._guard(run, runbook, rule, facts)
            if guard is not None:
                self.metrics.guard_blocks.labels(guard).inc()
                await self._end_blocked(run, runbook, rule, guard)
                return
        else:
            await self.store.acquire_lock(run.target, run.id, self.owner, LOCK_TTL)
        if runbook.page_first:
            await self.pager.send(
                f"{run.id}:first",
                run,
                runbook,
                "paged first; diagnosis running",
                steps=[],
                approvals=[],
            )

        by_name = {s.name: s for s in existing}
        recorded = dict(by_name)  # this phase's step rows as they now stand
        ctx = self._ctx(run, runbook, existing)
        stop_reason: str | None = None
        blocked: str | None = None
        for seq, step in enumerate(runbook.steps):
            prior = by_name.get(step.name)
            pending = prior is None or prior.state != "done"
            withheld = (
                step.withhold(ctx)
                if pending and stop_reason is None and step.withhold and step.approval == "approve"
                else None
            )
            if (stop_reason is not None or withheld is not None) and pending:
                now = time.time()
                skipped: Row = {
                    "run_id": run.id,
                    "phase": "fire",
                    "seq": seq,
                    "name": step.name,
                    "kind": step.kind,
                    "mutates": step.mutates,
                    "approval": step.approval,
                    "state": "done",
                    "outcome": "skipped",
                    "rendered": "",
                    "result": None,
                    "changes": None,
                    "reason": stop_reason or f"not offered: {withheld}",
                    "attempts": 0,
                    "started_at": now,
                    "finished_at": now,
                }
                recorded[step.name] = await self.store.record_step(skipped)
                self.metrics.actions.labels(runbook.id, step.name, "skipped").inc()
                continue
            approval_id = None
            if step.approval == "approve" and (prior is None or prior.state != "done"):
                unoffered = offer.not_offered(step, ctx, seq)
                if unoffered is not None:  # its target is not configured: nothing to approve
                    recorded[step.name] = await self.store.record_step(unoffered)
                    self.metrics.actions.labels(runbook.id, step.name, "skipped").inc()
                    continue
                approval_id = await self.store.create_approval(
                    run.id, step.name, time.time() + self.settings.engine.approval_ttl
                )
            try:
                row = await self.steps.run(
                    step, ctx, phase="fire", seq=seq, existing=prior, approval_id=approval_id
                )
            except Deferred as exc:
                await self._park(run, runbook, step.name, exc.reason)
                return
            except Waiting as exc:
                await self._park(
                    run, runbook, step.name, exc.reason, retry_at=time.time() + exc.seconds
                )
                return
            except Blocked as exc:
                blocked = exc.guard
                stop_reason = f"not run: blocked by guard {exc.guard}"
                recorded.pop(step.name, None)  # not run: nothing of it applied
                continue
            recorded[step.name] = row
            if row.outcome in ("applied", "skipped") and row.result:
                ctx.results[step.name] = row.data
            if row.outcome == "applied" and step.kind == "mitigate" and step.mutates:
                # Observed now; stored with the hand-over below (one write fewer).
                run = self._observe_mitigation(run) or run
            if row.outcome == "failed" and step.stop_on_failure:
                stop_reason = f"not run: {step.name} failed"
        if blocked is not None and not any(
            r.outcome == "applied" and r.mutates for r in recorded.values()
        ):
            # Stopped before it changed anything: a blocked run, as if a guard had
            # stopped it at the start (nothing to undo on resolve).
            await self._end_blocked(run, runbook, rule, blocked)
            return
        # A fresh run's rows are exactly what this pass recorded, in step order; a
        # resumed run (or one a gate stopped half way) re-reads them.
        steps = (
            [recorded[s.name] for s in runbook.steps if s.name in recorded]
            if fresh and blocked is None
            else None
        )
        await self._finish_fire(run, runbook, steps)

    async def _park(
        self, run: Run, runbook: Runbook, step: str, reason: str, retry_at: float | None = None
    ) -> None:
        """Keep the run, free its worker, and have any replica go on with it later.

        ``retry_at`` None: the kill switch stopped it at a mutation; the target is
        released, a human is told once, and ``resume`` lets it go on. A time: a step
        asked to wait (a build Job running); the run keeps its target's lock and goes
        on when the time comes.
        """
        parked = await self.store.update_run(
            run.id, expect_owner=self.owner, state="parked", detail=reason, retry_at=retry_at
        )
        if retry_at is None:
            await self.store.release_lock(run.target, run.id)
        if not parked:
            return
        run_log(run).info(
            "run_parked",
            step=step,
            reason=reason,
            wake_in=round(retry_at - time.time(), 3) if retry_at is not None else None,
        )
        if retry_at is not None:
            return
        await self.pager.send(
            f"{run.id}:parked",
            run,
            runbook,
            f"kill switch on: stopped before {step}, nothing changed;"
            f" it goes on after `{commandline.command(self.settings, 'resume')}`",
            approvals=[],
        )

    async def _finish_fire(
        self, run: Run, runbook: Runbook, steps: list[StepRecord] | None
    ) -> None:
        if steps is None:
            steps = await self.store.steps_for_run(run.id, "fire")
        outcome = run_outcomes.run_outcome(
            run.mode,
            (run_outcomes.StepResult(str(s.outcome), s.mutates) for s in steps),
        )
        self.metrics.runbook_runs.labels(runbook.id, outcome).inc()
        # A run that failed only because its labels were refused says nothing about the
        # runbook or its targets: counting it would let whoever shapes a label (a
        # spoofed source address, say) open the circuit and stop the real runs.
        failed = [s for s in steps if s.outcome == "failed"]
        refused_input_only = bool(failed) and all(
            (s.reason or "").startswith("rejected input") for s in failed
        )
        # A success closes the circuit in the hand-over's commit, below.
        close_circuit = None
        if run.mode == "live" and not refused_input_only:
            if failed:  # a partial run's failure counts too, as it always did
                await self._circuit_failure(runbook)
            else:
                close_circuit = runbook.id
        # Only runbooks with approval steps can have approvals: skip the read otherwise.
        approvals = (
            await self.store.approvals_for_run(run.id)
            if any(s.approval == "approve" for s in runbook.steps)
            else []
        )
        await self.pager.send(f"{run.id}:trigger", run, runbook, steps=steps, approvals=approvals)
        # Hand over: if the alert resolved while we ran, undo now; otherwise wait. The
        # target's lock is released in the same commit.
        extra: dict[str, Any] = {"mitigated_at": run.mitigated_at} if run.mitigated_at else {}
        extra.update(self.verifier.first_poll(run, steps))  # durable with the hand-over
        current = await self.store.hand_over_run(
            run.id,
            self.owner,
            outcome,
            release_lock=run.target,
            close_circuit=close_circuit,
            **extra,
        )
        if close_circuit is not None:
            self.metrics.circuit_state.labels(runbook.id).set(0)
        if current is None:
            if extra:  # taken over meanwhile: still record when we mitigated
                await self.store.update_run(run.id, **extra)
            return
        run_log(run).info("run_fired", outcome=outcome)
        if current.state == "undoing":
            await self.undo(current)
