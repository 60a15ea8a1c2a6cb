"""The one door every mutation passes, right before it acts.

Whatever path leads to a change (a first run, a run resumed after a crash or taken
over after a lease, an approved step, a retry, an undo on resolve, on hand-over or
after ``max_duration``), ``StepRunner`` calls ``Gate.admit`` immediately before the
step's function runs, once per attempt. The gate:

1. checks the effective mode now (a rule reloaded as dry-run binds runs already
   under way); an undo is exempt: it only puts back what a live step changed;
2. asks Prometheus, when configured, whether the alert is firing (before a
   mitigation) or no longer firing (before an undo of a resolve); for an alert from
   Grafana Alerting it asks Grafana (``targets.grafana``), and with no Grafana to ask
   such an alert is not corroborated;
3. in ONE state transaction: the kill switch, the run's lease, the rule's blast
   radius, and the step's ``started`` row (``state.gate.admit_step``).

A refusal is an exception the engine turns into what it means for the run:
``Deferred`` parks the work until it can go on (kill switch on, a resolve Prometheus
does not confirm yet); ``Blocked`` stops the run as blocked by a guard.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NoReturn

from remediator import commandline, logs
from remediator.engine.rules import BlastRadius
from remediator.errors import LeaseLost, RemediatorError, TargetError
from remediator.metrics import Metrics
from remediator.runbook_api.context import Mode, StepContext
from remediator.state.backend import Row
from remediator.state.gate import BlastLimit, admit_step
from remediator.state.store import StateStore

log = logs.get("remediator.gate")

# Phases a run's owner executes under its lease (approved steps run on any replica).
LEASED_PHASES = ("fire", "resolve", "undo")
# Phases that put back what a run changed, rather than change something new.
UNDO_PHASES = ("undo",)
# Phases whose action is a response to the alert firing.
FIRING_PHASES = ("fire", "approved")


class Refused(RemediatorError):
    def __init__(self, guard: str, reason: str) -> None:
        super().__init__(reason)
        self.guard = guard
        self.reason = reason


class Deferred(Refused):
    """Not now: the work is kept and goes on later (after ``resume``, or once
    Prometheus confirms the resolve)."""


class Blocked(Refused):
    """Not at all: the run stops here, counted as blocked by ``guard``."""


ModeNow = Callable[[StepContext], Mode]
BlastFor = Callable[[str], BlastRadius | None]


class Gate:
    def __init__(
        self,
        store: StateStore,
        metrics: Metrics,
        *,
        owner: str | None,
        lease: float,
        leases: dict[str, float],
        mode_now: ModeNow,
        blast_for: BlastFor,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.owner = owner
        self.lease = lease
        self.leases = leases
        self.mode_now = mode_now
        self.blast_for = blast_for

    def live(self, ctx: StepContext, phase: str) -> bool:
        """Whether a mutating step of this phase may act at all in the mode now."""
        return phase in UNDO_PHASES or self.mode_now(ctx) == "live"

    async def admit(self, step: Row, ctx: StepContext, phase: str) -> None:
        """Record ``step`` as started, or raise Deferred, Blocked or LeaseLost."""
        await self._witness(ctx, phase)
        owner = self.owner if phase in LEASED_PHASES else None
        until = time.time() + self.lease
        refusal = await admit_step(
            self.store,
            step,
            owner=owner,
            lease_until=until if owner is not None else None,
            blast=self._blast(ctx, phase),
        )
        if refusal is None:
            if owner is not None:
                self.leases[ctx.run_id] = until
            return
        if refusal == "lease_lost":
            self.leases.pop(ctx.run_id, None)
            raise LeaseLost(f"run {ctx.run_id} was taken over by another replica")
        self.metrics.guard_blocks.labels(refusal).inc()
        if refusal == "kill_switch":
            resume = commandline.command(ctx.clients.settings, "resume")
            raise Deferred("kill_switch", f"kill switch on: waits for `{resume}`")
        limit = self.blast_for(ctx.rule)
        per = int(limit.per) if limit is not None else 0
        raise Blocked(
            "blast_radius",
            f"blast radius: rule {ctx.rule} already changed {limit.count if limit else 0}"
            f" distinct targets in the last {per} s; {ctx.target} not acted on",
        )

    def _blast(self, ctx: StepContext, phase: str) -> BlastLimit | None:
        if phase not in FIRING_PHASES:
            return None
        limit = self.blast_for(ctx.rule)
        if limit is None:
            return None
        return BlastLimit(ctx.rule, ctx.target, limit.count, time.time() - limit.per)

    async def _witness(self, ctx: StepContext, phase: str) -> None:
        if phase in FIRING_PHASES:
            want_firing = True
        elif ctx.undo_reason == "resolved":
            want_firing = False
        else:
            return  # max_duration: the mitigation ends whatever the alert says
        # A Grafana-managed alert was evaluated by Grafana, not Prometheus: only
        # Grafana's alert state can corroborate it, and without targets.grafana
        # nothing can, so it fails closed.
        grafana = ctx.alert.source == "grafana"
        who = "Grafana" if grafana else "Prometheus"
        witness_client = ctx.clients.grafana if grafana else ctx.clients.prometheus
        if witness_client is None:
            if not grafana:
                return  # corroboration is off (targets.prometheus absent or off)
            self._refuse_uncorroborated(
                ctx, phase, want_firing, "Grafana-managed alert and targets.grafana is not set"
            )
        try:
            witness = await witness_client.alert_firing(ctx.alert.labels)
        except TargetError as exc:
            self.metrics.guard_blocks.labels("not_corroborated").inc()
            reason = f"not corroborated: {who} could not be asked ({exc})"
            if want_firing:
                raise Blocked("not_corroborated", reason) from exc
            raise Deferred("not_corroborated", reason) from exc
        if witness.firing == want_firing:
            return
        self._refuse_uncorroborated(ctx, phase, want_firing, witness.detail)

    def _refuse_uncorroborated(
        self, ctx: StepContext, phase: str, want_firing: bool, detail: str
    ) -> NoReturn:
        self.metrics.guard_blocks.labels("not_corroborated").inc()
        log.warning(
            "not_corroborated",
            run_id=ctx.run_id,
            phase=phase,
            detail=detail,
            alertname=ctx.alert.alertname,
            fingerprint=ctx.alert.fingerprint,
            source=ctx.alert.source,
        )
        if want_firing:
            raise Blocked("not_corroborated", f"not corroborated: {detail}")
        raise Deferred(
            "not_corroborated",
            f"resolve not corroborated: {detail}; the undo waits until it stops firing",
        )
