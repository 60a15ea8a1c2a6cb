"""RB-04 steps 5 and 6, on approval, as actions: notify the users whose PDFs were
revoked, grant a missing license.

Users are told their export was revoked only once it is gone from S3.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from remediator.runbook_api.action_steps import step
from remediator.runbook_api.actions import render_sql
from remediator.runbook_api.context import Clients, StepContext
from remediator.runbook_api.steps import Done, Need, Skip, StepFailed, StepOutcome
from remediator.runbooks.export_audit import Violation
from remediator.runbooks.rb04_params import (
    Audit,
    Params,
    abbreviated,
    audited,
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


@dataclass(frozen=True)
class NotifyRevoked:
    """Tell each violating user whose exports are gone from S3 that they were revoked
    (``violations`` None: the audit has no result yet, as in a plan)."""

    provider: str
    bucket: str
    alert_id: str
    limit: int
    license_types: tuple[str, ...]
    violations: tuple[Violation, ...] | None
    users: tuple[str, ...] | None  # the users the audit found, for the plan

    needs: ClassVar[Need] = "database"
    mutates: ClassVar[bool] = True

    def render(self) -> str:
        # Before the audit (a plan) the users are unknown: not "each of 1 users".
        who = (
            "<each user the audit finds>"
            if self.users is None
            else f"<each of {len(self.users)} users: {abbreviated(self.users)}>"
        )
        payload = {"message": REVOKED_MESSAGE, "provider": self.provider, "exports": ["..."]}
        return (
            render_sql(_NOTIFY, (who, self.alert_id, payload))
            + "\n-- only users whose violating exports are gone from S3;"
            f" at most {self.limit}"
        )

    async def execute(self, clients: Clients) -> StepOutcome:
        by_user: dict[str, list[Violation]] = {}
        for v in audited(self.violations):
            if v.user_id is not None and v.key is not None:
                by_user.setdefault(v.user_id, []).append(v)
        if not by_user:
            return Skip("the audit found no user with a revocable export")
        aws = clients.need_aws()
        licensed = await licensed_now(clients, self.provider, sorted(by_user), self.license_types)
        revoked: list[str] = []
        not_revoked: list[str] = []
        for user in sorted(by_user):
            if user in licensed:
                continue
            present = [
                v for v in by_user[user] if v.key and await aws.s3_object_exists(self.bucket, v.key)
            ]
            (not_revoked if present else revoked).append(user)
        if not revoked:
            return Skip(
                "no violating user's exports have been revoked yet (approve the"
                " revocation first)"
                + (f"; still in S3 for {abbreviated(not_revoked)}" if not_revoked else "")
            )
        chosen, over = revoked[: self.limit], revoked[self.limit :]
        inserted: list[int] = []
        notified: list[str] = []
        async with clients.need_database().transaction() as tx:
            for user in chosen:
                exports = sorted(v.export_id for v in by_user[user] if v.export_id)
                payload = {
                    "message": REVOKED_MESSAGE,
                    "provider": self.provider,
                    "exports": exports,
                }
                row = await tx.fetchrow(_NOTIFY, uuid.UUID(user), self.alert_id, payload)
                if row is not None:
                    inserted.append(int(row["id"]))
                    notified.append(user)
        parts = [
            f"notified {len(notified)} users that their export was revoked: {abbreviated(notified)}"
        ]
        already = sorted(set(chosen) - set(notified))
        if already:
            parts.append(f"{len(already)} already notified today")
        if not_revoked:
            parts.append(f"not notified, export still in S3: {abbreviated(not_revoked)}")
        if over:
            parts.append(f"{len(over)} over the limit of {self.limit} left for a human")
        return Done(
            "; ".join(parts),
            data={"notified": notified, "not_revoked": not_revoked},
            changes={"notifications": inserted},
        )


@step(
    "notify_users",
    "notify",
    "Notify the users whose exports were revoked",
    mutates=True,
    approval="approve",
    needs=("aws", "database"),
    idempotent=True,
    timeout=60.0,
)
def notify_users(ctx: StepContext[Params]) -> NotifyRevoked:
    p = ctx.params
    audit = ctx.found("audit_exports", Audit)
    violations = None if audit is None or audit.violations is None else tuple(audit.violations)
    users = None if audit is None or audit.users is None else tuple(audit.users)
    return NotifyRevoked(
        provider_of(ctx),
        p.exports_bucket,
        p.notification_alert_id,
        p.max_notifications,
        p.export_license_types,
        violations,
        users,
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


@dataclass(frozen=True)
class GrantLicense:
    """License the users (``None``: the audit has no result yet: a plan shows whom it
    would find, a run fails rather than guess)."""

    users: tuple[str, ...] | None
    provider: str
    license_type: str
    limit: int

    needs: ClassVar[Need] = "database"
    mutates: ClassVar[bool] = True

    def render(self) -> str:
        users = ["<the users the audit finds>"] if self.users is None else list(self.users)
        return render_sql(_GRANT, (users, self.provider, self.license_type))

    async def execute(self, clients: Clients) -> StepOutcome:
        if self.users is None:
            raise StepFailed("the export audit has no result in this run; audit by hand first")
        users, provider, kind = self.users, self.provider, self.license_type
        if not users:
            return Skip("no violating user to license")
        if len(users) > self.limit:
            raise StepFailed(
                f"{len(users)} users would be licensed, more than"
                f" max_license_grants={self.limit}: grant by hand to the"
                " users compliance confirms"
            )
        async with clients.need_database().transaction() as tx:
            rows = await tx.fetch(_GRANT, [uuid.UUID(u) for u in users], provider, kind)
        granted = sorted(str(r["user_id"]) for r in rows)
        if not granted:
            return Skip(f"every user already holds a {provider} {kind} license")
        return Done(
            f"granted a {provider} {kind} license to {len(granted)} users: {abbreviated(granted)}",
            data={"granted": granted},
            changes={
                "user_licenses": [
                    {"user_id": u, "provider": provider, "license_type": kind} for u in granted
                ]
            },
        )


def _grantees(ctx: StepContext, audited_users: Sequence[str]) -> tuple[str, ...]:
    """The reported user if the alert names one (and the audit found them), else every
    violating user of the audit: the approval is the human's "this is legitimate"."""
    users = [str(u) for u in audited_users]
    user = reported_user(ctx)
    if user is not None:
        return (user,) if user in users else ()
    return tuple(users)


@step(
    "grant_license",
    "mitigate",
    "Grant the missing license (only if legitimate)",
    mutates=True,
    approval="approve",
    needs=("database",),
    idempotent=True,
    timeout=15.0,
)
def grant_license(ctx: StepContext[Params]) -> GrantLicense:
    p = ctx.params
    provider = provider_of(ctx)
    audit = ctx.found("audit_exports", Audit)
    users = None if audit is None or audit.users is None else _grantees(ctx, audit.users)
    return GrantLicense(users, provider, p.grant_license_type, p.max_license_grants)
