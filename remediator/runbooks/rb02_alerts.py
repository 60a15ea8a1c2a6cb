"""RB-02 step 3 and its undo (step 7), as actions: pause the active alerts that depend
on the provider, recording exactly which ids; on resolve re-enable only those ids, and
only those still paused (never an alert a human disabled on purpose).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from pydantic import BaseModel, ValidationError

from remediator.runbook_api.action_steps import step
from remediator.runbook_api.actions import Hint, render_sql
from remediator.runbook_api.context import Clients, StepContext
from remediator.runbook_api.steps import Done, Need, Skip, StepFailed
from remediator.runbooks.rb02_params import Params, fed_entities, provider_of

# ---------------------------------------------------- 3 pause dependent alerts

_SELECT_ACTIVE = """
SELECT id, condition_json->>'provider' IS DISTINCT FROM $1 AS by_entity FROM alerts
WHERE (condition_json->>'provider' = $1 OR condition_json->>'entity' = ANY($2::text[]))
  AND active
ORDER BY id
FOR UPDATE
"""
_PAUSE = "UPDATE alerts SET active = FALSE WHERE id = ANY($1::text[]) AND active"


class Status(BaseModel):
    """What provider_status found (healthy None: its check did not answer)."""

    healthy: bool | None = None


@dataclass(frozen=True)
class PauseAlerts:
    provider: str
    entities: tuple[str, ...]  # whose alerts the provider feeds (``entity_alerts``)
    confirmed: bool  # provider_status confirmed the outage

    needs: ClassVar[Need] = "database"
    mutates: ClassVar[bool] = True

    def render(self) -> str:
        select = render_sql(_SELECT_ACTIVE, (self.provider, list(self.entities)))
        return (
            f"BEGIN;\n{select}\n"
            f"{_PAUSE}\n-- $1 = <the ids selected above, recorded for undo>\nCOMMIT;"
        )

    async def execute(self, clients: Clients) -> Done | Skip:
        provider, entities = self.provider, list(self.entities)
        # provider_status stops the run when the provider is healthy; this is for a
        # check that failed (its result is missing), which is no confirmation either.
        if not self.confirmed:
            return Skip(
                f"{provider} status is unknown (its check failed): outage not"
                " confirmed, alerts left as they are"
            )
        async with clients.need_database().transaction() as tx:
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


# ------------------------------------------------ 7 (undo) re-enable them

_LOCK = "SELECT id, active FROM alerts WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE"
_RESUME = "UPDATE alerts SET active = TRUE WHERE id = ANY($1::text[]) AND NOT active"


class Paused(BaseModel):
    """pause_alerts' undo record."""

    paused: list[str] = []


@dataclass(frozen=True)
class ResumeAlerts:
    """Re-enable the alerts pause_alerts paused that are still paused (``ids`` None:
    a plan, before anything was recorded)."""

    ids: tuple[str, ...] | None

    needs: ClassVar[Need] = "database"
    mutates: ClassVar[bool] = True

    def render(self) -> str:
        ids: object = Hint("<the alerts paused, recorded>") if self.ids is None else list(self.ids)
        return (
            f"BEGIN;\n{render_sql(_LOCK, (ids,))}\n"
            f"{_RESUME}\n-- $1 = <those of them still paused>\nCOMMIT;"
        )

    async def execute(self, clients: Clients) -> Done | Skip:
        ids = list(self.ids or ())
        if not ids:
            return Skip("no alerts were paused")
        async with clients.need_database().transaction() as tx:
            rows = await tx.fetch(_LOCK, ids)
            still_paused = [r["id"] for r in rows if not r["active"]]
            if still_paused:
                await tx.execute(_RESUME, still_paused)
        active = sorted({r["id"] for r in rows} - set(still_paused))
        gone = sorted(set(ids) - {r["id"] for r in rows})
        notes = []
        if active:
            notes.append(f"already active, left alone: {', '.join(active)}")
        if gone:
            notes.append(f"deleted meanwhile: {', '.join(gone)}")
        if not still_paused:
            return Skip("; ".join(notes) or "nothing to re-enable")
        paused = ", ".join(still_paused)
        return Done(
            "; ".join([f"re-enabled the {len(still_paused)} alerts it paused: {paused}", *notes]),
            data={"reenabled": still_paused},
        )


def resume_alerts(ctx: StepContext, changes: Mapping[str, object]) -> ResumeAlerts:
    """The undo from its record alone: no label is read again, so a config reload since
    (another provider list) cannot stop or redirect it."""
    if not changes:  # a plan: nothing recorded yet
        return ResumeAlerts(None)
    try:
        record = Paused.model_validate(changes)
    except ValidationError as exc:
        raise StepFailed("the undo record has no paused alerts") from exc
    return ResumeAlerts(tuple(str(i) for i in record.paused))


@step(
    "pause_alerts",
    "mitigate",
    "Pause the active alerts that depend on the provider",
    mutates=True,
    temporary=True,  # exactly the ids paused come back, those still paused
    undo=resume_alerts,
)
def pause_alerts(ctx: StepContext[Params]) -> PauseAlerts:
    provider = provider_of(ctx)
    status = ctx.found("provider_status", Status)
    return PauseAlerts(
        provider,
        tuple(fed_entities(provider, ctx.params)),
        status is not None and status.healthy is False,
    )
