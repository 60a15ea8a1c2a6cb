"""RB-04 steps 5 and 6, on approval: notify the users whose PDFs were revoked, grant a
missing license.

Users are told their export was revoked only once it is gone from S3.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from remediator.runbook_api.context import StepContext
from remediator.runbook_api.steps import Done, Skip, StepFailed
from remediator.runbooks import plan
from remediator.runbooks.rb04_params import (
    Params,
    abbreviated,
    audited_violations,
    licensed_now,
    provider_of,
    reported_user,
)

REVOKED_MESSAGE = "Your export has been revoked due to licensing restrictions"


# ------------------------------------------------------------ 5 notify users

_NOTIFY = """
INSERT INTO notifications (user_id, alert_id, payload_json)
VALUES ($1, $2, $3::jsonb)
ON CONFLICT (user_id, alert_id, date_trunc('day', created_at AT TIME ZONE 'UTC')) DO NOTHING
RETURNING id
"""


async def notify_users(*, ctx: StepContext, **_: Any) -> Done | Skip:
    """Tell each violating user whose exports are gone from S3 that they were revoked."""
    p = ctx.params_as(Params)
    provider = provider_of(ctx)
    violations = audited_violations(ctx)
    by_user: dict[str, list[Mapping[str, Any]]] = {}
    for v in violations:
        if v["user_id"] is not None and v["key"] is not None:
            by_user.setdefault(v["user_id"], []).append(v)
    if not by_user:
        return Skip("the audit found no user with a revocable export")
    aws = ctx.clients.need_aws()
    licensed = await licensed_now(ctx, provider, sorted(by_user))
    revoked: list[str] = []
    not_revoked: list[str] = []
    for user in sorted(by_user):
        if user in licensed:
            continue
        present = [
            v for v in by_user[user] if await aws.s3_object_exists(p.exports_bucket, v["key"])
        ]
        (not_revoked if present else revoked).append(user)
    if not revoked:
        return Skip(
            "no violating user's exports have been revoked yet (approve the"
            " revocation first)"
            + (f"; still in S3 for {abbreviated(not_revoked)}" if not_revoked else "")
        )
    over = revoked[p.max_notifications :]
    db = ctx.clients.need_database()
    inserted: list[int] = []
    notified: list[str] = []
    async with db.transaction() as tx:
        for user in revoked[: p.max_notifications]:
            exports = sorted(v["export_id"] for v in by_user[user] if v["export_id"])
            payload = {"message": REVOKED_MESSAGE, "provider": provider, "exports": exports}
            row = await tx.fetchrow(_NOTIFY, uuid.UUID(user), p.notification_alert_id, payload)
            if row is not None:
                inserted.append(int(row["id"]))
                notified.append(user)
    parts = [
        f"notified {len(notified)} users that their export was revoked: {abbreviated(notified)}"
    ]
    already = sorted(set(revoked[: p.max_notifications]) - set(notified))
    if already:
        parts.append(f"{len(already)} already notified today")
    if not_revoked:
        parts.append(f"not notified, export still in S3: {abbreviated(not_revoked)}")
    if over:
        parts.append(f"{len(over)} over the limit of {p.max_notifications} left for a human")
    return Done(
        "; ".join(parts),
        data={"notified": notified, "not_revoked": not_revoked},
        changes={"notifications": inserted},
    )


def render_notify_users(*, ctx: StepContext, **_: Any) -> str:
    p = ctx.params_as(Params)
    audit = ctx.results.get("audit_exports") or {}
    users = audit.get("users")
    # Before the audit (a plan) the users are unknown: not "each of 1 users".
    who = (
        "<each user the audit finds>"
        if users is None
        else f"<each of {len(users)} users: {abbreviated(list(users))}>"
    )
    payload = {"message": REVOKED_MESSAGE, "provider": provider_of(ctx), "exports": ["..."]}
    return (
        plan.sql(
            _NOTIFY,
            who,
            p.notification_alert_id,
            payload,
        )
        + f"\n-- only users whose violating exports are gone from S3;"
        f" at most {p.max_notifications}"
    )


# ------------------------------------------------------------ 6 grant license

# NOT EXISTS rather than ON CONFLICT: the runbook names no unique key on user_licenses.
_GRANT = """
INSERT INTO user_licenses (user_id, provider, license_type, granted_at)
SELECT u, $2, $3, now() FROM unnest($1::uuid[]) AS t(u)
WHERE NOT EXISTS (
    SELECT 1 FROM user_licenses AS l
    WHERE l.user_id = t.u AND l.provider = $2 AND l.license_type = $3)
RETURNING user_id
"""


def _grantees(ctx: StepContext) -> list[str]:
    """The reported user if the alert names one (and the audit found them), else every
    violating user of the audit: the approval is the human's "this is legitimate"."""
    audit = ctx.results.get("audit_exports")
    if audit is None or "users" not in audit:
        raise StepFailed("the export audit has no result in this run; audit by hand first")
    users = [str(u) for u in audit["users"]]
    user = reported_user(ctx)
    if user is not None:
        return [user] if user in users else []
    return users


async def grant_license(*, ctx: StepContext, **_: Any) -> Done | Skip:
    p = ctx.params_as(Params)
    provider = provider_of(ctx)
    users = _grantees(ctx)
    if not users:
        return Skip("no violating user to license")
    if len(users) > p.max_license_grants:
        raise StepFailed(
            f"{len(users)} users would be licensed, more than"
            f" max_license_grants={p.max_license_grants}: grant by hand to the"
            " users compliance confirms"
        )
    db = ctx.clients.need_database()
    async with db.transaction() as tx:
        rows = await tx.fetch(_GRANT, [uuid.UUID(u) for u in users], provider, p.grant_license_type)
    granted = sorted(str(r["user_id"]) for r in rows)
    if not granted:
        return Skip(f"every user already holds a {provider} {p.grant_license_type} license")
    return Done(
        f"granted a {provider} {p.grant_license_type} license to {len(granted)} users:"
        f" {abbreviated(granted)}",
        data={"granted": granted},
        changes={
            "user_licenses": [
                {"user_id": u, "provider": provider, "license_type": p.grant_license_type}
                for u in granted
            ]
        },
    )


def render_grant_license(*, ctx: StepContext, **_: Any) -> str:
    p = ctx.params_as(Params)
    try:
        users = _grantees(ctx)
    except StepFailed:
        users = ["<the users the audit finds>"]
    return plan.sql(_GRANT, users, provider_of(ctx), p.grant_license_type)
