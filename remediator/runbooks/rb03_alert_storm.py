"""RB-03 Alert storm, as declared steps (P1).

Runbook order, automated:

    0 confirm the storm                diagnose; notifications in the last window_minutes
                                       must average storm_per_minute, or the run is "not
                                       corroborated" and changes nothing
    1 global cooldown to 60 min        mitigate; records each alert's old cooldown; undo;
                                       never an exempt alert
    2 top offenders (last 5 min)       diagnose
    3 disable the top N offenders      mitigate; only those above the threshold, never
                                       an exempt alert; they stay disabled on resolve and
                                       are listed for review
    4 dedupe: duplicate query and      diagnose
      unique index present
    4 delete duplicate notifications   approve; deleted rows recorded (not undone)
    5 scale the evaluator to 0         approve; previous replicas recorded; undo

On resolve: each alert's own previous cooldown comes back (only where it still holds
the value we set), the evaluator gets its replicas back (only if still at 0), and
the disabled offenders are listed for a human to fix and re-enable. Step 6 of the
runbook (rewriting faulty rules) is left to a human.

Duplicates are grouped by UTC day, as the unique index uq_notify_user_alert_day does;
the runbook's ``date_trunc('day', created_at)`` would follow the session time zone
and disagree with the index. This runbook reads no alert label at all, so no label
can reach its SQL or the cluster. It must never delete a group's first notification,
and never cool down or disable an alert listed in ``exempt_alerts`` (security and
compliance notices must reach users during a storm too).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from remediator import validation
from remediator.errors import InputRejected, NotCorroborated
from remediator.runbook_api.context import StepContext
from remediator.runbook_api.steps import Done, Runbook, Skip, Step, StepFailed
from remediator.runbooks import plan

UNIQUE_INDEX = "uq_notify_user_alert_day"
_COUNT_CAP = 100_000  # enough to show the rate; bounds the read during a real storm


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    cooldown_minutes: int = Field(60, ge=1, le=1440)
    window_minutes: int = Field(5, ge=1, le=60)
    top_limit: int = Field(10, ge=1, le=100)
    disable_top_n: int = Field(3, ge=0, le=20)
    min_notifications: int = Field(50, ge=1)  # in the window, to be disabled
    # The storm the alert claims must be in the notifications table: at least this
    # many per minute over the window (AlertStorm fires above 200 a minute; a fifth
    # of that still tells a storm, even an easing one, from a quiet night).
    storm_per_minute: float = Field(40.0, gt=0, le=100_000)
    exempt_alerts: tuple[str, ...] = ()  # alerts.id never cooled down nor disabled
    evaluator_deployment: str = "scheduler"
    dedupe_days: int = Field(2, ge=0, le=90)  # today (UTC) and this many days before
    max_delete: int = Field(5000, ge=1, le=50_000)

    @field_validator("evaluator_deployment")
    @classmethod
    def _deployment(cls, v: str) -> str:
        try:
            return validation.k8s_name(v, field="evaluator_deployment")
        except InputRejected as exc:
            raise ValueError(exc.reason) from exc

    @field_validator("exempt_alerts")
    @classmethod
    def _exempt(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if any(not 1 <= len(i) <= 64 for i in v):
            raise ValueError("alert ids are 1..64 characters")
        return v


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
    p: Params = ctx.params
    n = int(await ctx.clients.need("database").fetchval(_RECENT, p.window_minutes, _COUNT_CAP))
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
    p: Params = ctx.params
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
    p: Params = ctx.params
    db = ctx.clients.need("database")
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
    db = ctx.clients.need("database")
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
    p: Params = ctx.params
    return (
        f"BEGIN;\n{plan.sql(_COOL_SELECT, p.cooldown_minutes, list(p.exempt_alerts))}\n"
        f"{_COOL}\n-- $1 = {p.cooldown_minutes!r}, $2 = <the ids selected above; their"
        " old cooldowns are recorded for undo>\nCOMMIT;"
    )


# ------------------------------------------------------------- 2 top offenders

_TOP = """
SELECT a.id, a.name, a.condition_json, a.active, COUNT(*) AS notification_count
FROM notifications n
JOIN alerts a ON n.alert_id = a.id
WHERE n.created_at > now() - make_interval(mins => $1)
GROUP BY a.id, a.name, a.condition_json, a.active
ORDER BY notification_count DESC, a.id
LIMIT $2
"""


async def top_offenders(*, ctx: StepContext, **_: Any) -> Done:
    p: Params = ctx.params
    rows = await ctx.clients.need("database").fetch(_TOP, p.window_minutes, p.top_limit)
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
    p: Params = ctx.params
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
    p: Params = ctx.params
    chosen = _chosen(ctx)
    if chosen is None:
        return Skip("top offenders are unknown (their query failed); nothing disabled")
    if not chosen:
        return Skip(
            f"no alert reached {p.min_notifications} notifications in {p.window_minutes} min"
        )
    db = ctx.clients.need("database")
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
    p: Params = ctx.params
    chosen = _chosen(ctx)
    ids: object = (
        [o["id"] for o in chosen]
        if chosen is not None
        else f"<top {p.disable_top_n} with >= {p.min_notifications} notifications>"
    )
    return f"{_DISABLE}\n-- $1 = {ids!r}"


# -------------------------------------------------------------- 4 dedupe check

_WINDOW = (
    "(date_trunc('day', now() AT TIME ZONE 'UTC') - make_interval(days => $1)) AT TIME ZONE 'UTC'"
)
_DUPLICATES = f"""
SELECT user_id, alert_id, date_trunc('day', created_at AT TIME ZONE 'UTC') AS day,
       COUNT(*) AS n
FROM notifications
WHERE created_at >= {_WINDOW}
GROUP BY user_id, alert_id, day
HAVING COUNT(*) > 1
ORDER BY n DESC, alert_id, user_id
"""
_INDEX = """
SELECT i.indexdef, x.indisunique, x.indisvalid
FROM pg_indexes i
JOIN pg_namespace ns ON ns.nspname = i.schemaname
JOIN pg_class c ON c.relname = i.indexname AND c.relnamespace = ns.oid
JOIN pg_index x ON x.indexrelid = c.oid
WHERE i.schemaname = current_schema() AND i.tablename = 'notifications'
  AND i.indexname = $1
"""


async def check_dedupe(*, ctx: StepContext, **_: Any) -> Done:
    p: Params = ctx.params
    db = ctx.clients.need("database")
    groups = await db.fetch(_DUPLICATES, p.dedupe_days)
    index = await db.fetchrow(_INDEX, UNIQUE_INDEX)
    extra = sum(int(g["n"]) - 1 for g in groups)
    index_ok = bool(index and index["indisunique"] and index["indisvalid"])
    if index is None:
        idx = f"unique index {UNIQUE_INDEX} is MISSING (root cause: dedupe not enforced)"
    elif not index_ok:
        idx = f"index {UNIQUE_INDEX} exists but is not a valid unique index"
    else:
        idx = f"unique index {UNIQUE_INDEX} present"
    sample = [
        {
            "user_id": str(g["user_id"]),
            "alert_id": g["alert_id"],
            "day": g["day"].date().isoformat(),
            "count": int(g["n"]),
        }
        for g in groups[:20]
    ]
    return Done(
        f"{len(groups)} duplicate (user, alert, day) groups with {extra} extra rows"
        f" since {p.dedupe_days} day(s) ago; {idx}",
        data={
            "groups": len(groups),
            "extra_rows": extra,
            "sample": sample,
            "index_present": index is not None,
            "index_ok": index_ok,
        },
    )


def render_check_dedupe(*, ctx: StepContext, **_: Any) -> str:
    p: Params = ctx.params
    return plan.sql(_DUPLICATES, p.dedupe_days) + "\n" + plan.sql(_INDEX, UNIQUE_INDEX)


# ---------------------------------------------------- 4 delete duplicates (approve)

_DUP_ROWS = f"""
SELECT n.id, n.user_id, n.alert_id, n.payload_json, n.created_at
FROM notifications n
JOIN (SELECT id, row_number() OVER (
          PARTITION BY user_id, alert_id, date_trunc('day', created_at AT TIME ZONE 'UTC')
          ORDER BY id) AS rn
      FROM notifications
      WHERE created_at >= {_WINDOW}) d ON d.id = n.id
WHERE d.rn > 1
ORDER BY n.id
LIMIT $2
FOR UPDATE OF n
"""
_DELETE = "DELETE FROM notifications WHERE id = ANY($1::bigint[])"


async def delete_duplicates(*, ctx: StepContext, **_: Any) -> Done | Skip:
    p: Params = ctx.params
    db = ctx.clients.need("database")
    async with db.transaction() as tx:
        rows = await tx.fetch(_DUP_ROWS, p.dedupe_days, p.max_delete + 1)
        if not rows:
            return Skip("no duplicate notifications to delete")
        if len(rows) > p.max_delete:
            raise StepFailed(
                f"more than max_delete={p.max_delete} duplicates; nothing deleted,"
                " dedupe in batches by hand"
            )
        await tx.execute(_DELETE, [r["id"] for r in rows])
    deleted = [
        {
            "id": r["id"],
            "user_id": str(r["user_id"]),
            "alert_id": r["alert_id"],
            "payload_json": r["payload_json"],
            "created_at": r["created_at"].isoformat(),
        }
        for r in rows
    ]
    return Done(
        f"deleted {len(rows)} duplicate notifications (the first of each user, alert and day kept)",
        data={"deleted": len(rows)},
        changes={"deleted": deleted},
    )


def render_delete_duplicates(*, ctx: StepContext, **_: Any) -> str:
    p: Params = ctx.params
    found = ctx.results.get("check_dedupe")
    note = (
        f"\n-- check_dedupe found {found['extra_rows']} extra rows"
        + ("; approving now would delete nothing" if not found["extra_rows"] else "")
        if found
        else ""
    )
    return (
        f"BEGIN;\n{plan.sql(_DUP_ROWS, p.dedupe_days, p.max_delete + 1)}\n"
        f"{_DELETE}\n-- $1 = <the ids selected above; rows recorded>{note}\nCOMMIT;"
    )


# ------------------------------------------------ 5 scale evaluator (approve)


async def scale_evaluator_down(*, ctx: StepContext, **_: Any) -> Done | Skip:
    p: Params = ctx.params
    kube = ctx.clients.need("kubernetes")
    dep = p.evaluator_deployment
    if await kube.get_replicas(dep) == 0:
        return Skip(f"deployment/{dep} is already at 0 replicas")
    previous = int(await kube.scale(dep, 0))
    return Done(
        f"scaled deployment/{dep} from {previous} to 0 replicas",
        data={"previous_replicas": previous},
        changes={"deployment": dep, "previous_replicas": previous, "replicas": 0},
    )


async def scale_evaluator_back(
    *, ctx: StepContext, changes: Mapping[str, Any], **_: Any
) -> Done | Skip:
    kube = ctx.clients.need("kubernetes")
    dep = validation.k8s_name(changes["deployment"], field="deployment")
    previous = int(changes["previous_replicas"])
    current = await kube.get_replicas(dep)
    if current != int(changes["replicas"]):
        return Skip(f"deployment/{dep} now has {current} replicas (changed since); left alone")
    await kube.scale(dep, previous)
    return Done(f"scaled deployment/{dep} back to {previous} replicas")


def render_scale(*, ctx: StepContext, **_: Any) -> str:
    p: Params = ctx.params
    return (
        f"kubectl scale deployment/{p.evaluator_deployment} -n {plan.namespace(ctx)}"
        " --replicas=0  # previous replicas recorded; restored on resolve"
    )


# ----------------------------------------------------- on resolve: for review


async def review_offenders(*, ctx: StepContext, **_: Any) -> Done | Skip:
    ids = list((ctx.results.get("disable_offenders") or {}).get("disabled", []))
    if not ids:
        return Skip("no offenders were disabled")
    rows = await ctx.clients.need("database").fetch(
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


def _literal(text: str) -> Any:
    def render(*, ctx: StepContext, **_: Any) -> str:
        p: Params = ctx.params
        return plan.sql(text, p.window_minutes, p.top_limit)

    return render


STEPS: Sequence[Step] = (
    Step(
        "confirm_storm",
        "diagnose",
        "Confirm the storm in the notifications table",
        confirm_storm,
        render_confirm_storm,
        # A storm that cannot be seen is no reason to brake every alert.
        stop_on_failure=True,
        timeout=15.0,
    ),
    Step(
        "global_cooldown",
        "mitigate",
        "Raise every alert's cooldown (emergency brake)",
        global_cooldown,
        render_global_cooldown,
        mutates=True,
        undo=restore_cooldowns,
    ),
    Step("top_offenders", "diagnose", "Find the top firing alerts", top_offenders, _literal(_TOP)),
    Step(
        "disable_offenders",
        "mitigate",
        "Disable the top offending alerts",
        disable_offenders,
        render_disable_offenders,
        mutates=True,
    ),
    Step(
        "check_dedupe", "diagnose", "Check notification dedupe", check_dedupe, render_check_dedupe
    ),
    Step(
        "delete_duplicates",
        "mitigate",
        "Delete duplicate notifications",
        delete_duplicates,
        render_delete_duplicates,
        mutates=True,
        approval="approve",
        needs=("database",),
    ),
    Step(
        "scale_evaluator_down",
        "mitigate",
        "Scale the alert evaluator (scheduler) to 0",
        scale_evaluator_down,
        render_scale,
        mutates=True,
        approval="approve",
        needs=("kubernetes",),
        undo=scale_evaluator_back,
    ),
)

RESOLVE_STEPS: Sequence[Step] = (
    Step(
        "review_offenders",
        "notify",
        "List disabled offenders for review",
        review_offenders,
        render_review,
    ),
)

RUNBOOK = Runbook(
    id="RB-03",
    title="Alert storm",
    severity="P1",
    steps=tuple(STEPS),
    resolve_steps=tuple(RESOLVE_STEPS),
    params=Params,
    target=lambda labels, params: "global",
    anchor="rb-03-alert-storm",
)
