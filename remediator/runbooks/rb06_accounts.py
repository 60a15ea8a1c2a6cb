"""RB-06 steps 5 and 6: the logins from the source address, then (on approval) force
those accounts to reset their passwords and notify them.

Acts only on the accounts this run's login lookup found.
"""

from __future__ import annotations

import uuid
from typing import Any

from remediator.runbook_api.context import StepContext
from remediator.runbook_api.steps import Done, Skip, StepFailed
from remediator.runbooks import plan
from remediator.runbooks.rb06_params import (
    MAX_LOGIN_ADDRESSES,
    Params,
    abbreviated,
    addresses_of,
    login_users,
    source_network,
)

RESET_MESSAGE = "Security incident detected. Please reset your password."


# ----------------------------------------------------------- 5 logins from IP

_LOGINS = """
SELECT user_id, max(created_at) AS last_login, count(*) AS logins
FROM analytics_events
WHERE event_type = 'login'
  AND meta_json->>'ip_address' = ANY($1::text[])
  AND created_at > now() - make_interval(days => $2)
  AND user_id IS NOT NULL
GROUP BY user_id
ORDER BY last_login DESC, user_id
"""


async def logins_from_ip(*, ctx: StepContext, **_: Any) -> Done | Skip:
    p = ctx.params_as(Params)
    net = source_network(ctx, for_blocking=False)
    # The empty list tells the approve steps there is nobody to act on, by design.
    if net is None:
        return Skip(
            "the alert carries no source_ip label: no address to look up", data={"user_ids": []}
        )
    addresses = addresses_of(net)
    if addresses is None:
        return Skip(
            f"{net} holds more than {MAX_LOGIN_ADDRESSES} addresses: look up logins by hand",
            data={"user_ids": [], "too_broad": True},
        )
    db = ctx.clients.need_database()
    rows = await db.fetch(_LOGINS, addresses, p.login_days)
    users = [str(r["user_id"]) for r in rows]
    if not users:
        return Done(
            f"no logins from {net} in the last {p.login_days} days",
            data={"user_ids": [], "network": str(net)},
        )
    return Done(
        f"{len(users)} accounts logged in from {net} in the last {p.login_days} days:"
        f" {abbreviated(users)}",
        data={"user_ids": users, "network": str(net)},
    )


def render_logins_from_ip(*, ctx: StepContext, **_: Any) -> str:
    p = ctx.params_as(Params)
    net = source_network(ctx, for_blocking=False)
    if net is None:
        return "(no source_ip label: nothing to look up)"
    return plan.sql(_LOGINS, addresses_of(net) or [f"<every address of {net}>"], p.login_days)


# --------------------------------------------------- 5 force password resets

_LOCK_USERS = """
SELECT id, password_reset_required
FROM users
WHERE id = ANY($1::uuid[])
ORDER BY id
FOR UPDATE
"""
_RESET = """
UPDATE users
SET password_reset_required = TRUE
WHERE id = ANY($1::uuid[]) AND NOT password_reset_required
"""


async def force_password_resets(*, ctx: StepContext, **_: Any) -> Done | Skip:
    p = ctx.params_as(Params)
    users = login_users(ctx)
    if not users:
        return Skip("no account to reset: no login from the alert's address was found")
    chosen, over = users[: p.max_password_resets], users[p.max_password_resets :]
    db = ctx.clients.need_database()
    async with db.transaction() as tx:
        rows = await tx.fetch(_LOCK_USERS, [uuid.UUID(u) for u in chosen])
        to_set = [r["id"] for r in rows if not r["password_reset_required"]]
        if to_set:
            await tx.execute(_RESET, to_set)
    changed = sorted(str(u) for u in to_set)
    pending = sorted(str(r["id"]) for r in rows if r["password_reset_required"])
    notes = []
    if pending:
        notes.append(f"{len(pending)} already had a reset pending")
    if over:
        notes.append(
            f"{len(over)} over the limit of {p.max_password_resets} left for a"
            f" human: {abbreviated(over)}"
        )
    if not changed:
        return Skip("; ".join(["no reset forced", *notes]))
    # Kept on resolve: a compromised account stays reset. Previous values recorded.
    return Done(
        "; ".join(
            [f"forced a password reset for {len(changed)} accounts: {abbreviated(changed)}", *notes]
        ),
        data={"reset": changed, "already_pending": pending},
        changes={"users": [{"id": u, "password_reset_required": False} for u in changed]},
    )


def render_force_password_resets(*, ctx: StepContext, **_: Any) -> str:
    p = ctx.params_as(Params)
    try:
        users: list[str] | str = login_users(ctx)[: p.max_password_resets]
    except StepFailed:
        users = "<the accounts that logged in from the address>"
    lock, reset = plan.sql(_LOCK_USERS, users), plan.sql(_RESET, "<those not yet reset>")
    return f"BEGIN;\n{lock}\n{reset}\nCOMMIT;"


# ------------------------------------------------------------ 6 notify users

_NOTIFY = """
INSERT INTO notifications (user_id, alert_id, payload_json)
SELECT u, $2, $3::jsonb FROM unnest($1::uuid[]) AS t(u)
ON CONFLICT (user_id, alert_id, date_trunc('day', created_at AT TIME ZONE 'UTC')) DO NOTHING
RETURNING id, user_id
"""


async def notify_users(*, ctx: StepContext, **_: Any) -> Done | Skip:
    p = ctx.params_as(Params)
    users = login_users(ctx)
    if not users:
        return Skip("nobody to notify: no login from the alert's address was found")
    chosen, over = users[: p.max_notifications], users[p.max_notifications :]
    db = ctx.clients.need_database()
    async with db.transaction() as tx:
        rows = await tx.fetch(
            _NOTIFY,
            [uuid.UUID(u) for u in chosen],
            p.notification_alert_id,
            {"message": RESET_MESSAGE},
        )
    notified = sorted(str(r["user_id"]) for r in rows)
    notes = []
    if len(notified) < len(chosen):
        notes.append(f"{len(chosen) - len(notified)} already notified today")
    if over:
        notes.append(f"{len(over)} over the limit of {p.max_notifications} left for a human")
    if not notified:
        return Skip("; ".join(["nobody notified", *notes]))
    return Done(
        "; ".join([f"notified {len(notified)} accounts: {abbreviated(notified)}", *notes]),
        data={"notified": notified},
        changes={"notifications": sorted(int(r["id"]) for r in rows)},
    )


def render_notify_users(*, ctx: StepContext, **_: Any) -> str:
    p = ctx.params_as(Params)
    try:
        users: list[str] | str = login_users(ctx)[: p.max_notifications]
    except StepFailed:
        users = "<the accounts that logged in from the address>"
    return plan.sql(_NOTIFY, users, p.notification_alert_id, {"message": RESET_MESSAGE})
