"""RB-03 steps 0 to 3 on the alerts table: confirm the storm, the global cooldown (and its
undo), the top offenders, disabling them; on resolve, the offenders listed for review.

Never cools down or disables an alert listed in ``exempt_alerts``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from remediator.errors import NotCorroborated
from remediator.runbook_api.context import StepContext
from remediator.runbook_api.steps import Done, Skip
from remediator.runbooks import plan
from remediator.runbooks.rb03_params import Params

_COUNT_CAP = 100_000  # enough to show the rate; bounds the read during a real storm


def _ids(values: Sequence[str], limit: int = 20) -> str:
    shown = ", ".join(values[:limit])
    return shown + (f" and {len(values) - limit} more" if len(values) > limit else "")


def _storm_threshold(p: Params) -> int:
    return max(1, math.ceil(p.storm_per_minute * p.window_minutes))


# ------------------------------------------------------------ 0 confirm the storm

_RECENT = """
SELECT count(*) AS n FROM (
    SELECT 1 FROM notifications
    WHERE created_at > now() - make_interval(mins => $1)
    LIMIT $2
) AS recent
"""


async def confirm_storm(*, ctx: StepContext, **_: Any) -> Done:
    """Corroborates the alert: the storm it claims is in the notifications table."""
    p = ctx.params_as(Params)
    n = int(await ctx.clients.need_database().fetchval(_RECENT, p.window_minutes, _COUNT_CAP))
    need = _storm_threshold(p)
    shown = f"{n}{'+' if n >= _COUNT_CAP else ''}"
    if n < need:
        raise NotCorroborated(
            f"{shown} notifications in the last {p.window_minutes} min, fewer than the"
            f" {need} of a storm ({p.storm_per_minute:g} a minute): no cooldown raised,"
            " no alert disabled"
        )
    return Done(
        f"{shown} notifications in the last {p.window_minutes} min"
        f" ({n / p.window_minutes:.0f} a minute; a storm from {p.storm_per_minute:g})",
        data={"notifications": n, "threshold": need},
    )


def render_confirm_storm(*, ctx: StepContext, **_: Any) -> str:
    p = ctx.params_as(Params)
    return plan.sql(_RECENT, p.window_minutes, _COUNT_CAP) + (
        f"\n-- a storm: at least {_storm_threshold(p)} ({p.storm_per_minute:g} a minute)"
    )


# ------------------------------------------------------------ 1 global cooldown

_COOL_SELECT = """
SELECT id, cooldown_minutes FROM alerts
WHERE cooldown_minutes < $1 AND NOT (id = ANY($2::text[]))
ORDER BY id
FOR UPDATE
"""
_COOL = "UPDATE alerts SET cooldown_minutes = $1 WHERE id = ANY($2::text[])"
_UNCOOL = """
UPDATE alerts AS a SET cooldown_minutes = p.old
FROM unnest($1::text[], $2::int[]) AS p(id, old)
WHERE a.id = p.id AND a.cooldown_minutes = $3
RETURNING a.id
"""


async def global_cooldown(*, ctx: StepContext, **_: Any) -> Done | Skip:
    p = ctx.params_as(Params)
    db = ctx.clients.need_database()
    async with db.transaction() as tx:
        rows = await tx.fetch(_COOL_SELECT, p.cooldown_minutes, list(p.exempt_alerts))
        if not rows:
            return Skip(f"every alert already has a cooldown of {p.cooldown_minutes} min or more")
        ids = [r["id"] for r in rows]
        await tx.execute(_COOL, p.cooldown_minutes, ids)
    previous = {r["id"]: r["cooldown_minutes"] for r in rows}
    low, high = min(previous.values()), max(previous.values())
    return Done(
        f"cooldown raised to {p.cooldown_minutes} min on {len(ids)} alerts"
        f" (they had {low}-{high} min)",
        data={"alerts": ids},
        changes={"cooldown_minutes": p.cooldown_minutes, "previous": previous},
    )


async def restore_cooldowns(
    *, ctx: StepContext, changes: Mapping[str, Any], **_: Any
) -> Done | Skip:
    previous: Mapping[str, int] = changes.get("previous", {})
    ours = int(changes["cooldown_minutes"])
    ids = sorted(previous)
    db = ctx.clients.need_database()
    async with db.transaction() as tx:
        await tx.fetch("SELECT id FROM alerts WHERE id = ANY($1::text[]) FOR UPDATE", ids)
        done = await tx.fetch(_UNCOOL, ids, [int(previous[i]) for i in ids], ours)
    restored = sorted(r["id"] for r in done)
    changed = [i for i in ids if i not in set(restored)]
    note = f"; left alone (changed since, or deleted): {_ids(changed)}" if changed else ""
    if not restored:
        return Skip(f"no alert still had the {ours} min cooldown we set{note}")
    return Done(
        f"restored the previous cooldown of {len(restored)} alerts{note}",
        data={"restored": restored, "left_alone": changed},
    )


def render_global_cooldown(*, ctx: StepContext, **_: Any) -> str:
    p = ctx.params_as(Params)
    return (
        f"BEGIN;\n{plan.sql(_COOL_SELECT, p.cooldown_minutes, list(p.exempt_alerts))}\n"
        f"{_COOL}\n-- $1 = {p.cooldown_minutes!r}, $2 = <the ids selected above; their"
        " old cooldowns are recorded for undo>\nCOMMIT;"
    )


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


async def top_offenders(*, ctx: StepContext, **_: Any) -> Done:
    p = ctx.params_as(Params)
    rows = await ctx.clients.need_database().fetch(TOP_OFFENDERS, p.window_minutes, p.top_limit)
    offenders = [
        {
            "id": r["id"],
            "name": r["name"],
            "count": int(r["notification_count"]),
            "active": r["active"],
            "condition": r["condition_json"],
        }
        for r in rows
    ]
    listing = ", ".join(f"{o['id']} {o['name']!r} {o['count']}" for o in offenders)
    return Done(
        f"top alerts in the last {p.window_minutes} min: {listing or 'none'}",
        data={"offenders": offenders},
    )


# --------------------------------------------------------- 3 disable offenders

_DISABLE_SELECT = "SELECT id, active FROM alerts WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE"
_DISABLE = "UPDATE alerts SET active = FALSE WHERE id = ANY($1::text[]) AND active"


def _chosen(ctx: StepContext) -> list[dict[str, Any]] | None:
    p = ctx.params_as(Params)
    found = ctx.results.get("top_offenders")
    if found is None:
        return None
    eligible = [
        o
        for o in found.get("offenders", [])
        if o["count"] >= p.min_notifications and o["id"] not in p.exempt_alerts
    ]
    return eligible[: p.disable_top_n]


async def disable_offenders(*, ctx: StepContext, **_: Any) -> Done | Skip:
    p = ctx.params_as(Params)
    chosen = _chosen(ctx)
    if chosen is None:
        return Skip("top offenders are unknown (their query failed); nothing disabled")
    if not chosen:
        return Skip(
            f"no alert reached {p.min_notifications} notifications in {p.window_minutes} min"
        )
    db = ctx.clients.need_database()
    async with db.transaction() as tx:
        rows = await tx.fetch(_DISABLE_SELECT, [o["id"] for o in chosen])
        active = [r["id"] for r in rows if r["active"]]
        if active:
            await tx.execute(_DISABLE, active)
    if not active:
        return Skip(f"the top offenders {_ids([o['id'] for o in chosen])} are already disabled")
    counts = {o["id"]: o["count"] for o in chosen}
    return Done(
        "disabled "
        + ", ".join(f"{i} ({counts[i]} in {p.window_minutes} min)" for i in active)
        + "; they stay disabled for review",
        data={"disabled": active},
        changes={"disabled": active, "previous_active": True},
    )


def render_disable_offenders(*, ctx: StepContext, **_: Any) -> str:
    p = ctx.params_as(Params)
    chosen = _chosen(ctx)
    ids: object = (
        [o["id"] for o in chosen]
        if chosen is not None
        else f"<top {p.disable_top_n} with >= {p.min_notifications} notifications>"
    )
    return f"{_DISABLE}\n-- $1 = {ids!r}"


# ----------------------------------------------------- on resolve: for review


async def review_offenders(*, ctx: StepContext, **_: Any) -> Done | Skip:
    ids = list((ctx.results.get("disable_offenders") or {}).get("disabled", []))
    if not ids:
        return Skip("no offenders were disabled")
    rows = await ctx.clients.need_database().fetch(
        "SELECT id, name, active FROM alerts WHERE id = ANY($1::text[]) ORDER BY id", ids
    )
    still = [f"{r['id']} ({r['name']})" for r in rows if not r["active"]]
    if not still:
        return Skip(f"the offenders {_ids(ids)} were re-enabled already")
    return Done(
        f"still disabled, for review: {', '.join(still)}; fix each rule, then"
        " UPDATE alerts SET active = TRUE WHERE id = '<id>'",
        data={"disabled": [r["id"] for r in rows if not r["active"]]},
    )


def render_review(*, ctx: StepContext, **_: Any) -> str:
    return (
        "SELECT id, name, active FROM alerts WHERE id = ANY($1::text[])\n"
        "-- $1 = <the offenders disabled by this run>"
    )
