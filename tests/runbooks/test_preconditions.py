"""Named preconditions of a declared step: every plan shows them as a comment that
keeps the call pasteable (SQL after SQL, shell after a command), a run skips the step
naming the unmet one before its action runs, and an approval whose precondition is
unmet is not offered."""

from __future__ import annotations

from remediator.runbook_api.action_steps import found_by, step
from remediator.runbook_api.actions import KubeRestart, Sql
from remediator.runbook_api.context import AlertView, Clients, StepContext
from remediator.runbook_api.steps import NoParams, Skip


def _ctx(results: dict[str, dict[str, object]] | None = None) -> StepContext:
    return StepContext(
        run_id="r1",
        rule="rule",
        runbook="RB-X",
        alert=AlertView("Alert", "f", "s", {}, {}),
        params=NoParams(),
        mode="live",
        clients=Clients(),  # no client: reaching one would raise NotConfigured
        results=dict(results or {}),
    )


@step(
    "restart",
    "mitigate",
    "Restart the worker",
    mutates=True,
    approval="approve",
    preconditions=(found_by("backlog", "the backlog"),),
)
def restart(ctx: StepContext) -> KubeRestart:
    return KubeRestart("worker", "apps")


@step("drain", "mitigate", "Drain", mutates=True, preconditions=(found_by("backlog", "it"),))
def drain(ctx: StepContext) -> Sql:
    return Sql("DELETE FROM jobs WHERE stale", mutates=True)


def test_the_plan_shows_the_precondition_as_a_comment_of_the_calls_language() -> None:
    assert restart.render(ctx=_ctx()) == (
        "kubectl rollout restart deployment/worker -n apps\n"
        "# precondition: backlog found the backlog"
    )
    assert drain.render(ctx=_ctx()).endswith("\n-- precondition: backlog found it")


async def test_an_unmet_precondition_skips_the_step_before_its_action_runs() -> None:
    outcome = await drain.run(ctx=_ctx())
    assert outcome == Skip("precondition not met: backlog found it (backlog did not run or failed)")


def test_an_approval_is_offered_only_when_its_precondition_holds() -> None:
    assert restart.withhold is not None
    assert restart.withhold(_ctx()) == (
        "precondition not met: backlog found the backlog (backlog did not run or failed)"
    )
    assert restart.withhold(_ctx({"backlog": {"rows": 3}})) is None
