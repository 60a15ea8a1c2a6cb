"""RB-03 steps 0 to 3 on the alerts table, as actions: confirm the storm, the global
cooldown (and its undo), the top offenders, disabling them; on resolve, the offenders
listed for review.

Each action renders the statements it runs, so the plan, the page and the audit trail
show the call that was made. Never cools down or disables an alert listed in
``exempt_alerts``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

from pydantic import BaseModel, JsonValue

from remediator.errors import NotCorroborated
from remediator.runbook_api.action_steps import found_by, step
from remediator.runbook_api.actions import Hint, render_sql
from remediator.runbook_api.context import Clients, StepContext
from remediator.runbook_api.steps import Done, Need, Skip, StepFailed, StepOutcome
from remediator.runbooks.rb03_params import Params

_COUNT_CAP = 100_000  # enough to show the rate; bounds the read during a real storm


def _ids(values: Sequence[str], limit: int = 20) -> str:
    shown = ", ".join(values[:limit])
    return shown + (f" and {len(values) - limit} more" if len(values) > limit else "")


# ------------------------------------------------------------ 0 confirm the storm

_RECENT = """
SELECT count(*) AS n FROM (
    SELECT 1 FROM notifications
    WHERE created_at > now() - make_interval(mins => $1)
    LIMIT $2
) AS recent
"""


@dataclass(frozen=True)
class ConfirmStorm:
    """Corroborates the alert: the storm it claims is in the notifications table."""

    window_minutes: int
    per_minute: float

    needs: ClassVar[Need] = "database"
    mutates: ClassVar[bool] = False

    @property
    def threshold(self) -> int:
        return max(1, math.ceil(self.per_minute * self.window_minutes))

    def render(self) -> str:
        return render_sql(_RECENT, (self.window_minutes, _COUNT_CAP)) + (
            f"\n-- a storm: at least {self.threshold} ({self.per_minute:g} a minute)"
        )

    async def execute(self, clients: Clients) -> StepOutcome:
        db = clients.need_database()
        n = int(await db.fetchval(_RECENT, self.window_minutes, _COUNT_CAP))
        shown = f"{n}{'+' if n >= _COUNT_CAP else ''}"
        if n < self.threshold:
            raise NotCorroborated(
                f"{shown} notifications in the last {self.window_minutes} min, fewer than"
                f" the {self.threshold} of a storm ({self.per_minute:g} a minute): no"
                " cooldown raised, no alert disabled"
            )
        return Done(
            f"{shown} notifications in the last {self.window_minutes} min"
            f" ({n / self.window_minutes:.0f} a minute; a storm from {self.per_minute:g})",
            data={"notifications": n, "threshold": self.threshold},
        )


@step(
    "confirm_storm",
    "diagnose",
    "Confirm the storm in the notifications table",
    mutates=False,
    # A storm that cannot be seen is no reason to brake every alert.
    stop_on_failure=True,
    timeout=15.0,
)
def confirm_storm(ctx: StepContext[Params]) -> ConfirmStorm:
    p = ctx.params
    return ConfirmStorm(p.window_minutes, p.storm_per_minute)


# ------------------------------------------------------------ 1 global cooldown

_COOL_SELECT = """
SELECT id, cooldown_minutes FROM alerts
WHERE cooldown_minutes < $1 AND NOT (id = ANY($2::text[]))
ORDER BY id
FOR UPDATE
"""
_COOL = "UPDATE alerts SET cooldown_minutes = $1 WHERE id = ANY($2::text[])"
_LOCK = "SELECT id FROM alerts WHERE id = ANY($1::text[]) FOR UPDATE"
_UNCOOL = """
UPDATE alerts AS a SET cooldown_minutes = p.old
FROM unnest($1::text[], $2::int[]) AS p(id, old)
WHERE a.id = p.id AND a.cooldown_minutes = $3
RETURNING a.id
"""


def _render_restore(ids: object, olds: object, ours: int) -> str:
    return f"BEGIN;\n{render_sql(_LOCK, (ids,))}\n{render_sql(_UNCOOL, (ids, olds, ours))}\nCOMMIT;"


@dataclass(frozen=True)
class RestoreCooldowns:
    """Each alert's own previous cooldown, only where it still holds the one we set."""

    previous: Mapping[str, int]
    ours: int

    needs: ClassVar[Need] = "database"
    mutates: ClassVar[bool] = True

    def _binds(self) -> tuple[list[str], list[int], int]:
        ids = sorted(self.previous)
        return ids, [self.previous[i] for i in ids], self.ours

    def render(self) -> str:
        return _render_restore(*self._binds())

    async def execute(self, clients: Clients) -> StepOutcome:
        ids, olds, ours = self._binds()
        async with clients.need_database().transaction() as tx:
            await tx.fetch(_LOCK, ids)
            done = await tx.fetch(_UNCOOL, ids, olds, ours)
        restored = sorted(r["id"] for r in done)
        changed = [i for i in ids if i not in set(restored)]
        note = f"; left alone (changed since, or deleted): {_ids(changed)}" if changed else ""
        if not restored:
            return Skip(f"no alert still had the {ours} min cooldown we set{note}")
        return Done(
            f"restored the previous cooldown of {len(restored)} alerts{note}",
            data={"restored": restored, "left_alone": changed},
        )


@dataclass(frozen=True)
class GlobalCooldown:
    """Raise every alert's cooldown to ``minutes``, recording each one's old value."""

    minutes: int
    exempt: tuple[str, ...]

    needs: ClassVar[Need] = "database"
    mutates: ClassVar[bool] = True

    def render(self) -> str:
        return (
            f"BEGIN;\n{render_sql(_COOL_SELECT, (self.minutes, list(self.exempt)))}\n"
            f"{_COOL}\n-- $1 = {self.minutes!r}, $2 = <the ids selected above; their"
            " old cooldowns are recorded for undo>\nCOMMIT;"
        )

    async def execute(self, clients: Clients) -> StepOutcome:
        async with clients.need_database().transaction() as tx:
            rows = await tx.fetch(_COOL_SELECT, self.minutes, list(self.exempt))
            if not rows:
                return Skip(f"every alert already has a cooldown of {self.minutes} min or more")
            ids = [r["id"] for r in rows]
            await tx.execute(_COOL, self.minutes, ids)
        previous = {r["id"]: r["cooldown_minutes"] for r in rows}
        low, high = min(previous.values()), max(previous.values())
        return Done(
            f"cooldown raised to {self.minutes} min on {len(ids)} alerts"
            f" (they had {low}-{high} min)",
            data={"alerts": ids},
            changes={"cooldown_minutes": self.minutes, "previous": previous},
        )

    def planned_undo(self) -> str:
        alerts = Hint("<the alerts recorded>")
        return _render_restore(alerts, Hint("<their recorded cooldowns>"), self.minutes)

    def undo(self, changes: Mapping[str, object]) -> RestoreCooldowns:
        previous, ours = changes.get("previous"), changes.get("cooldown_minutes")
        if not isinstance(previous, Mapping) or not isinstance(ours, int):
            raise StepFailed("the undo record has no previous cooldowns")
        return RestoreCooldowns({str(k): int(v) for k, v in previous.items()}, ours)


@step(
    "global_cooldown",
    "mitigate",
    "Raise every alert's cooldown (emergency brake)",
    mutates=True,
    needs=("database",),
    temporary=True,  # each alert's own cooldown comes back, where it still holds ours
)
def global_cooldown(ctx: StepContext[Params]) -> GlobalCooldown:
    p = ctx.params
    return GlobalCooldown(p.cooldown_minutes, p.exempt_alerts)


# ------------------------------------------------------------- 2 top offenders

TOP_OFFENDERS = """
SELECT a.id, a.name, a.condition_json, a.active, COUNT(*) AS notification_count
FROM notifications n
JOIN alerts a ON n.alert_id = a.id
WHERE n.created_at > now() - make_interval(mins => $1)
GROUP BY a.id, a.name, a.condition_json, a.active
ORDER BY notification_count DESC, a.id
LIMIT $2
"""


class Offender(BaseModel):
    id: str
    name: str
    count: int
    active: bool
    condition: JsonValue = None


class Offenders(BaseModel):
    """What top_offenders found, for the steps after it."""

    offenders: list[Offender] = []


@dataclass(frozen=True)
class TopOffenders:
    window_minutes: int
    limit: int

    needs: ClassVar[Need] = "database"
    mutates: ClassVar[bool] = False

    def render(self) -> str:
        return render_sql(TOP_OFFENDERS, (self.window_minutes, self.limit))

    async def execute(self, clients: Clients) -> StepOutcome:
        rows = await clients.need_database().fetch(TOP_OFFENDERS, self.window_minutes, self.limit)
        found = Offenders(
            offenders=[
                Offender(
                    id=r["id"],
                    name=r["name"],
                    count=int(r["notification_count"]),
                    active=r["active"],
                    condition=r["condition_json"],
                )
                for r in rows
            ]
        )
        listing = ", ".join(f"{o.id} {o.name!r} {o.count}" for o in found.offenders)
        return Done(
            f"top alerts in the last {self.window_minutes} min: {listing or 'none'}",
            data=found.model_dump(mode="json"),
        )


@step("top_offenders", "diagnose", "Find the top firing alerts", mutates=False)
def top_offenders(ctx: StepContext[Params]) -> TopOffenders:
    p = ctx.params
    return TopOffenders(p.window_minutes, p.top_limit)


# --------------------------------------------------------- 3 disable offenders

_DISABLE_SELECT = "SELECT id, active FROM alerts WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE"
_DISABLE = "UPDATE alerts SET active = FALSE WHERE id = ANY($1::text[]) AND active"


@dataclass(frozen=True)
class DisableOffenders:
    """Disable the chosen offenders (``None``: top_offenders has not found them, so a
    plan shows which it would pick and a run skips)."""

    chosen: tuple[Offender, ...] | None
    params: Params

    needs: ClassVar[Need] = "database"
    mutates: ClassVar[bool] = True

    def render(self) -> str:
        p = self.params
        ids: object = (
            [o.id for o in self.chosen]
            if self.chosen is not None
            else f"<top {p.disable_top_n} with >= {p.min_notifications} notifications>"
        )
        return f"{_DISABLE}\n-- $1 = {ids!r}"

    async def execute(self, clients: Clients) -> StepOutcome:
        p = self.params
        if self.chosen is None:
            return Skip("top offenders are unknown (their query failed); nothing disabled")
        if not self.chosen:
            return Skip(
                f"no alert reached {p.min_notifications} notifications in {p.window_minutes} min"
            )
        async with clients.need_database().transaction() as tx:
            rows = await tx.fetch(_DISABLE_SELECT, [o.id for o in self.chosen])
            active = [r["id"] for r in rows if r["active"]]
            if active:
                await tx.execute(_DISABLE, active)
        if not active:
            return Skip(
                f"the top offenders {_ids([o.id for o in self.chosen])} are already disabled"
            )
        counts = {o.id: o.count for o in self.chosen}
        return Done(
            "disabled "
            + ", ".join(f"{i} ({counts[i]} in {p.window_minutes} min)" for i in active)
            + "; they stay disabled for review",
            data={"disabled": active},
            changes={"disabled": active, "previous_active": True},
        )


@step(
    "disable_offenders",
    "mitigate",
    "Disable the top offending alerts",
    mutates=True,
    needs=("database",),
    preconditions=(found_by("top_offenders", "the top offenders"),),
)
def disable_offenders(ctx: StepContext[Params]) -> DisableOffenders:
    p = ctx.params
    found = ctx.found("top_offenders", Offenders)
    if found is None:
        return DisableOffenders(None, p)
    eligible = [
        o for o in found.offenders if o.count >= p.min_notifications and o.id not in p.exempt_alerts
    ]
    return DisableOffenders(tuple(eligible[: p.disable_top_n]), p)


# ----------------------------------------------------- on resolve: for review

_REVIEW = "SELECT id, name, active FROM alerts WHERE id = ANY($1::text[]) ORDER BY id"


class Disabled(BaseModel):
    disabled: list[str] = []


@dataclass(frozen=True)
class ReviewOffenders:
    """The offenders this run disabled that are still disabled: a human fixes each
    rule and re-enables it (never the daemon: a faulty rule would storm again)."""

    ids: tuple[str, ...] | None  # None: a plan, before the run disabled any

    needs: ClassVar[Need] = "database"
    mutates: ClassVar[bool] = False

    def render(self) -> str:
        if self.ids is None:
            return f"{_REVIEW}\n-- $1 = <the offenders disabled by this run>"
        return render_sql(_REVIEW, (list(self.ids),))

    async def execute(self, clients: Clients) -> StepOutcome:
        if not self.ids:
            return Skip("no offenders were disabled")
        rows = await clients.need_database().fetch(_REVIEW, list(self.ids))
        still = [f"{r['id']} ({r['name']})" for r in rows if not r["active"]]
        if not still:
            return Skip(f"the offenders {_ids(list(self.ids))} were re-enabled already")
        return Done(
            f"still disabled, for review: {', '.join(still)}; fix each rule, then"
            " UPDATE alerts SET active = TRUE WHERE id = '<id>'",
            data={"disabled": [r["id"] for r in rows if not r["active"]]},
        )


@step(
    "review_offenders",
    "notify",
    "List disabled offenders for review",
    mutates=False,
    preconditions=(found_by("disable_offenders", "the offenders to disable"),),
)
def review_offenders(ctx: StepContext) -> ReviewOffenders:
    done = ctx.found("disable_offenders", Disabled)
    return ReviewOffenders(None if done is None else tuple(done.disabled))
