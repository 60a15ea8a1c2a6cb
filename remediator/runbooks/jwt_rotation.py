"""RB-06 step 1 (approve), as an action: rotate the JWT secret and restart the API.

Every token signed with the leaked secret stops working; users log in again. The new
secret exists only in the action's execute and the patch request: never in the action
(so never in a plan or a page), step data, changes or logs. There is no undo: rotating
back to a leaked secret would be wrong.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import ClassVar

from remediator.runbook_api.action_steps import step
from remediator.runbook_api.context import Clients, StepContext
from remediator.runbook_api.steps import Done, Need, StepOutcome
from remediator.runbooks import plan
from remediator.runbooks.rb06_params import Params


@dataclass(frozen=True)
class RotateJwtSecret:
    secret: str
    key: str
    deployment: str
    namespace: str

    needs: ClassVar[Need] = "kubernetes"
    mutates: ClassVar[bool] = True

    def render(self) -> str:
        ns = self.namespace
        return (
            f"kubectl patch secret {self.secret} -n {ns} --type merge -p"
            f' \'{{"data": {{"{self.key}": "<new random secret, base64;'
            " never shown>\"}}' && kubectl rollout restart"
            f" deployment/{self.deployment} -n {ns}"
        )

    async def execute(self, clients: Clients) -> StepOutcome:
        kube = clients.need_kubernetes()
        # Lives only here and in the request; never in data, changes, logs or pages.
        await kube.patch_secret(self.secret, {self.key: secrets.token_urlsafe(32)})
        stamp = await kube.rollout_restart(self.deployment)
        record = {
            "secret": self.secret,
            "key": self.key,
            "deployment": self.deployment,
            "restarted_at": stamp,
        }
        # The old secret is leaked: rotating back would be wrong, so there is no undo.
        return Done(
            f"rotated {self.key} in secret {self.secret} and restarted"
            f" deployment {self.deployment} (restartedAt {stamp}): every token is"
            " invalid, users must log in again",
            data=record,
            changes=record,
        )


@step(
    "rotate_jwt_secret",
    "mitigate",
    "Rotate the JWT secret and restart the API",
    mutates=True,
    approval="approve",
    needs=("kubernetes",),
    timeout=60.0,
)
def rotate_jwt_secret(ctx: StepContext[Params]) -> RotateJwtSecret:
    p = ctx.params
    return RotateJwtSecret(
        p.jwt_secret_name, p.jwt_secret_key, p.api_deployment, plan.namespace(ctx)
    )
