"""Running one declared step: dry-run, approval, retries, timeout, outcome record.

Each step's row is written *before* it acts (state ``started``) and again after
(state ``done`` with its outcome and undo record). A crash between the two leaves
``started``: on resume a step that changes nothing (``mutates=False``: reads,
diagnoses), an undo (undos only put back what still holds the value its step set,
so a second pass finds nothing to do) or a step declared idempotent runs again; any
other step is marked failed "outcome unknown" and left for a human, never silently
repeated.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import Any

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

from remediator import commandline, logs
from remediator.engine.gate import FIRING_PHASES, LEASED_PHASES, Blocked, Deferred, Gate
from remediator.errors import (
    InputRejected,
    LeaseLost,
    NotCorroborated,
    RemediatorError,
    TargetError,
)
from remediator.metrics import Metrics
from remediator.runbook_api.context import StepContext
from remediator.runbook_api.steps import (
    Done,
    NotConfigured,
    Skip,
    Step,
    StepFailed,
    StepOutcome,
    Wait,
)
from remediator.state.backend import Row
from remediator.state.records import StepRecord
from remediator.state.store import StateStore

log = logs.get("remediator.execute")


def _temporary(exc: BaseException) -> bool:
    return isinstance(exc, TimeoutError) or (isinstance(exc, TargetError) and exc.temporary)


# A target's Retry-After is honoured up to this; a longer ask fails the step's attempts
# sooner rather than parking a worker (the run is retried as a whole later).
MAX_RETRY_AFTER = 30.0


def honour_retry_after(
    backoff: Callable[[RetryCallState], float],
) -> Callable[[RetryCallState], float]:
    """Wait the backoff, or longer when the target said how long (429, AWS throttling)."""

    def wait(state: RetryCallState) -> float:
        base = backoff(state)
        failed = state.outcome.exception() if state.outcome is not None else None
        asked = getattr(failed, "retry_after", None)
        if isinstance(asked, int | float) and asked > 0:
            return max(base, min(float(asked), MAX_RETRY_AFTER))
        return base

    return wait


def _reason(exc: BaseException) -> str:
    if isinstance(exc, StepFailed):
        return exc.reason
    if isinstance(exc, InputRejected):
        return f"rejected input {exc}"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, RemediatorError):
        return str(exc)
    return f"internal error: {type(exc).__name__}"


def safe_render(step: Step, ctx: StepContext, undo: Mapping[str, Any] | None = None) -> str:
    """The step's call; given its undo record, the call its undo makes (if it says)."""
    try:
        if undo is not None and step.render_undo is not None:
            return step.render_undo(ctx=ctx, changes=undo)
        return step.render(ctx=ctx)
    except InputRejected as exc:
        return f"(not rendered: rejected input {exc})"
    except Exception as exc:
        return f"(not rendered: {type(exc).__name__})"


class Waiting(RemediatorError):
    """A step answered Wait: the engine parks the run until ``seconds`` from now."""

    def __init__(self, reason: str, seconds: float) -> None:
        super().__init__(reason)
        self.reason = reason
        self.seconds = seconds


# A step may not ask to be called again sooner than this (a busy loop in disguise).
MIN_WAIT = 0.2


class StepRunner:
    def __init__(
        self,
        store: StateStore,
        metrics: Metrics,
        gate: Gate,
        *,
        owner: str | None = None,
        lease: float = 30.0,
        leases: dict[str, float] | None = None,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.gate = gate
        self.owner = owner
        self.lease = lease
        # run id -> lease_until as we last wrote it (shared with the engine, which
        # records creations, claims and heartbeat renewals).
        self.leases = leases if leases is not None else {}

    async def _fence(self, ctx: StepContext, phase: str) -> None:
        """Still the run's owner? Extend the lease; otherwise stop before acting.

        A process that stalled past its lease (CPU starved, a long pause) must not go
        on with a run another replica has resumed: both would act.
        """
        if self.owner is None or phase not in LEASED_PHASES:
            return
        now = time.time()
        # While more than half of the lease we last wrote is left, no replica can
        # have taken the run over (they wait for it to run out, on the same clock
        # within the skew leases already assume), so the round trip is skipped. A
        # stall long enough to matter leaves less than half and goes to the store.
        if self.leases.get(ctx.run_id, 0.0) - now > self.lease / 2:
            return
        until = now + self.lease
        if not await self.store.update_run(ctx.run_id, expect_owner=self.owner, lease_until=until):
            self.leases.pop(ctx.run_id, None)
            raise LeaseLost(f"run {ctx.run_id} was taken over by another replica")
        self.leases[ctx.run_id] = until

    async def _record(self, base: Row, **fields: Any) -> StepRecord:
        row = {**base, **fields}
        # A step that changes a target: its "started" row is on disk before it acts,
        # and its undo record right after. The record's own durable commit does it
        # (and flushes the run's earlier bookkeeping with it): on Postgres one round
        # trip instead of a commit and then a separate durability mark.
        durable = bool(row["mutates"]) and row["outcome"] not in (
            "dry_run",
            "awaiting_approval",
            "skipped",
        )
        return await self.store.record_step(row, durable=durable)

    async def run(
        self,
        step: Step,
        ctx: StepContext,
        *,
        phase: str,
        seq: int,
        existing: StepRecord | None,
        approval_id: int | None = None,
        changes: Mapping[str, Any] | None = None,
    ) -> StepRecord:
        """Run (or plan) one step and return its recorded row."""
        if existing is not None and existing.state == "done":
            return existing
        await self._fence(ctx, phase)
        now = time.time()
        rendered = safe_render(step, ctx, changes if phase == "undo" else None)
        base: Row = {
            "run_id": ctx.run_id,
            "phase": phase,
            "seq": seq,
            "name": step.name,
            "kind": step.kind,
            "mutates": step.mutates,
            "approval": step.approval,
            "state": "done",
            "outcome": None,
            "rendered": rendered,
            "result": None,
            "changes": None,
            "reason": None,
            "attempts": 0,
            "started_at": now,
            "finished_at": now,
        }
        # A read interrupted by a crash is simply read again; failing it instead made
        # every run a kill -9 caught mid-diagnosis fail (and count towards the circuit).
        # An interrupted undo is run again too: left "unknown", the undo was lost.
        rerun_safe = step.idempotent or not step.mutates or phase == "undo"
        if existing is not None and existing.state == "started" and not rerun_safe:
            return await self._finish(
                step,
                ctx,
                base,
                "failed",
                reason="interrupted by a restart; outcome unknown, check by hand before retrying",
            )

        if phase == "fire" and step.approval == "approve":
            assert approval_id is not None
            return await self._finish(
                step,
                ctx,
                base,
                "awaiting_approval",
                reason=f"approve with: {_approve_command(ctx, approval_id)}",
            )
        if step.mutates and not (ctx.mode == "live" and self.gate.live(ctx, phase)):
            reason = (
                "paused by the kill switch" if ctx.mode == "paused" else "dry-run: not executed"
            )
            return await self._finish(step, ctx, base, "dry_run", reason=reason)

        if not step.mutates:
            await self._record(base, state="started", finished_at=None)
        started = time.monotonic()
        attempts = 0
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(max(1, step.attempts)),
                wait=honour_retry_after(wait_exponential(multiplier=step.backoff, max=10)),
                retry=retry_if_exception(_temporary),
                reraise=True,
            ):
                with attempt:
                    attempts += 1
                    if step.mutates:
                        # Every attempt, a retry too, passes the gate right before it acts.
                        started_row = {**base, "state": "started", "finished_at": None}
                        await self.gate.admit({**started_row, "attempts": attempts}, ctx, phase)
                    async with asyncio.timeout(step.timeout):
                        if phase == "undo":
                            assert step.undo is not None and changes is not None
                            outcome: StepOutcome = await step.undo(ctx=ctx, changes=changes)
                        else:
                            outcome = await step.run(ctx=ctx)
        except (asyncio.CancelledError, LeaseLost):
            raise
        except Deferred as exc:
            await self._record(
                base, state="deferred", outcome="skipped", reason=exc.reason, attempts=attempts
            )
            log.warning("step_deferred", run_id=ctx.run_id, step=step.name, reason=exc.reason)
            raise
        except Blocked as exc:
            await self._finish(step, ctx, base, "skipped", reason=exc.reason, attempts=attempts)
            raise
        except NotCorroborated as exc:
            if phase not in FIRING_PHASES:
                return await self._finish(
                    step, ctx, base, "failed", reason=exc.reason, attempts=attempts
                )
            reason = f"not corroborated: {exc.reason}"
            self.metrics.guard_blocks.labels("not_corroborated").inc()
            await self._finish(step, ctx, base, "skipped", reason=reason, attempts=attempts)
            raise Blocked("not_corroborated", reason) from exc
        except NotConfigured as exc:
            return await self._finish(step, ctx, base, "skipped", reason=exc.reason)
        except Exception as exc:
            if not isinstance(exc, RemediatorError | TimeoutError):
                log.exception("step_crashed", run_id=ctx.run_id, step=step.name)
            self.metrics.action_duration.labels(ctx.runbook, step.name).observe(
                time.monotonic() - started
            )
            return await self._finish(
                step, ctx, base, "failed", reason=_reason(exc), attempts=attempts
            )
        self.metrics.action_duration.labels(ctx.runbook, step.name).observe(
            time.monotonic() - started
        )
        if isinstance(outcome, Wait) and phase != "fire":
            return await self._finish(
                step,
                ctx,
                base,
                "failed",
                reason=f"a step may wait only while the alert fires: {outcome.reason}",
                attempts=attempts,
            )
        if isinstance(outcome, Wait):
            await self._record(
                base,
                state="waiting",
                outcome="skipped",
                reason=outcome.reason,
                result={"summary": outcome.reason, "data": dict(outcome.data)},
                attempts=attempts,
            )
            raise Waiting(outcome.reason, max(MIN_WAIT, outcome.seconds))
        if isinstance(outcome, Skip):
            return await self._finish(
                step,
                ctx,
                base,
                "skipped",
                reason=outcome.reason,
                result={"summary": outcome.reason, "data": dict(outcome.data)},
                attempts=attempts,
            )
        assert isinstance(outcome, Done)
        return await self._finish(
            step,
            ctx,
            base,
            "rolled_back" if phase == "undo" else "applied",
            result={"summary": outcome.summary, "data": dict(outcome.data)},
            changes=dict(outcome.changes) if outcome.changes is not None else None,
            attempts=attempts,
        )

    async def _finish(
        self, step: Step, ctx: StepContext, base: Row, outcome: str, **fields: Any
    ) -> StepRecord:
        if not step.mutates:
            # A read that a stall outlived is stale: recorded over the new owner's
            # row, it would be what the run's next mutation decides on (RB-02 pauses
            # on a provider_status that said "down" before the stall). A mutation's
            # record is always written: the change happened, its undo must be known.
            await self._fence(ctx, base["phase"])
        row = await self._record(
            base, state="done", outcome=outcome, finished_at=time.time(), **fields
        )
        self.metrics.actions.labels(ctx.runbook, step.name, outcome).inc()
        log.info(
            "step_finished",
            run_id=ctx.run_id,
            step=step.name,
            phase=row.phase,
            outcome=outcome,
            reason=row.reason,
            fingerprint=ctx.alert.fingerprint,
            alertname=ctx.alert.alertname,
        )
        return row


def _approve_command(ctx: StepContext, approval_id: int) -> str:
    settings = ctx.clients.settings
    if settings is None:  # a bare context (tests, replay) knows no config to point at
        return f"remediator approve {approval_id}"
    return commandline.command(settings, f"approve {approval_id}")
