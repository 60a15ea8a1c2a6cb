"""RB-02's params and the provider an alert names (validated against the configured ones).

The runbook module (rb02_provider_outage) says why the provider and its target are
what they are.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from remediator import validation
from remediator.runbook_api.context import Clients, StepContext
from remediator.runbooks import jobs
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


def allowed_providers(ctx: StepContext[Params]) -> Collection[str]:
    return _allowed(ctx.clients.settings, ctx.params)


def provider_of(ctx: StepContext[Params]) -> str:
    """The alert's provider, in its configured spelling (InputRejected otherwise)."""
    return validation.provider(ctx.labels.get("provider"), allowed_providers(ctx))


def target(labels: Mapping[str, str], params: Any) -> str:
    # Without the configuration (a caller that has none): the params list.
    return validation.provider(labels.get("provider"), params.providers)


def configured_target(labels: Mapping[str, str], params: Any, clients: Clients | None) -> str:
    # Exactly the provider the steps will act on (same list, same spelling), so two
    # providers never share a target; a rejected label gets the engine's ":invalid".
    settings = clients.settings if clients is not None else None
    return validation.provider(labels.get("provider"), _allowed(settings, params))


def fed_entities(provider: str, params: Params) -> list[str]:
    """The entities whose alerts ``provider`` feeds (``entity_alerts``)."""
    wanted = provider.lower()
    return sorted({e for p, es in params.entity_alerts.items() if p.lower() == wanted for e in es})
