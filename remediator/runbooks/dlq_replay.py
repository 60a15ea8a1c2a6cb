"""RB-02 step 6, on resolve, as an action: replay the provider's dead-letter queue as a Job.

Only once the provider's own status URL reports healthy again (otherwise the replay
would fail into the DLQ once more, and the page says to replay by hand). The Job runs
``python -m jobs.replay_dlq --provider P --max-retries N`` in a copy of the worker's
pod template (``runbooks.jobs``), named after the provider and the run, so a resolve
delivered twice creates it once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar, Protocol

from remediator import validation
from remediator.errors import TargetError
from remediator.runbook_api.context import Clients
from remediator.runbook_api.steps import Done, Need, Skip, StepFailed
from remediator.runbooks import jobs


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


@dataclass(frozen=True)
class ReplayDlq:
    """Start the replay Job for ``provider``, once its status URL reports healthy
    (``run_id`` None: a plan, before the run that names the Job exists)."""

    provider: str
    params: ReplayParams
    run_id: str | None
    namespace: str

    needs: ClassVar[Need] = "kubernetes"
    mutates: ClassVar[bool] = True

    def render(self) -> str:
        # A plan has no run yet: the Job will be named after the run that starts it.
        name = (
            f"replay-dlq-{_slug(self.provider)}-<run id>"
            if self.run_id is None
            else job_name(self.provider, self.run_id)
        )
        p = self.params
        return (
            jobs.render(
                self.namespace,
                name,
                command(self.provider, p),
                deployment=p.replay_deployment,
                image=p.replay_image,
            )
            + "\n# once the provider reports healthy"
        )

    async def execute(self, clients: Clients) -> Done | Skip:
        provider, p = self.provider, self.params
        if self.run_id is None:
            raise StepFailed("a plan's replay cannot run: it has no run to name its Job after")
        http = clients.need_http()
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
        name = job_name(provider, self.run_id)
        await jobs.start(
            clients.need_kubernetes(),
            name,
            command(provider, p),
            deployment=p.replay_deployment,
            container=p.replay_container,
            image=p.replay_image,
            labels={
                "app.kubernetes.io/managed-by": "remediator",
                "remediator/runbook": "RB-02",
                "remediator/provider": _slug(provider),
                "remediator/run": self.run_id,
            },
            ttl_seconds=p.job_ttl_seconds,
        )
        return Done(f"started DLQ replay job {name} for {provider}", data={"job": name})
