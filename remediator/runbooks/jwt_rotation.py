"""RB-06 step 1 (approve): rotate the JWT secret and restart the API.

Every token signed with the leaked secret stops working; users log in again. The new
secret exists only in this step's local variable and the patch request: never in step
data, changes, logs or pages. There is no undo: rotating back to a leaked secret would
be wrong.
"""

from __future__ import annotations

import secrets
from typing import Any

from remediator.runbook_api.context import StepContext
from remediator.runbook_api.steps import Done
from remediator.runbooks import plan
from remediator.runbooks.rb06_params import Params


async def rotate_jwt_secret(*, ctx: StepContext, **_: Any) -> Done:
    p = ctx.params_as(Params)
    kube = ctx.clients.need_kubernetes()
    # Lives only here and in the request; never in data, changes, logs or pages.
    await kube.patch_secret(p.jwt_secret_name, {p.jwt_secret_key: secrets.token_urlsafe(32)})
    stamp = await kube.rollout_restart(p.api_deployment)
    record = {
        "secret": p.jwt_secret_name,
        "key": p.jwt_secret_key,
        "deployment": p.api_deployment,
        "restarted_at": stamp,
    }
    # The old secret is leaked: rotating back would be wrong, so there is no undo.
    return Done(
        f"rotated {p.jwt_secret_key} in secret {p.jwt_secret_name} and restarted"
        f" deployment {p.api_deployment} (restartedAt {stamp}): every token is"
        " invalid, users must log in again",
        data=record,
        changes=record,
    )


def render_rotate_jwt_secret(*, ctx: StepContext, **_: Any) -> str:
    p = ctx.params_as(Params)
    ns = plan.namespace(ctx)
    return (
        f"kubectl patch secret {p.jwt_secret_name} -n {ns} --type merge -p"
        f' \'{{"data": {{"{p.jwt_secret_key}": "<new random secret, base64;'
        " never shown>\"}}' && kubectl rollout restart"
        f" deployment/{p.api_deployment} -n {ns}"
    )
