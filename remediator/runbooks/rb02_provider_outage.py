"""RB-02 Provider outage, as declared steps (P2: a notification, not a page).

Runbook order, automated:

    2 check the provider's status URL             diagnose
    3 pause the active alerts that depend on it   mitigate; records exactly which ids
    4 verify the cache serves last-good data      verify (Redis; a dead Redis fails
                                                  this step only)
    on resolve:
      7 re-enable exactly the alerts step 3 paused   (undo of step 3)
      6 replay the DLQ as a Kubernetes Job           (resolve step, once the provider
                                                      reports healthy again)

The engine runs undos before resolve steps, so re-enabling comes before the replay
(the runbook lists the replay first); both happen on the same resolve.

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
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from remediator import validation
from remediator.errors import NotCorroborated, TargetError
from remediator.runbook_api.context import Clients, StepContext
from remediator.runbook_api.steps import Done, Runbook, Skip, Step, StepFailed
from remediator.runbooks import dlq_replay, jobs, plan
from remediator.settings import Settings

_KEY = re.compile(r"[!-~]{1,512}", re.ASCII)  # printable ASCII, no spaces


def _vix_for_fred() -> dict[str, tuple[str, ...]]:
    return {"fred": ("VIX",)}


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Used only when the daemon has no targets.http.providers to check against.
    providers: tuple[str, ...] = ("polygon", "fmp", "fred")
    # Keys whose presence shows the cache still serves last-good data.
    cache_keys: tuple[str, ...] = ("fundamentals:AAPL",)
    # The replay runs as the runbook's `kubectl exec deployment/worker` would: a Job
    # copied from this Deployment's pod template (see runbooks.jobs).
    replay_deployment: str = "worker"
    replay_container: str | None = None
    replay_image: str | None = None  # overrides the template's image (None: keep it)
    replay_max_retries: int = Field(3, ge=1, le=10)
    job_ttl_seconds: int = Field(86_400, ge=600, le=604_800)
    # The runbook is a notification (P2); an outage that lasts longer pages (P1).
    page_after_seconds: float | None = Field(1800.0, gt=0)
    # Entities whose alerts a provider feeds although their condition names no provider
    # (condition_json->>'entity'): the runbook's "VIX alert requires live market data",
    # whose series come from FRED. Provider names match case-insensitively.
    entity_alerts: dict[str, tuple[str, ...]] = Field(default_factory=_vix_for_fred)

    @field_validator("providers")
    @classmethod
    def _providers(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v or any(not validation.is_provider_name(p) for p in v):
            raise ValueError("a non-empty list of provider names")
        return v

    @field_validator("cache_keys")
    @classmethod
    def _keys(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v or len(v) > 100 or any(not _KEY.fullmatch(k) for k in v):
            raise ValueError("1..100 cache keys of printable ASCII without spaces")
        return v

    @field_validator("entity_alerts")
    @classmethod
    def _entities(cls, v: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        for provider, entities in v.items():
            if not validation.is_provider_name(provider) or len(entities) > 100:
                raise ValueError("provider names to at most 100 entity names each")
            if any(not 0 < len(e) <= 64 for e in entities):
                raise ValueError(f"entity names of {provider} must be 1..64 characters")
        return v

    @field_validator("replay_image")
    @classmethod
    def _image(cls, v: str | None) -> str | None:
        return jobs.check_image(v)

    @field_validator("replay_deployment", "replay_container")
    @classmethod
    def _workload(cls, v: str | None) -> str | None:
        return jobs.check_name(v)


# ------------------------------------------------------------------ helpers


def _allowed(settings: Settings | None, params: Params) -> Collection[str]:
    configured = settings.targets.http.providers if settings is not None else None
    if configured:
        return tuple(configured)
    return params.providers


def allowed_providers(ctx: StepContext) -> Collection[str]:
    return _allowed(ctx.clients.settings, ctx.params_as(Params))


def provider_of(ctx: StepContext) -> str:
    """The alert's provider, in its configured spelling (InputRejected otherwise)."""
    return validation.provider(ctx.labels.get("provider"), allowed_providers(ctx))


def _target(labels: Mapping[str, str], params: Any) -> str:
    # Without the configuration (a caller that has none): the params list.
    return validation.provider(labels.get("provider"), params.providers)


def _configured_target(labels: Mapping[str, str], params: Any, clients: Clients | None) -> str:
    # Exactly the provider the steps will act on (same list, same spelling), so two
    # providers never share a target; a rejected label gets the engine's ":invalid".
    settings = clients.settings if clients is not None else None
    return validation.provider(labels.get("provider"), _allowed(settings, params))


# ------------------------------------------------------------ 2 provider status


async def provider_status(*, ctx: StepContext, **_: Any) -> Done:
    """Corroborates the alert: a provider that reports healthy is not out."""
    provider = provider_of(ctx)
    http = ctx.clients.need_http()
    try:
        health = await http.provider_status(provider)
    except TargetError as exc:
        # No answer from the status URL is itself a sign of the outage (a forged alert
        # cannot make the provider's own status page unreachable from here).
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
            f"{provider} reports healthy ({str(health.detail)[:160]}): outage not confirmed"
            " (network or API key on our side?); alerts left as they are"
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


def render_provider_status(*, ctx: StepContext, **_: Any) -> str:
    return f"GET <targets.http.providers.{provider_of(ctx)}>  # expect 2xx and status ok"


# ---------------------------------------------------- 3 pause dependent alerts

_SELECT_ACTIVE = """
SELECT id, condition_json->>'provider' IS DISTINCT FROM $1 AS by_entity FROM alerts
WHERE (condition_json->>'provider' = $1 OR condition_json->>'entity' = ANY($2::text[]))
  AND active
ORDER BY id
FOR UPDATE
"""
_PAUSE = "UPDATE alerts SET active = FALSE WHERE id = ANY($1::text[]) AND active"


async def pause_alerts(*, ctx: StepContext, **_: Any) -> Done | Skip:
    provider = provider_of(ctx)
    status = ctx.results.get("provider_status")
    # provider_status stops the run when the provider is healthy; this is for a check
    # that failed (its result is missing), which is no confirmation either.
    if not status or status.get("healthy") is not False:
        return Skip(
            f"{provider} status is unknown (its check failed): outage not"
            " confirmed, alerts left as they are"
        )
    entities = fed_entities(provider, ctx.params_as(Params))
    db = ctx.clients.need_database()
    async with db.transaction() as tx:
        rows = await tx.fetch(_SELECT_ACTIVE, provider, entities)
        ids = [r["id"] for r in rows]
        if not ids:
            return Skip(f"no active alerts depend on {provider}")
        await tx.execute(_PAUSE, ids)
    by_entity = [r["id"] for r in rows if r["by_entity"]]
    note = f" ({', '.join(by_entity)} by entity {', '.join(entities)})" if by_entity else ""
    # Exactly these ids are re-enabled on resolve, and only those still paused then.
    return Done(
        f"paused {len(ids)} alerts that depend on {provider}: {', '.join(ids)}{note}",
        data={"paused": ids, "by_entity": by_entity},
        changes={"provider": provider, "paused": ids, "previous_active": True},
    )


def fed_entities(provider: str, params: Params) -> list[str]:
    """The entities whose alerts ``provider`` feeds (``entity_alerts``)."""
    wanted = provider.lower()
    return sorted({e for p, es in params.entity_alerts.items() if p.lower() == wanted for e in es})


async def resume_alerts(*, ctx: StepContext, changes: Mapping[str, Any], **_: Any) -> Done | Skip:
    ids = [str(i) for i in changes.get("paused", [])]
    if not ids:
        return Skip("no alerts were paused")
    db = ctx.clients.need_database()
    async with db.transaction() as tx:
        rows = await tx.fetch(
            "SELECT id, active FROM alerts WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE", ids
        )
        still_paused = [r["id"] for r in rows if not r["active"]]
        if still_paused:
            await tx.execute(
                "UPDATE alerts SET active = TRUE WHERE id = ANY($1::text[]) AND NOT active",
                still_paused,
            )
    active = sorted({r["id"] for r in rows} - set(still_paused))
    gone = sorted(set(ids) - {r["id"] for r in rows})
    notes = []
    if active:
        notes.append(f"already active, left alone: {', '.join(active)}")
    if gone:
        notes.append(f"deleted meanwhile: {', '.join(gone)}")
    if not still_paused:
        return Skip("; ".join(notes) or "nothing to re-enable")
    return Done(
        "; ".join(
            [
                f"re-enabled the {len(still_paused)} alerts it paused: {', '.join(still_paused)}",
                *notes,
            ]
        ),
        data={"reenabled": still_paused},
    )


def render_pause_alerts(*, ctx: StepContext, **_: Any) -> str:
    provider = provider_of(ctx)
    entities = fed_entities(provider, ctx.params_as(Params))
    return (
        f"BEGIN;\n{plan.sql(_SELECT_ACTIVE, provider, entities)}\n"
        f"{_PAUSE}\n-- $1 = <the ids selected above, recorded for undo>\nCOMMIT;"
    )


# ------------------------------------------------------------- 4 cache check


async def check_cache(*, ctx: StepContext, **_: Any) -> Done:
    p = ctx.params_as(Params)
    cache = ctx.clients.need_cache()
    check = await cache.check_last_good(p.cache_keys)
    if check.misses:
        raise StepFailed(
            f"cache misses {', '.join(check.misses)}: users get errors, not last-good data"
        )
    return Done(
        f"cache serves last-good data for {', '.join(check.hits)}", data={"hits": list(check.hits)}
    )


def render_check_cache(*, ctx: StepContext, **_: Any) -> str:
    p = ctx.params_as(Params)
    return "redis-cli MGET " + " ".join(p.cache_keys) + "  # every key must be present"


# --------------------------------------------------------- 6 replay the DLQ


async def replay_dlq(*, ctx: StepContext, **_: Any) -> Done | Skip:
    return await dlq_replay.replay(ctx, provider_of(ctx), ctx.params_as(Params))


def render_replay_dlq(*, ctx: StepContext, **_: Any) -> str:
    return dlq_replay.render(ctx, provider_of(ctx), ctx.params_as(Params))


STEPS: Sequence[Step] = (
    Step(
        "provider_status",
        "diagnose",
        "Check the provider's status URL",
        provider_status,
        render_provider_status,
        timeout=20.0,
        attempts=1,
    ),
    Step(
        "pause_alerts",
        "mitigate",
        "Pause the active alerts that depend on the provider",
        pause_alerts,
        render_pause_alerts,
        mutates=True,
        undo=resume_alerts,
    ),
    Step(
        "check_cache",
        "verify",
        "Verify the cache serves last-good data",
        check_cache,
        render_check_cache,
        timeout=10.0,
        attempts=2,
        backoff=0.2,
    ),
)

RESOLVE_STEPS: Sequence[Step] = (
    Step(
        "replay_dlq",
        "mitigate",
        "Replay the provider's dead-letter queue",
        replay_dlq,
        render_replay_dlq,
        mutates=True,
        idempotent=True,
        timeout=30.0,
    ),
)

RUNBOOK = Runbook(
    id="RB-02",
    title="Provider outage",
    severity="P2",
    steps=tuple(STEPS),
    resolve_steps=tuple(RESOLVE_STEPS),
    params=Params,
    target=_target,
    configured_target=_configured_target,
    anchor="rb-02-provider-outage",
    escalate_after=lambda params: params.page_after_seconds,
)
