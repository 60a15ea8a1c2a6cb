"""The engine: from a journaled occurrence to runs, guards, steps, undo and pages.

    occurrence (firing)   -> match rules -> one run per (rule, fingerprint, startsAt)
                          -> guards (kill switch, circuit, rate limit, cooldown, lock)
                          -> fire phase: steps in order, each recorded before the next
                          -> page (trigger)
    occurrence (resolved) -> undo exactly what each run recorded, once -> page (resolve)
    approval decided      -> run that one step -> page (update)

Every "who does this" decision is a conditional write in the state store, so any
number of replicas can run this code against one Postgres and still act once.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

from pydantic import BaseModel

from remediator import commandline, logs
from remediator.background import Background
from remediator.engine import guards, offer, pages, targets
from remediator.engine import outcome as run_outcomes
from remediator.engine.execute import StepRunner, Waiting
from remediator.engine.gate import Blocked, Deferred, Gate
from remediator.engine.rules import BlastRadius, Rule, RuleSet
from remediator.engine.sources import grafana_alert_fields
from remediator.engine.upkeep import Upkeep
from remediator.engine.verify import Verifier
from remediator.errors import LeaseLost
from remediator.metrics import Metrics
from remediator.paging.base import PageContent
from remediator.paging.outbox import Outbox
from remediator.runbook_api.context import AlertView, Clients, Mode, StepContext
from remediator.runbook_api.registry import Registry
from remediator.runbook_api.steps import Runbook
from remediator.settings import Settings
from remediator.state.backend import Row
from remediator.state.store import StateStore
from remediator.state.verifications import VERIFY_FAILED

log = logs.get("remediator.engine")

PAUSE_FLAG = "paused"
LOCK_TTL = 900.0
# A resolve Prometheus does not confirm yet (the alert still fires) is asked again
# this often: a forged resolve holds the undo back, a real one lets it go.
UNDO_RECHECK = 30.0


@dataclass(frozen=True)
class Decision:
    status: str  # ok | not_found | conflict
    detail: str = ""


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


class Engine:
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
        self.upkeep = Upkeep(self)
        self.verifier = Verifier(self)

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

    # ------------------------------------------------------------- occurrences

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

    def _target(self, runbook: Runbook, labels: Mapping[str, str], params: BaseModel) -> str:
        return targets.run_target(runbook, labels, params, self.clients)

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
        run: Row = {
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
        if not await self.store.create_run(run):
            log.info(
                "run_exists",
                rule=rule.name,
                fingerprint=occ["fingerprint"],
                alertname=occ["alertname"],
            )
            return None
        log.info(
            "run_started",
            run_id=run_id,
            rule=rule.name,
            runbook=runbook.id,
            fingerprint=occ["fingerprint"],
            alertname=occ["alertname"],
            mode=mode,
        )
        # The row as stored: what we inserted, with the columns it left empty.
        run.update(
            outcome=None,
            blocked_by=None,
            detail=None,
            finished_at=None,
            mitigated_at=None,
            undo_state=None,
            resolved_at=None,
        )
        self._leases[run_id] = run["lease_until"]
        # A resolve processed before this run existed found nothing to undo (its firing
        # was still queued, or held by a replica that died). Either that resolve sees
        # this run or this check sees the resolve: the journal row was committed before
        # the resolve looked for runs, and the run before this looks for the journal row.
        # The same read brings what the guards need (kill switch, circuit).
        facts = await self.store.run_start_facts(
            occ["fingerprint"], occ["starts_at"], runbook.id, PAUSE_FLAG
        )
        if facts["resolved"] and await self.store.request_undo(run_id, time.time()):
            log.info(
                "resolved_before_run",
                run_id=run_id,
                fingerprint=occ["fingerprint"],
                alertname=occ["alertname"],
            )
        await self.fire(run, runbook, rule, facts=facts)
        return run_id

    async def _guard(
        self, run: Row, runbook: Runbook, rule: Rule | None, facts: Row | None
    ) -> str | None:
        """The first guard that blocks this run, or None. Mode changes are applied.

        ``facts`` (from run_start_facts, read just after the run was created) saves a
        new run two reads; a resumed run reads them here.
        """
        # The kill switch is not a guard here: a paused daemon still diagnoses, and
        # the gate parks the run at its first mutation (see engine/gate.py).
        if facts is None:
            circuit = await self.store.get_circuit(runbook.id)
            circuit_state = circuit["state"] if circuit is not None else None
        else:
            circuit_state = facts["circuit"]
        if circuit_state == "open":
            if not await self.store.half_open_circuit(
                runbook.id, self.settings.engine.circuit_reset
            ):
                return "circuit_open"
            self.metrics.circuit_state.labels(runbook.id).set(1)
        # The lock before the cooldown: it serialises the decision per target, so of
        # several runs for one target arriving together (several instances, several
        # replicas) exactly one passes. Checked under the lock, the cooldown counts the
        # runs that passed before this one, never those still deciding: counting
        # those made concurrent runs block each other and none acted.
        if not await self.store.acquire_lock(run["target"], run["id"], self.owner, LOCK_TTL):
            return "lock_busy"
        if rule is not None and rule.cooldown > 0:
            last = await self.store.last_run_for_target(rule.name, run["target"], run["id"])
            if last is not None and last["created_at"] > time.time() - rule.cooldown:
                await self.store.release_lock(run["target"], run["id"])
                return "cooldown"
        # The rule's hourly budget last, counting only runs created before this one:
        # runs created together then pass in creation order up to the limit (every
        # run that passed is counted by those after it, so the limit holds across
        # replicas), instead of each counting all the others and none acting.
        if rule is not None and rule.max_runs_per_hour is not None:
            passed = await self.store.count_runs_since(
                rule.name, time.time() - 3600, before=(run["created_at"], run["id"])
            )
            if passed >= rule.max_runs_per_hour:
                await self.store.release_lock(run["target"], run["id"])
                return "rate_limit"
        return None

    def _ctx(self, run: Row, runbook: Runbook, steps: list[Row]) -> StepContext:
        ctx = self._bare_ctx(run, runbook, steps)
        ctx.target = run["target"]
        ctx.undo_reason = run.get("undo_reason") or (
            "resolved" if run.get("undo_state") == "requested" else None
        )
        return ctx

    def _bare_ctx(self, run: Row, runbook: Runbook, steps: list[Row]) -> StepContext:
        alert = run["alert"]
        params = runbook.params.model_validate(run["params"])
        results: dict[str, Mapping[str, Any]] = {}
        for s in steps:
            if s.get("result") and s["outcome"] in ("applied", "skipped"):
                results[s["name"]] = s["result"].get("data", {})
        return StepContext(
            run_id=run["id"],
            rule=run["rule"],
            runbook=runbook.id,
            alert=AlertView(
                alertname=run["alertname"],
                fingerprint=run["fingerprint"],
                starts_at=run["starts_at"],
                labels=alert["labels"],
                annotations=alert["annotations"],
                generator_url=alert.get("generator_url", ""),
                source=alert.get("source", "alertmanager"),
            ),
            params=params,
            mode=run["mode"],
            clients=self.clients,
            results=results,
        )

    async def fire(
        self, run: Row, runbook: Runbook, rule: Rule | None, *, facts: Row | None = None
    ) -> None:
        with self._executing(run["id"]):
            try:
                await self._fire(run, runbook, rule, facts)
            except LeaseLost as exc:
                self._lease_lost(run, exc)

    def _lease_lost(self, run: Row, exc: LeaseLost) -> None:
        log.warning(
            "lease_lost",
            run_id=run["id"],
            detail=str(exc),
            fingerprint=run["fingerprint"],
            alertname=run["alertname"],
        )

    async def _fire(self, run: Row, runbook: Runbook, rule: Rule | None, facts: Row | None) -> None:
        # A run created just now (facts given) has no steps yet; a resumed one may.
        fresh = facts is not None
        existing = [] if fresh else await self.store.steps_for_run(run["id"], "fire")
        if not existing and not run.get("blocked_by"):
            guard = await self._guard(run, runbook, rule, facts)
            if guard is not None:
                self.metrics.guard_blocks.labels(guard).inc()
                await self._end_blocked(run, runbook, rule, guard)
                return
        else:
            await self.store.acquire_lock(run["target"], run["id"], self.owner, LOCK_TTL)
        if runbook.page_first:
            content = pages.build(
                run, [], [], runbook, self.settings, headline="paged first; diagnosis running"
            )
            await self.outbox.enqueue(f"{run['id']}:first", "trigger", content)

        by_name = {s["name"]: s for s in existing}
        recorded = dict(by_name)  # this phase's step rows as they now stand
        ctx = self._ctx(run, runbook, existing)
        stop_reason: str | None = None
        blocked: str | None = None
        for seq, step in enumerate(runbook.steps):
            prior = by_name.get(step.name)
            pending = prior is None or prior["state"] != "done"
            withheld = (
                step.withhold(ctx)
                if pending and stop_reason is None and step.withhold and step.approval == "approve"
                else None
            )
            if (stop_reason is not None or withheld is not None) and pending:
                now = time.time()
                skipped: Row = {
                    "run_id": run["id"],
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
                await self.store.record_step(skipped)
                recorded[step.name] = skipped
                self.metrics.actions.labels(runbook.id, step.name, "skipped").inc()
                continue
            approval_id = None
            if step.approval == "approve" and (prior is None or prior["state"] != "done"):
                unoffered = offer.not_offered(step, ctx, seq)
                if unoffered is not None:  # its target is not configured: nothing to approve
                    await self.store.record_step(unoffered)
                    recorded[step.name] = unoffered
                    self.metrics.actions.labels(runbook.id, step.name, "skipped").inc()
                    continue
                approval_id = await self.store.create_approval(
                    run["id"], step.name, time.time() + self.settings.engine.approval_ttl
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
                recorded[step.name] = {"name": step.name, "outcome": "skipped"}
                continue
            recorded[step.name] = row
            if row["outcome"] in ("applied", "skipped") and row.get("result"):
                ctx.results[step.name] = row["result"].get("data", {})
            if row["outcome"] == "applied" and step.kind == "mitigate" and step.mutates:
                # Observed now; stored with the hand-over below (one write fewer).
                self._observe_mitigation(run)
            if row["outcome"] == "failed" and step.stop_on_failure:
                stop_reason = f"not run: {step.name} failed"
        if blocked is not None and not any(
            r.get("outcome") == "applied" and r.get("mutates") for r in recorded.values()
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

    async def _end_blocked(self, run: Row, runbook: Runbook, rule: Rule | None, guard: str) -> None:
        """End a run a guard stopped before it changed anything. One page per rule,
        guard and hour, P0 included: a human hears that the robot stood back, and a
        storm of blocked runs is not a page storm."""
        self.metrics.runbook_runs.labels(runbook.id, "blocked").inc()
        for a in await self.store.approvals_for_run(run["id"]):
            if a["state"] == "pending":  # a blocked run offers nothing to approve
                await self.store.transition_approval(a["id"], "pending", "expired")
        await self.store.update_run(
            run["id"],
            expect_owner=self.owner,
            state="done",
            outcome="blocked",
            blocked_by=guard,
            finished_at=time.time(),
        )
        await self.store.release_lock(run["target"], run["id"])
        # An open circuit has its own page (it opened); a P0 still hears per rule.
        if guard != "circuit_open" or runbook.page_first:
            await self._guard_page(run, runbook, rule, guard)
        log.warning(
            "run_blocked",
            run_id=run["id"],
            guard=guard,
            rule=run["rule"],
            fingerprint=run["fingerprint"],
            alertname=run["alertname"],
        )

    async def _park(
        self, run: Row, runbook: Runbook, step: str, reason: str, retry_at: float | None = None
    ) -> None:
        """Keep the run, free its worker, and have any replica go on with it later.

        ``retry_at`` None: the kill switch stopped it at a mutation; the target is
        released, a human is told once, and ``resume`` lets it go on. A time: a step
        asked to wait (a build Job running); the run keeps its target's lock and goes
        on when the time comes.
        """
        parked = await self.store.update_run(
            run["id"], expect_owner=self.owner, state="parked", detail=reason, retry_at=retry_at
        )
        if retry_at is None:
            await self.store.release_lock(run["target"], run["id"])
        if not parked:
            return
        log.info(
            "run_parked",
            run_id=run["id"],
            step=step,
            reason=reason,
            wake_in=round(retry_at - time.time(), 3) if retry_at is not None else None,
            fingerprint=run["fingerprint"],
            alertname=run["alertname"],
        )
        if retry_at is not None:
            return
        steps = await self.store.steps_for_run(run["id"])
        content = pages.build(
            run,
            steps,
            [],
            runbook,
            self.settings,
            headline=f"kill switch on: stopped before {step}, nothing changed;"
            " it goes on after `remediator resume`",
        )
        await self.outbox.enqueue(f"{run['id']}:parked", "trigger", content)

    async def _guard_page(self, run: Row, runbook: Runbook, rule: Rule | None, guard: str) -> None:
        """One page per rule, guard and clock hour: runs a guard stopped are not
        acted on, and a human must know, once, not once per run.

        The outbox's idempotency key makes it one page across runs and replicas.
        """
        hour = int(run["created_at"] // 3600)
        limit = _guard_limit(rule, guard)
        content = pages.build(
            {**run, "blocked_by": guard},
            [],
            [],
            runbook,
            self.settings,
            headline=(
                f"rule {run['rule']}: {guard} engaged ({limit}); runs it stops are"
                " not acted on: act by hand if the alert needs it"
            ),
        )
        content = replace(content, dedup_key=f"remediator/guard/{run['rule']}/{guard}/{hour}")
        await self.outbox.enqueue(f"guard:{run['rule']}:{guard}:{hour}", "trigger", content)

    async def run_page(
        self, run: Row, runbook: Runbook | None, headline: str, *, at_resolve: bool = False
    ) -> PageContent:
        """The page for ``run`` as its steps and approvals stand now."""
        steps = await self.store.steps_for_run(run["id"])
        approvals = await self.store.approvals_for_run(run["id"])
        return pages.build(
            run, steps, approvals, runbook, self.settings, headline=headline, at_resolve=at_resolve
        )

    def _observe_mitigation(self, run: Row) -> bool:
        """The first mitigation of a run: note its time and feed the histogram."""
        if run.get("mitigated_at"):
            return False
        now = time.time()
        run["mitigated_at"] = now
        self.metrics.time_to_mitigation.labels(run["runbook"]).observe(now - run["received_at"])
        return True

    async def _mitigated(self, run: Row) -> None:
        if self._observe_mitigation(run):
            await self.store.update_run(run["id"], mitigated_at=run["mitigated_at"])

    async def _finish_fire(self, run: Row, runbook: Runbook, steps: list[Row] | None) -> None:
        if steps is None:
            steps = await self.store.steps_for_run(run["id"], "fire")
        outcome = run_outcomes.run_outcome(
            run["mode"],
            (run_outcomes.StepResult(s["outcome"], bool(s.get("mutates"))) for s in steps),
        )
        self.metrics.runbook_runs.labels(runbook.id, outcome).inc()
        # A run that failed only because its labels were refused says nothing about the
        # runbook or its targets: counting it would let whoever shapes a label (a
        # spoofed source address, say) open the circuit and stop the real runs.
        failed = [s for s in steps if s["outcome"] == "failed"]
        refused_input_only = bool(failed) and all(
            (s["reason"] or "").startswith("rejected input") for s in failed
        )
        # A success closes the circuit in the hand-over's commit, below.
        close_circuit = None
        if run["mode"] == "live" and not refused_input_only:
            if failed:  # a partial run's failure counts too, as it always did
                await self._circuit_failure(runbook)
            else:
                close_circuit = runbook.id
        # Only runbooks with approval steps can have approvals: skip the read otherwise.
        approvals = (
            await self.store.approvals_for_run(run["id"])
            if any(s.approval == "approve" for s in runbook.steps)
            else []
        )
        content = pages.build(run, steps, approvals, runbook, self.settings)
        await self.outbox.enqueue(f"{run['id']}:trigger", "trigger", content)
        # Hand over: if the alert resolved while we ran, undo now; otherwise wait. The
        # target's lock is released in the same commit.
        extra = {"mitigated_at": run["mitigated_at"]} if run.get("mitigated_at") else {}
        extra.update(self.verifier.first_poll(run, steps))  # durable with the hand-over
        current = await self.store.hand_over_run(
            run["id"],
            self.owner,
            outcome,
            release_lock=run["target"],
            close_circuit=close_circuit,
            **extra,
        )
        if close_circuit is not None:
            self.metrics.circuit_state.labels(runbook.id).set(0)
        if current is None:
            if extra:  # taken over meanwhile: still record when we mitigated
                await self.store.update_run(run["id"], **extra)
            return
        log.info(
            "run_fired",
            run_id=run["id"],
            outcome=outcome,
            fingerprint=run["fingerprint"],
            alertname=run["alertname"],
        )
        if current["state"] == "undoing":
            await self.undo(current)

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

    # ----------------------------------------------------------------- resolve

    async def resolve(self, occ: Row) -> None:
        for run in await self.store.runs_for_alert(occ["fingerprint"], occ["starts_at"]):
            if run["outcome"] == "blocked" or run.get("blocked_by"):
                continue
            if not await self.store.request_undo(run["id"], time.time()):
                log.info(
                    "resolve_repeat",
                    run_id=run["id"],
                    fingerprint=occ["fingerprint"],
                    alertname=occ["alertname"],
                )
                continue
            await self.try_undo(run["id"])

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

    async def undo(self, run: Row) -> None:
        with self._executing(run["id"]):
            try:
                await self._undo(run)
            except LeaseLost as exc:
                self._lease_lost(run, exc)

    async def _undo(self, run: Row) -> None:
        runbook = self.registry.get(run["runbook"])
        if runbook is None:
            return
        all_steps = await self.store.steps_for_run(run["id"])
        done_undos = {s["name"]: s for s in all_steps if s["phase"] == "undo"}
        to_undo = [
            s
            for s in all_steps
            if s["phase"] in ("fire", "approved")
            and s["outcome"] == "applied"
            and s.get("changes") is not None
        ]
        to_undo.sort(key=lambda s: s["finished_at"] or 0, reverse=True)
        ctx = self._ctx(run, runbook, [s for s in all_steps if s["phase"] != "undo"])
        # New actions on resolve first (RB-02 replays the DLQ before re-enabling
        # alerts, as the runbook orders it), then undo in reverse order of change.
        resolved_rows = {s["name"]: s for s in all_steps if s["phase"] == "resolve"}
        try:
            for seq, step in enumerate(runbook.resolve_steps):
                if run.get("undo_reason") in ("max_duration", VERIFY_FAILED):
                    break  # the alert has not resolved: its resolve actions wait for it
                await self.steps.run(
                    step, ctx, phase="resolve", seq=seq, existing=resolved_rows.get(step.name)
                )
            ctx.mode = "live"  # undo puts back what was actually changed
            for seq, s in enumerate(to_undo):
                step = runbook.step(s["name"])
                if step.undo is None:
                    continue
                await self.steps.run(
                    step,
                    ctx,
                    phase="undo",
                    seq=seq,
                    existing=done_undos.get(step.name),
                    changes=s["changes"],
                )
        except Deferred as exc:
            # Kept, never lost: back to waiting, and the maintenance loop tries again
            # after `resume`, or (an unconfirmed resolve) after UNDO_RECHECK.
            retry_at = time.time() + (UNDO_RECHECK if exc.guard == "not_corroborated" else 0)
            await self.store.update_run(
                run["id"], expect_owner=self.owner, state="waiting", retry_at=retry_at
            )
            log.warning(
                "undo_deferred",
                run_id=run["id"],
                reason=exc.reason,
                fingerprint=run["fingerprint"],
                alertname=run["alertname"],
            )
            return
        if run.get("undo_reason") in ("max_duration", VERIFY_FAILED):
            if run["undo_reason"] == VERIFY_FAILED:
                await self.verifier.undone_page(run, runbook)
            else:
                await self.upkeep.expired_page(run, runbook)
            await self.store.update_run(
                run["id"],
                expect_owner=self.owner,
                state="done",
                undo_state="done",
                finished_at=time.time(),
            )
            return
        for a in await self.store.approvals_for_run(run["id"]):
            if a["state"] == "pending":  # the alert is gone: nothing left to approve
                await self.store.transition_approval(a["id"], "pending", "expired")
        content = await self.run_page(run, runbook, "alert resolved", at_resolve=True)
        await self.outbox.enqueue(f"{run['id']}:resolve", "resolve", content)
        await self.store.update_run(
            run["id"],
            expect_owner=self.owner,
            state="done",
            undo_state="done",
            finished_at=time.time(),
        )
        log.info(
            "run_undone",
            run_id=run["id"],
            undone=len(to_undo),
            fingerprint=run["fingerprint"],
            alertname=run["alertname"],
        )

    # --------------------------------------------------------------- approvals

    async def decide(self, approval_id: int, decision: str, who: str) -> Decision:
        a = await self.store.get_approval(approval_id)
        if a is None:
            return Decision("not_found")
        if not await self.store.decide_approval(approval_id, decision, who):
            current = await self.store.get_approval(approval_id)
            state = current["state"] if current else "?"
            if state == "pending":
                state = "expired"
            return Decision("conflict", f"approval {approval_id} is {state}")
        log.warning(
            "approval_decided",
            approval=approval_id,
            decision=decision,
            by=who,
            run_id=a["run_id"],
            step=a["step"],
        )
        return Decision("ok")

    async def run_approved(self, approval: Row) -> None:
        run = await self.store.get_run(approval["run_id"])
        runbook = self.registry.get(run["runbook"]) if run else None
        if run is None or runbook is None:
            await self.store.transition_approval(approval["id"], "executing", "failed")
            return
        step = runbook.step(approval["step"])
        steps = await self.store.steps_for_run(run["id"])
        ctx = self._ctx(run, runbook, [s for s in steps if s["phase"] == "fire"])
        prior = next(
            (s for s in steps if s["phase"] == "approved" and s["name"] == step.name), None
        )
        try:
            row = await self.steps.run(step, ctx, phase="approved", seq=len(steps), existing=prior)
        except Deferred:
            # The decision stands; the step runs after `resume`.
            await self.store.transition_approval(approval["id"], "executing", "approved")
            return
        except Blocked as exc:
            row = {"outcome": "skipped", "reason": exc.reason}
        await self.store.transition_approval(
            approval["id"], "executing", "executed" if row["outcome"] == "applied" else "failed"
        )
        if row["outcome"] == "applied" and step.kind == "mitigate":
            await self._mitigated(run)
            await self.verifier.schedule_after_approval(run)
        content = await self.run_page(run, runbook, f"approved step {step.name}: {row['outcome']}")
        await self.outbox.enqueue(f"{run['id']}:approved:{approval['id']}", "trigger", content)

    # ---------------------------------------------------------------- recovery

    async def maintain(self) -> None:
        """One pass of the background work every replica does (engine/upkeep.py)."""
        await self.upkeep.run()

    async def resume(self, run: Row, *, parked: bool = False) -> None:
        """Finish a run whose owner died: never redo a completed step."""
        runbook = self.registry.get(run["runbook"])
        if runbook is None:
            return
        log.warning(
            "run_resumed",
            run_id=run["id"],
            state=run["state"],
            fingerprint=run["fingerprint"],
            alertname=run["alertname"],
        )
        self._leases[run["id"]] = run["lease_until"]
        if parked and run.get("undo_state") == "requested":
            # Resolved while it was parked: nothing more to do but undo what it did.
            # Only a parked run: it stopped at the gate, so none of its steps is left
            # "started". A run whose owner died mid-step (its resolve may have come
            # meanwhile) goes through fire(), which settles that step (a read is run
            # again, a mutation of unknown outcome is failed and told), then undoes.
            with self._executing(run["id"]):
                await self._finish_fire(run, runbook, None)
        elif run["state"] == "running":
            await self.fire(run, runbook, self._current_rule(run["rule"]))
        elif run["state"] == "undoing":
            await self.undo(run)
