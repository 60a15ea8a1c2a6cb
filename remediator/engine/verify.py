"""Verify a mitigation against Prometheus: did it hold?

A rule's ``verify: {query, within, on_failure}`` is checked after a run that acted
(a mutating step applied in live mode) hands over. The hand-over writes the first
``runs.verify_at`` in its own commit; from then on every replica's maintenance pass
finds due polls (``state/verifications.py``), claims one, asks Prometheus once, and
writes the next poll time with the poll's record. No worker waits between polls, a
restart loses nothing, and any replica can continue (DESIGN principle 8).

Outcomes, in the ``verify`` step row (phase ``verify``) and in
``remediator_verifications_total{runbook,outcome}``:

- ``held``: the query returned a true result in time (``holds``);
- ``failed``: Prometheus answered, never true, up to the poll at ``within``: page
  "mitigation did not hold" and, with ``on_failure: undo``, undo the run's temporary
  changes through the gate (undo reason ``verify_failed``);
- ``no_data``: Prometheus did not answer the window's last poll (or never did, or
  ``targets.prometheus`` is not configured): page, never undo (an outage of the
  witness is not evidence).

A query may name the alert's labels as ``"{{ $labels.NAME }}"`` (with the quotes):
the whole token becomes a PromQL string literal of the value, escaped, so a label
value can never change the query's shape.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from remediator import logs
from remediator.clients.prometheus import EMPTY, PrometheusClient
from remediator.engine.base import run_log
from remediator.engine.rules import RuleSet, Verify

# Re-exported: callers and tests name them as engine.verify's.
from remediator.engine.verify_query import holds as holds
from remediator.engine.verify_query import render_query as render_query
from remediator.engine.verify_query import split_comparison as split_comparison
from remediator.errors import TargetError
from remediator.runbook_api.client_protocols import PrometheusWitness, PromReading
from remediator.runbook_api.steps import Runbook
from remediator.state import verifications as state
from remediator.state.backend import Row
from remediator.state.records import Run, StepRecord
from remediator.state.verifications import VERIFY_FAILED

if TYPE_CHECKING:
    from remediator.engine.engine import Engine

log = logs.get("remediator.verify")

OUTCOMES = ("held", "failed", "no_data")
PHASE = "verify"
STEP = "verify_mitigation"  # not "verify": several runbooks have a step of that name
# Polls are spaced a twentieth of the window, within these bounds: often enough to
# see a recovery soon, rarely enough that a 15 minute window costs 30 queries.
MIN_POLL = 1.0
MAX_POLL = 30.0
# The step row's outcome column speaks the audit trail's words.
_STEP_OUTCOME = {"held": "applied", "failed": "failed", "no_data": "skipped"}


def poll_every(within: float) -> float:
    return min(MAX_POLL, max(MIN_POLL, within / 20))


def acted(steps: Sequence[StepRecord]) -> bool:
    """A mutating step of the firing or an approval was applied: there is a
    mitigation to verify (dry-run and kill-switch plans are not applied)."""
    return any(
        s.phase in ("fire", "approved") and s.mutates and s.outcome == "applied" for s in steps
    )


def warnings(ruleset: RuleSet, prometheus_configured: bool) -> list[str]:
    """check-rules and start-up: rules whose verification can only end as no_data."""
    if prometheus_configured:
        return []
    return [
        f"{r.source}: rule {r.name!r}: warning: verify is set but targets.prometheus is not"
        " configured: every verification will end as no_data (and page)"
        for r in ruleset.rules
        if r.verify is not None
    ]


@dataclass(frozen=True)
class Progress:
    """What the polls so far found; kept in the step row's result data."""

    query: str
    on_failure: str
    within: float
    deadline: float
    polls: int = 0
    answered: bool = False  # Prometheus answered at least once
    last_value: str = ""
    last_error: str = ""
    answered_last: bool = False  # the latest poll got an answer

    @classmethod
    def of(cls, data: Mapping[str, Any]) -> Progress:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})

    def last(self) -> str:
        if self.answered and (self.answered_last or not self.last_error):
            return self.last_value
        if self.answered:
            return (
                f"no answer from Prometheus since it answered {self.last_value} ({self.last_error})"
            )
        return f"no answer from Prometheus ({self.last_error or 'not asked'})"


class Verifier:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._own_client: PrometheusClient | None = None

    # ------------------------------------------------------------- schedule

    def first_poll(self, run: Run, steps: Sequence[StepRecord]) -> dict[str, float]:
        """Fields for the hand-over's commit: when to poll first, if at all."""
        rule = self.engine._current_rule(run.rule)
        if rule is None or rule.verify is None or run.mode != "live" or not acted(steps):
            return {}
        return {"verify_at": time.time()}

    async def schedule_after_approval(self, run: Run) -> None:
        """An approved mitigation of a run that had none to verify: verify it now."""
        if run.state != "waiting":
            return
        steps = await self.engine.store.steps_for_run(run.id)
        if run.verify_at is not None or any(s.phase == PHASE for s in steps):
            return
        first = self.first_poll(run, steps).get("verify_at")
        if first is not None:
            await self.engine.store.update_run(run.id, verify_at=first)

    # ---------------------------------------------------------------- polls

    def _client(self) -> PrometheusWitness | None:
        if self.engine.clients.prometheus is not None:
            return self.engine.clients.prometheus
        target = self.engine.settings.targets.prometheus
        if target is None:
            return None
        # corroborate: false leaves the witness out of Clients; verification still
        # needs Prometheus, with the same URL and timeout.
        if self._own_client is None:
            self._own_client = PrometheusClient(target.url, timeout=target.timeout)
        return self._own_client

    async def aclose(self) -> None:
        if self._own_client is not None:
            await self._own_client.aclose()
            self._own_client = None

    def _claim_for(self) -> float:
        target = self.engine.settings.targets.prometheus
        return (target.timeout if target is not None else 5.0) * 2 + 10.0

    async def due(self, limit: int) -> list[state.DuePoll]:
        return await state.due_polls(self.engine.store, time.time(), limit)

    async def poll(self, due: state.DuePoll) -> None:
        """One poll of one run's verification, if no other replica has taken it."""
        store = self.engine.store
        claimed = time.time() + self._claim_for()
        if not await state.claim_poll(store, due, claimed):
            return
        run = await store.get_run(due.run_id)
        if run is None:
            return
        prior = next((s for s in await store.steps_for_run(run.id, PHASE)), None)
        if prior is not None and prior.state == "done":
            # Concluded by a poll that died before its follow-through: finish it.
            await self._follow_through(run, prior.to_row(), claimed)
            return
        data = prior.data if prior is not None else {}
        if data:
            progress = Progress.of(data)
        else:
            rule = self.engine._current_rule(run.rule)
            if rule is None or rule.verify is None:  # the rule lost its verify meanwhile
                await state.record_poll(store, self._row(run, None, ""), claimed, None)
                return
            progress = self._start(run, rule.verify, due.verify_at)
        progress, outcome = await self._ask(progress)
        row = self._row(run, progress, outcome)
        if outcome is None:
            next_at = min(time.time() + poll_every(progress.within), progress.deadline)
            await state.record_poll(store, row, claimed, next_at)
            return
        if await state.record_poll(store, row, claimed, claimed):
            await self._follow_through(run, row, claimed)

    def _start(self, run: Run, verify: Verify, since: float) -> Progress:
        query = render_query(verify.query, run.labels)
        return Progress(
            query=query,
            on_failure=verify.on_failure,
            within=verify.within,
            deadline=since + verify.within,
        )

    async def _ask(self, p: Progress) -> tuple[Progress, str | None]:
        client = self._client()
        p = replace(p, polls=p.polls + 1)
        if client is None:
            # Nothing will ever answer: say so now rather than at the deadline.
            return replace(p, last_error="targets.prometheus is not configured"), "no_data"
        try:
            answer = await client.instant(p.query)
        except TargetError as exc:
            p = replace(p, last_error=str(exc), answered_last=False)
        else:
            if holds(p.query, answer):
                return replace(
                    p, answered=True, answered_last=True, last_value=answer.value
                ), "held"
            last_value = await self._explain(client, p, answer)
            p = replace(p, answered=True, answered_last=True, last_value=last_value)
        if time.time() < p.deadline:
            return p, None
        # The window's last poll decides: "failed" (and its undo) needs Prometheus's
        # word at the end. A false answer early in the window, before the mitigation
        # could show, and then silence is no evidence that it did not hold.
        return p, "failed" if p.answered_last else "no_data"

    async def _explain(self, client: PrometheusWitness, p: Progress, answer: PromReading) -> str:
        """A false answer in words. A comparison that filtered every series out
        answers nothing: ask its left side, so the page shows the value that failed."""
        comparison = split_comparison(p.query) if answer.value == EMPTY else None
        if comparison is None:
            return answer.value
        lhs, condition = comparison
        try:
            left = await client.instant(lhs)
        except TargetError:
            return answer.value
        if left.value == EMPTY:
            return f"no series ({lhs} has no data)"
        return f"{left.value} (not {condition})"

    def _row(self, run: Run, p: Progress | None, outcome: str | None) -> Row:
        now = time.time()
        row: Row = {
            "run_id": run.id,
            "phase": PHASE,
            "seq": 0,
            "name": STEP,
            "kind": "verify",
            "mutates": False,
            "approval": "auto",
            "state": "waiting" if outcome is None else "done",
            "outcome": _STEP_OUTCOME.get(outcome or "", "skipped" if p is None else None),
            "rendered": p.query if p is not None else "",
            "result": None,
            "changes": None,
            "reason": None,
            "attempts": p.polls if p is not None else 0,
            "started_at": run.mitigated_at or now,
            "finished_at": now if outcome is not None else None,
        }
        if p is None:
            return {**row, "state": "done", "reason": "not done: the rule no longer has verify"}
        data = {**p.__dict__, "outcome": outcome}
        words = describe(p, outcome)
        row["result"] = {"summary": words, "data": data}
        if outcome in ("failed", "no_data"):
            row["reason"] = words
        return row

    async def _follow_through(self, run: Run, row: Row, claimed: float) -> None:
        data = row["result"]["data"] if row.get("result") else {}
        outcome = data.get("outcome")
        # The resolve (or max_duration) took the mitigation back first: its page has
        # told the human; a later "did not hold, will be undone" would reopen a
        # resolved incident for an undo that is already done.
        taken_back = run.undo_state is not None and run.undo_reason != VERIFY_FAILED
        if outcome in OUTCOMES:
            self.engine.metrics.verifications.labels(run.runbook, outcome).inc()
            logger = run_log(run, log)
            emit = logger.info if outcome == "held" else logger.warning
            emit(
                "verification_finished",
                outcome=outcome,
                query=data.get("query"),
                last_value=Progress.of(data).last(),
                paged=outcome != "held" and not taken_back,
            )
            if outcome != "held" and not taken_back:
                await self._page(run, Progress.of(data), outcome)
        # The undo is asked for before the schedule is cleared: a crash in between
        # leaves a requested undo, which maintenance takes up (runs_waiting_undo).
        undo = outcome == "failed" and data.get("on_failure") == "undo"
        requested = undo and await state.request_undo(self.engine.store, run.id)
        if not await state.record_poll(self.engine.store, row, claimed, None):
            return  # another replica took the follow-through over
        if requested:
            await self.engine.try_undo(run.id)

    async def _page(self, run: Run, p: Progress, outcome: str) -> None:
        runbook = self.engine.registry.get(run.runbook)
        if outcome == "failed":
            then = (
                "its temporary changes will be undone (on_failure: undo)"
                if p.on_failure == "undo"
                else "nothing was undone (on_failure: page): look at it by hand"
            )
            headline = (
                f"mitigation did not hold: {p.query} was not true within {int(p.within)} s,"
                f" last value {p.last()}; {then}"
            )
        else:
            headline = (
                f"mitigation not verified: {p.last()}; {p.query} could not be checked,"
                " nothing was undone: look at it by hand"
            )
        await self.engine.pager.send(f"{run.id}:verify", run, runbook, headline)

    async def undone_page(self, run: Run, runbook: Runbook) -> None:
        """The undo a failed verification asked for is done: say what it put back."""
        await self.engine.pager.send(
            f"{run.id}:{VERIFY_FAILED}",
            run,
            runbook,
            "mitigation did not hold: temporary mitigations undone; the alert may"
            " still be firing: look at it by hand",
        )


def describe(p: Progress, outcome: str | None) -> str:
    """One line for the page and the audit trail."""
    if outcome == "held":
        return f"held: {p.query} is true ({p.last_value}) after {p.polls} poll(s)"
    if outcome == "failed":
        return f"did not hold: {p.query} was never true; last value {p.last_value}"
    if outcome == "no_data":
        return f"no_data: {p.query} could not be checked: {p.last()}"
    return f"pending: {p.query} not true yet ({p.last()}); {p.polls} poll(s) so far"
