"""RB-02 Provider outage, as declared steps (P2: a notification, not a page).

Runbook order, automated:

    2 check the provider's status URL             diagnose
    3 pause the active alerts that depend on it   mitigate; records exactly which ids
    4 verify the cache serves last-good data      verify (Redis; a dead Redis fails
                                                  this step only)
    on resolve:
      6 replay the DLQ as a Kubernetes Job           (resolve step, once the provider
                                                      reports healthy again)
      7 re-enable exactly the alerts step 3 paused   (undo of step 3)

The engine runs resolve steps before undos (engine/undo.py), so the replay comes
before re-enabling, as the runbook orders them; both happen on the same resolve.

The provider comes from the alert's ``provider`` label and must name a configured
provider (``targets.http.providers``; without settings, the ``providers`` param). The
run's target is that validated provider (``RB-02:fmp``), so each configured provider
has its own lock, cooldown and blast-radius slot, whatever the params list says.

A payload is a claim: the alerts are paused only when the provider's own status URL
confirms the outage (or does not answer). A provider that reports healthy makes the
run "not corroborated": nothing is paused, and the guard ``not_corroborated`` counts it.

The runbook's step 7 re-enables every alert of the provider, including ones a human
disabled on purpose; this module re-enables only the ids it paused, and only those
still paused. It must never put an unchecked label into SQL or a Job.

Each step is an action declared with ``@step`` at the function that builds it: the
plan, the page, the audit row and the run are that one object. Its parts: rb02_params
(params, the provider), rb02_alerts (step 3 and its undo), dlq_replay (step 6's
action); steps 2, 4 and 6 and the declaration live here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from remediator.errors import NotCorroborated, TargetError
from remediator.runbook_api.action_steps import step
from remediator.runbook_api.context import PLAN_RUN_ID, Clients, StepContext
from remediator.runbook_api.steps import Done, Need, Runbook, Step, StepFailed
from remediator.runbooks import plan
from remediator.runbooks.dlq_replay import ReplayDlq
from remediator.runbooks.rb02_alerts import pause_alerts
from remediator.runbooks.rb02_params import (
    Params,
    allowed_providers,
    configured_target,
    fed_entities,
    provider_of,
    target,
)

# ------------------------------------------------------------ 2 provider status


@dataclass(frozen=True)
class ProviderStatus:
    """Corroborates the alert: a provider that reports healthy is not out."""

    provider: str

    needs: ClassVar[Need] = "http"
    mutates: ClassVar[bool] = False

    def render(self) -> str:
        return f"GET <targets.http.providers.{self.provider}>  # expect 2xx and status ok"

    async def execute(self, clients: Clients) -> Done:
        provider = self.provider
        http = clients.need_http()
        try:
            health = await http.provider_status(provider)
        except TargetError as exc:
            # No answer from the status URL is itself a sign of the outage (a forged
            # alert cannot make the provider's own status page unreachable from here).
            return Done(
                f"{provider} status URL unreachable: {str(exc)[:160]}",
                data={
                    "provider": provider,
                    "healthy": False,
                    "reachable": False,
                    "detail": str(exc)[:200],
                },
            )
        if health.healthy:
            raise NotCorroborated(
                f"{provider} reports healthy ({str(health.detail)[:160]}): outage not"
                " confirmed (network or API key on our side?); alerts left as they are"
            )
        return Done(
            f"{provider} is DOWN ({health.detail})",
            data={
                "provider": provider,
                "healthy": False,
                "reachable": True,
                "status_code": health.status_code,
                "detail": str(health.detail)[:200],
            },
        )


@step(
    "provider_status",
    "diagnose",
    "Check the provider's status URL",
    mutates=False,
    timeout=20.0,
    attempts=1,
)
def provider_status(ctx: StepContext[Params]) -> ProviderStatus:
    return ProviderStatus(provider_of(ctx))


# ------------------------------------------------------------- 4 cache check


@dataclass(frozen=True)
class CheckCache:
    """Every key must hold a value: the cache still serves last-good data."""

    keys: tuple[str, ...]

    needs: ClassVar[Need] = "cache"
    mutates: ClassVar[bool] = False

    def render(self) -> str:
        return "redis-cli MGET " + " ".join(self.keys) + "  # every key must be present"

    async def execute(self, clients: Clients) -> Done:
        check = await clients.need_cache().check_last_good(self.keys)
        if check.misses:
            raise StepFailed(
                f"cache misses {', '.join(check.misses)}: users get errors, not last-good data"
            )
        return Done(
            f"cache serves last-good data for {', '.join(check.hits)}",
            data={"hits": list(check.hits)},
        )


@step(
    "check_cache",
    "verify",
    "Verify the cache serves last-good data",
    mutates=False,
    timeout=10.0,
    attempts=2,
    backoff=0.2,
)
def check_cache(ctx: StepContext[Params]) -> CheckCache:
    return CheckCache(ctx.params.cache_keys)


# --------------------------------------------------------- 6 replay the DLQ


@step(
    "replay_dlq",
    "mitigate",
    "Replay the provider's dead-letter queue",
    mutates=True,
    idempotent=True,
    timeout=30.0,
)
def replay_dlq(ctx: StepContext[Params]) -> ReplayDlq:
    run_id = None if ctx.run_id == PLAN_RUN_ID else ctx.run_id
    return ReplayDlq(provider_of(ctx), ctx.params, run_id, plan.namespace(ctx))


STEPS: Sequence[Step] = (provider_status, pause_alerts, check_cache)
RESOLVE_STEPS: Sequence[Step] = (replay_dlq,)

RUNBOOK = Runbook(
    id="RB-02",
    title="Provider outage",
    severity="P2",
    steps=tuple(STEPS),
    resolve_steps=tuple(RESOLVE_STEPS),
    params=Params,
    target=target,
    configured_target=configured_target,
    anchor="rb-02-provider-outage",
    escalate_after=lambda params: params.page_after_seconds,
)

# Tests and callers reach these through the runbook module.
__all__ = [
    "RESOLVE_STEPS",
    "RUNBOOK",
    "STEPS",
    "Params",
    "allowed_providers",
    "fed_entities",
    "provider_of",
]
