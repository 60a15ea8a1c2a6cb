"""RB-02 step 6, on resolve: replay the provider's dead-letter queue as a Job.

Only once the provider's own status URL reports healthy again (otherwise the replay
would fail into the DLQ once more, and the page says to replay by hand). The Job runs
``python -m jobs.replay_dlq --provider P --max-retries N`` in a copy of the worker's
pod template (``runbooks.jobs``), named after the provider and the run, so a resolve
delivered twice creates it once.
"""

from __future__ import annotations

import re
from typing import Protocol

from remediator import validation
from remediator.errors import TargetError
from remediator.runbook_api.context import PLAN_RUN_ID, StepContext
from remediator.runbook_api.steps import Done, Skip
from remediator.runbooks import jobs, plan


class ReplayParams(Protocol):
    """What the replay reads of RB-02's params (rb02_provider_outage.Params, which
    imports this module: the runbook hands them over, typed)."""

    @property
    def replay_deployment(self) -> str: ...
    @property
    def replay_container(self) -> str | None: ...
    @property
    def replay_image(self) -> str | None: ...
    @property
    def replay_max_retries(self) -> int: ...
    @property
    def job_ttl_seconds(self) -> int: ...


def _slug(provider: str) -> str:
    """A validated provider name as a DNS label part ("My_Feed" -> "my-feed")."""
    return re.sub(r"[^a-z0-9-]", "-", provider.lower())[:30].strip("-") or "provider"


def job_name(provider: str, run_id: str) -> str:
    return validation.k8s_name(
        f"replay-dlq-{_slug(provider)}-{run_id.lower()}"[:63].rstrip("-"), field="job"
    )


def command(provider: str, params: ReplayParams) -> list[str]:
    return [
        "python",
        "-m",
        "jobs.replay_dlq",
        "--provider",
        provider,
        "--max-retries",
        str(params.replay_max_retries),
    ]


async def replay(ctx: StepContext, provider: str, p: ReplayParams) -> Done | Skip:
    http = ctx.clients.need_http()
    try:
        health = await http.provider_status(provider)
    except TargetError as exc:
        return Skip(
            f"cannot confirm {provider} recovered ({str(exc)[:120]}); replay the DLQ"
            " by hand once it has"
        )
    if not health.healthy:
        return Skip(
            f"{provider} still reports down ({health.detail}); replay the DLQ by hand"
            " once it recovers"
        )
    name = job_name(provider, ctx.run_id)
    await jobs.start(
        ctx.clients.need_kubernetes(),
        name,
        command(provider, p),
        deployment=p.replay_deployment,
        container=p.replay_container,
        image=p.replay_image,
        labels={
            "app.kubernetes.io/managed-by": "remediator",
            "remediator/runbook": "RB-02",
            "remediator/provider": _slug(provider),
            "remediator/run": ctx.run_id,
        },
        ttl_seconds=p.job_ttl_seconds,
    )
    return Done(f"started DLQ replay job {name} for {provider}", data={"job": name})


def render(ctx: StepContext, provider: str, p: ReplayParams) -> str:
    # A plan has no run yet: the Job will be named after the run that starts it.
    name = (
        f"replay-dlq-{_slug(provider)}-<run id>"
        if ctx.run_id == PLAN_RUN_ID
        else job_name(provider, ctx.run_id)
    )
    return (
        jobs.render(
            plan.namespace(ctx),
            name,
            command(provider, p),
            deployment=p.replay_deployment,
            image=p.replay_image,
        )
        + "\n# once the provider reports healthy"
    )
