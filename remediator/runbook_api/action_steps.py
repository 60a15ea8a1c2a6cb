"""A step declared as the action it takes: run, plan and undo from one object.

``@step(...)`` turns a function that builds a typed action from the step's context
into a ``Step``: the engine runs ``action.execute``, plans and audits
``action.render()``, and on resolve runs the action's own undo (or the one given)
and audits that undo's call. There is no separate render function to drift from
what runs. Every built-in runbook and every YAML runbook is built this way.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from remediator.errors import InputRejected, RemediatorError, StepFailed
from remediator.runbook_api.actions import Action
from remediator.runbook_api.context import StepContext
from remediator.runbook_api.steps import (
    Approval,
    Kind,
    Need,
    PlannedNeeds,
    Requirement,
    Skip,
    Step,
    StepOutcome,
)

BuildAction = Callable[[StepContext[Any]], Action]


@dataclass(frozen=True)
class Precondition:
    """A named condition a step needs, shown in every plan and checked right before
    the step runs (and before an approval is offered): unmet, the step is skipped
    with the reason, and an approval is not offered."""

    name: str  # as a plan shows it: "top_offenders found the offenders"
    unmet: Callable[[StepContext[Any]], str | None]  # why it does not hold (None: it holds)

    def reason(self, ctx: StepContext) -> str | None:
        why = self.unmet(ctx)
        return None if why is None else f"precondition not met: {self.name} ({why})"


def found_by(step_name: str, what: str) -> Precondition:
    """The precondition "an earlier step of this run found what this one acts on"."""

    def unmet(ctx: StepContext) -> str | None:
        return None if step_name in ctx.results else f"{step_name} did not run or failed"

    return Precondition(f"{step_name} found {what}", unmet)


BuildUndo = Callable[[StepContext[Any], Mapping[str, Any]], Action]

_SQL = re.compile(r"\s*(--|(BEGIN|SELECT|UPDATE|DELETE|INSERT|WITH)\b)", re.IGNORECASE)


def _comment_mark(call: str) -> str:
    """How a note is appended to a call so that it still pastes: a SQL comment after
    SQL, a shell comment after a command."""
    return "--" if _SQL.match(call) else "#"


@runtime_checkable
class Undoable(Protocol):
    """An action that builds its own undo from what it recorded (KubeScale)."""

    def undo(self, changes: Mapping[str, object]) -> Action: ...
    def planned_undo(self) -> str: ...


def step(
    name: str,
    kind: Kind,
    title: str,
    *,
    mutates: bool,
    needs: tuple[Need, ...] = (),
    approval: Approval = "auto",
    temporary: bool = False,
    undo: BuildUndo | None = None,
    timeout: float = 30.0,
    stop_on_failure: bool = False,
    requires: tuple[Requirement, ...] = (),
    attempts: int = 3,
    backoff: float = 0.5,
    idempotent: bool = False,
    withhold: Callable[[StepContext[Any]], str | None] | None = None,
    preconditions: tuple[Precondition, ...] = (),
) -> Callable[[BuildAction], Step]:
    """Declare a step at the function that builds its action (as kopf's handler
    decorators do): the decorated name is the ``Step``, so a runbook's step list reads
    as the names of its functions.

        @step("raise_cooldown", "mitigate", "Raise every cooldown", mutates=True,
              temporary=True)
        def raise_cooldown(ctx: StepContext[Params]) -> GlobalCooldown: ...

    ``temporary``: undone on resolve, by ``undo`` or else the action's own undo.
    ``withhold``: why an approval is not offered in this run (nothing to approve).
    """

    def declare(build: BuildAction) -> Step:
        def unmet(ctx: StepContext) -> str | None:
            return next((r for p in preconditions if (r := p.reason(ctx)) is not None), None)

        async def run(*, ctx: StepContext, **_: Any) -> StepOutcome:
            if (reason := unmet(ctx)) is not None:
                return Skip(reason)
            return await build(ctx).execute(ctx.clients)

        def render(*, ctx: StepContext, **_: Any) -> str:
            text = build(ctx).render()
            text = f"{text}  # undone on resolve" if temporary else text
            mark = _comment_mark(text)
            return "\n".join([text, *(f"{mark} precondition: {p.name}" for p in preconditions)])

        def undo_action(ctx: StepContext, changes: Mapping[str, Any]) -> Action:
            if undo is not None:
                return undo(ctx, changes)
            action = build(ctx)
            if not isinstance(action, Undoable):
                raise StepFailed(f"step {name}: its action has no undo")
            return action.undo(changes)

        async def run_undo(
            *, ctx: StepContext, changes: Mapping[str, Any], **_: Any
        ) -> StepOutcome:
            return await undo_action(ctx, changes).execute(ctx.clients)

        # The undo's audit row shows the call the undo makes, not the step's own; a plan
        # (nothing recorded yet) shows it with a placeholder for the recorded values.
        def render_undo(*, ctx: StepContext, changes: Mapping[str, Any], **_: Any) -> str:
            if not changes and undo is None:
                action = build(ctx)
                if isinstance(action, Undoable):
                    return action.planned_undo()
            return undo_action(ctx, changes).render()

        def plan_needs(ctx: StepContext) -> PlannedNeeds:
            try:
                action = build(ctx)
            except (RemediatorError, ValueError):
                # Inputs that cannot build the action (a rejected label, a record that
                # does not validate): the plan's call says so (safe_render), and there
                # is no client to name.
                return PlannedNeeds(needs)
            own = (action.needs,) if action.needs is not None else ()
            corroborates = bool(getattr(action, "corroborates", False))
            return PlannedNeeds(tuple(dict.fromkeys((*needs, *own))), corroborates)

        def withhold_approval(ctx: StepContext) -> str | None:
            # An approval whose inputs fail their checks could only fail once approved.
            try:
                build(ctx)
            except InputRejected as exc:
                return f"rejected input {exc}"
            if (reason := unmet(ctx)) is not None:
                return reason
            return withhold(ctx) if withhold is not None else None

        return Step(
            name=name,
            kind=kind,
            title=title,
            run=run,
            render=render,
            mutates=mutates,
            approval=approval,
            undo=run_undo if temporary else None,
            render_undo=render_undo if temporary else None,
            timeout=timeout,
            stop_on_failure=stop_on_failure,
            needs=needs,
            withhold=withhold_approval if approval == "approve" else None,
            withhold_reads_run=withhold is not None or bool(preconditions),
            plan_needs=plan_needs,
            requires=requires,
            attempts=attempts,
            backoff=backoff,
            idempotent=idempotent,
        )

    return declare
