"""RB-04 Rights registry violation, as declared steps (P1).

Runbook order, automated:

    1 inspect the rights registry row of the provider     diagnose (stops the run if
                                                          the provider is unknown)
    1 the provider's entry in the registry YAML           diagnose (rights_registry)
    2 check the reported user's licenses                  diagnose (``user_id`` label)
    - confirm the violation                               diagnose; corroborates the
                                                          alert (below)
    3 block exports of the provider                       mitigate, auto; records the
                                                          old row
    4 audit 7 days of export_pdf events against
      user_licenses and list the violations               diagnose
    5 revoke the violating PDFs (S3 delete)               approve
    5 notify the users whose PDFs were revoked            approve
    6 grant the missing license (if legitimate)           approve
    on resolve: nothing is undone. Compliance lifts the block by hand; the resolve
    page says so and shows the registry row as it stands.

Gaps closed over the runbook text: the block reads the old row under ``FOR UPDATE``
and records it; the audit counts an export whose event does not say which providers
it carried as a violation candidate (it cannot be cleared); revocation re-checks the
licenses at the time it runs (a license granted since the audit makes that export
legitimate) and only deletes keys under the user's own prefix; users are told their
export was revoked only once it is gone from S3; every approve step is bounded.

A payload is a claim: exports are blocked only when the database shows the violation.
The provider must be one whose data needs a license to export (``licensed_providers``:
the rights registry's ``require_license: true``; the provider_rights row cannot say so,
it is what may be misconfigured), and the audit's own query must find at least one
export_pdf event of the last ``audit_days`` that carried its data (or does not say
which providers it carried) by a user without an export license. Otherwise the run is
"not corroborated" and nothing is blocked.

This module must never put an unchecked label into SQL or an S3 key, never delete
an object outside ``<user-uuid>/`` of the configured bucket, and never lift the block.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from remediator import validation
from remediator.errors import InputRejected, NotCorroborated
from remediator.runbook_api.context import StepContext
from remediator.runbook_api.steps import Done, Runbook, Skip, Step, StepFailed
from remediator.runbooks import export_audit, plan, rights_registry
from remediator.validation import aws as aws_checks

_ALERT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}", re.ASCII)
_SHOWN_USERS = 10

REVOKED_MESSAGE = "Your export has been revoked due to licensing restrictions"


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Rights-registry names the provider label may name (matched case-insensitively,
    # used in the registry's own spelling).
    providers: tuple[str, ...] = ("FMP", "POLYGON", "FRED", "NEWS")
    # Those whose data may only be exported under a license (RIGHTS_REGISTRY.yaml's
    # require_license: true); None: all of `providers`. Leave out public data (FRED):
    # an alert about it then cannot be a violation, and never blocks its exports.
    licensed_providers: tuple[str, ...] | None = None
    audit_days: int = Field(7, ge=1, le=90)
    max_audit_rows: int = Field(500, ge=1, le=5000)
    # License types that allow exporting the provider's data.
    export_license_types: tuple[str, ...] = ("export", "redistribute")
    exports_bucket: str = "dawsos-exports-prod"
    max_revocations: int = Field(25, ge=1, le=500)
    max_notifications: int = Field(50, ge=1, le=1000)
    notification_alert_id: str = "sys-rights-violation"
    grant_license_type: str = "export"
    max_license_grants: int = Field(10, ge=1, le=100)
    # Where the rights registry YAML (.ops/RIGHTS_REGISTRY.yaml) is read from for step
    # 1: an absolute path, or a ConfigMap "name" or "name/key" (rights_registry).
    rights_registry_path: str | None = None
    rights_registry_configmap: str | None = None

    _registry_path = field_validator("rights_registry_path")(rights_registry.check_path)
    _registry_configmap = field_validator("rights_registry_configmap")(
        rights_registry.check_configmap
    )

    @field_validator("providers")
    @classmethod
    def _providers(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v or any(not validation.is_provider_name(p) for p in v):
            raise ValueError("a non-empty list of provider names")
        return v

    @model_validator(mode="after")
    def _licensed_are_providers(self) -> Params:
        known = {p.lower() for p in self.providers}
        unknown = [p for p in self.licensed_providers or () if p.lower() not in known]
        if unknown:
            raise ValueError(f"licensed_providers {unknown} are not in providers")
        return self

    @field_validator("export_license_types")
    @classmethod
    def _license_types(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v or any(t not in ("view", "export", "redistribute") for t in v):
            raise ValueError("license types are view, export or redistribute")
        return v

    @field_validator("grant_license_type")
    @classmethod
    def _grant_type(cls, v: str) -> str:
        if v not in ("export", "redistribute"):
            raise ValueError("export or redistribute")
        return v

    @field_validator("exports_bucket")
    @classmethod
    def _bucket(cls, v: str) -> str:
        try:
            return aws_checks.check_bucket("exports_bucket", v)
        except InputRejected as exc:
            raise ValueError(exc.reason) from None

    @field_validator("notification_alert_id")
    @classmethod
    def _alert_id(cls, v: str) -> str:
        if not _ALERT_ID.fullmatch(v):
            raise ValueError("an alerts.id such as sys-rights-violation")
        return v


# ------------------------------------------------------------------ helpers


def provider_of(ctx: StepContext) -> str:
    params: Params = ctx.params
    return validation.provider(ctx.labels.get("provider"), params.providers)


def _target(labels: Mapping[str, str], params: Any) -> str:
    return validation.provider(labels.get("provider"), params.providers)


def uuid_label(value: object, *, field: str) -> str:
    """A canonical UUID (lowercase, hyphenated) or InputRejected."""
    text = validation.bounded_text(value, 36, field=field)
    try:
        parsed = uuid.UUID(text)
    except ValueError:
        raise InputRejected(field, f"{validation.shown(text)} is not a UUID") from None
    if str(parsed) != text.lower():
        raise InputRejected(field, f"{validation.shown(text)} is not a canonical UUID")
    return str(parsed)


def reported_user(ctx: StepContext) -> str | None:
    value = ctx.labels.get("user_id")
    return None if value is None else uuid_label(value, field="user_id")


def _users(ids: Sequence[str]) -> str:
    shown = ", ".join(ids[:_SHOWN_USERS])
    return shown + (f" and {len(ids) - _SHOWN_USERS} more" if len(ids) > _SHOWN_USERS else "")


def _violations(ctx: StepContext) -> list[Mapping[str, Any]]:
    audit = ctx.results.get("audit_exports")
    if audit is None or "violations" not in audit:
        raise StepFailed("the export audit has no result in this run; audit by hand first")
    return list(audit["violations"])


# ------------------------------------------------------------ 1 inspect registry

_INSPECT = """
SELECT provider, export, require_license
FROM provider_rights
WHERE provider = $1
"""


async def inspect_registry(*, ctx: StepContext, **_: Any) -> Done:
    provider = provider_of(ctx)
    db = ctx.clients.need("database")
    row = await db.fetchrow(_INSPECT, provider)
    if row is None:
        raise StepFailed(f"provider {provider} has no row in provider_rights")
    ok = row["export"] == "restricted" and row["require_license"]
    verdict = "as expected" if ok else "MISCONFIGURED (expected restricted, require_license)"
    return Done(
        f"{provider}: export={row['export']}, require_license="
        f"{str(row['require_license']).lower()}: {verdict}",
        data={
            "provider": provider,
            "export": row["export"],
            "require_license": bool(row["require_license"]),
            "misconfigured": not ok,
        },
    )


def render_inspect_registry(*, ctx: StepContext, **_: Any) -> str:
    return plan.sql(_INSPECT, provider_of(ctx))


# ------------------------------------------------------ 2 reported user licenses

_USER_LICENSES = """
SELECT user_id, provider, license_type, granted_at
FROM user_licenses
WHERE user_id = $1 AND provider = $2
ORDER BY license_type
"""


async def check_reported_user(*, ctx: StepContext, **_: Any) -> Done | Skip:
    user = reported_user(ctx)
    provider = provider_of(ctx)
    if user is None:
        return Skip("the alert names no reported user (no user_id label)")
    db = ctx.clients.need("database")
    rows = await db.fetch(_USER_LICENSES, uuid.UUID(user), provider)
    types = [r["license_type"] for r in rows]
    if not types:
        return Done(
            f"user {user} holds no {provider} license", data={"user_id": user, "license_types": []}
        )
    return Done(
        f"user {user} holds {provider} licenses: {', '.join(types)}",
        data={"user_id": user, "license_types": types},
    )


def render_check_reported_user(*, ctx: StepContext, **_: Any) -> str:
    user = reported_user(ctx)
    if user is None:
        return "(no user_id label: nothing to check)"
    return plan.sql(_USER_LICENSES, user, provider_of(ctx))


# -------------------------------------------------------- 3 restrict exports

_LOCK_ROW = """
SELECT provider, export, require_license
FROM provider_rights
WHERE provider = $1
FOR UPDATE
"""
_RESTRICT = """
UPDATE provider_rights
SET export = 'restricted', require_license = TRUE
WHERE provider = $1
"""
KEPT = "kept after the alert resolves: compliance lifts the block"


async def restrict_exports(*, ctx: StepContext, **_: Any) -> Done | Skip:
    provider = provider_of(ctx)
    db = ctx.clients.need("database")
    async with db.transaction() as tx:
        row = await tx.fetchrow(_LOCK_ROW, provider)
        if row is None:
            raise StepFailed(f"provider {provider} has no row in provider_rights")
        if row["export"] == "restricted" and row["require_license"]:
            return Skip(f"{provider} exports are already restricted with a license required")
        await tx.execute(_RESTRICT, provider)
    old = {
        "provider": provider,
        "export": row["export"],
        "require_license": bool(row["require_license"]),
    }
    return Done(
        f"blocked {provider} exports (was export={row['export']}, require_license="
        f"{str(row['require_license']).lower()}); {KEPT}",
        data={"provider": provider, "previous": old},
        changes={"provider_rights": [old]},
    )


def render_restrict_exports(*, ctx: StepContext, **_: Any) -> str:
    provider = provider_of(ctx)
    lock, restrict = plan.sql(_LOCK_ROW, provider), plan.sql(_RESTRICT, provider)
    return f"BEGIN;\n{lock}\n{restrict}\nCOMMIT;\n-- {KEPT}"


# --------------------------------------------------- confirm the violation


def _licensed(provider: str, p: Params) -> bool:
    licensed = p.licensed_providers if p.licensed_providers is not None else p.providers
    return provider.lower() in {x.lower() for x in licensed}


async def confirm_violation(*, ctx: StepContext, **_: Any) -> Done:
    """Corroborates the alert: the violation is in analytics_events and user_licenses."""
    p: Params = ctx.params
    provider = provider_of(ctx)
    if not _licensed(provider, p):
        raise NotCorroborated(
            f"{provider} is not in licensed_providers: its data needs no license to"
            " export, so no export violates its rights; exports left open"
        )
    db = ctx.clients.need("database")
    row = await export_audit.confirm(db, provider, p)
    n = int(row["n"]) if row else 0
    if row is None or n == 0:
        raise NotCorroborated(
            f"no export_pdf event in the last {p.audit_days} days carried {provider}"
            " data without an export license; exports left open"
        )
    unknown = int(row["unknown"])
    note = f" ({unknown} of them do not say which providers they carried)" if unknown else ""
    return Done(
        f"{n} export_pdf events in the last {p.audit_days} days carried {provider} data"
        f" without an export license{note}; the latest at {row['last'].isoformat()}",
        data={"violations": n, "providers_unknown": unknown},
    )


def render_confirm_violation(*, ctx: StepContext, **_: Any) -> str:
    p: Params = ctx.params
    provider = provider_of(ctx)
    head = (
        f"-- {provider} is in licensed_providers\n"
        if _licensed(provider, p)
        else f"-- {provider} is NOT in licensed_providers: not corroborated, nothing read\n"
    )
    return head + plan.sql(
        export_audit.CONFIRM, provider, p.audit_days, list(p.export_license_types)
    )


# ------------------------------------------------------------ 4 audit exports


async def audit_exports(*, ctx: StepContext, **_: Any) -> Done:
    p: Params = ctx.params
    provider = provider_of(ctx)
    db = ctx.clients.need("database")
    violations = await export_audit.violations(db, provider, p)
    users = sorted({v["user_id"] for v in violations if v["user_id"] is not None})
    truncated = len(violations) >= p.max_audit_rows
    if not violations:
        summary = (
            f"no export_pdf event in {p.audit_days} days carried {provider} data"
            " without an export license"
        )
    else:
        summary = (
            f"{len(violations)}{'+' if truncated else ''} export_pdf events in"
            f" {p.audit_days} days carried {provider} data without an export license,"
            f" by {len(users)} users: {_users(users)}"
        )
    return Done(
        summary,
        data={
            "provider": provider,
            "violations": violations,
            "users": users,
            "truncated": truncated,
        },
    )


def render_audit_exports(*, ctx: StepContext, **_: Any) -> str:
    p: Params = ctx.params
    return plan.sql(
        export_audit.AUDIT,
        provider_of(ctx),
        p.audit_days,
        list(p.export_license_types),
        p.max_audit_rows,
    )


# ------------------------------------------------------------ 5 revoke PDFs

_LICENSED_NOW = """
SELECT DISTINCT user_id
FROM user_licenses
WHERE user_id = ANY($1::uuid[]) AND provider = $2 AND license_type = ANY($3::text[])
"""


async def _licensed_now(ctx: StepContext, provider: str, users: Sequence[str]) -> set[str]:
    p: Params = ctx.params
    if not users:
        return set()
    db = ctx.clients.need("database")
    rows = await db.fetch(
        _LICENSED_NOW, [uuid.UUID(u) for u in users], provider, list(p.export_license_types)
    )
    return {str(r["user_id"]) for r in rows}


async def revoke_pdfs(*, ctx: StepContext, **_: Any) -> Done | Skip:
    p: Params = ctx.params
    provider = provider_of(ctx)
    violations = _violations(ctx)
    if not violations:
        return Skip("the audit found no violating exports")
    aws = ctx.clients.need("aws")
    licensed = await _licensed_now(
        ctx, provider, sorted({v["user_id"] for v in violations if v["user_id"]})
    )
    bad = [v for v in violations if v["key"] is None]
    now_legit = [v for v in violations if v["key"] is not None and v["user_id"] in licensed]
    todo = [v for v in violations if v["key"] is not None and v["user_id"] not in licensed]
    over = todo[p.max_revocations :]
    deleted: list[dict[str, Any]] = []
    already_gone: list[str] = []
    for v in todo[: p.max_revocations]:
        if await aws.s3_object_exists(p.exports_bucket, v["key"]):
            await aws.s3_delete_object(p.exports_bucket, v["key"])
            deleted.append({"user_id": v["user_id"], "key": v["key"], "event_id": v["event_id"]})
        else:
            already_gone.append(v["key"])
    parts = [f"deleted {len(deleted)} PDFs from s3://{p.exports_bucket}"]
    if already_gone:
        parts.append(f"{len(already_gone)} already gone")
    if now_legit:
        parts.append(f"{len(now_legit)} kept: the user holds a license now")
    if bad:
        parts.append(
            f"{len(bad)} NOT revoked, no safe key: "
            + "; ".join(
                f"event {v['event_id'] or 'of ' + v['created_at']}: {v['key_problem']}"
                for v in bad[:5]
            )
        )
    if over:
        parts.append(
            f"{len(over)} over the limit of {p.max_revocations} left for a human: "
            + ", ".join(v["key"] for v in over[:5])
        )
    data = {
        "deleted": deleted,
        "already_gone": already_gone,
        "kept_licensed": [v["key"] for v in now_legit],
        "no_key": [v["event_id"] for v in bad],
        "over_limit": [v["key"] for v in over],
    }
    # Deleting cannot be undone; the record is for the audit trail only.
    return Done(
        "; ".join(parts),
        data=data,
        changes={"bucket": p.exports_bucket, "deleted": [d["key"] for d in deleted]},
    )


def render_revoke_pdfs(*, ctx: StepContext, **_: Any) -> str:
    p: Params = ctx.params
    audit = ctx.results.get("audit_exports")
    if not audit:
        return (
            f"aws s3 rm s3://{p.exports_bucket}/<user-uuid>/<export-id>.pdf  # for each"
            f" unlicensed export the audit finds, at most {p.max_revocations}"
        )
    keys = [v["key"] for v in audit.get("violations", []) if v.get("key")]
    if not keys:
        return "(the audit found no revocable export)"
    lines = [f"aws s3 rm s3://{p.exports_bucket}/{k}" for k in keys[: p.max_revocations]]
    if len(keys) > p.max_revocations:
        lines.append(f"# {len(keys) - p.max_revocations} more over the limit, by hand")
    lines.append("# skipped at run time for users who hold an export license by then")
    return "\n".join(lines)


# ------------------------------------------------------------ 5 notify users

_NOTIFY = """
INSERT INTO notifications (user_id, alert_id, payload_json)
VALUES ($1, $2, $3::jsonb)
ON CONFLICT (user_id, alert_id, date_trunc('day', created_at AT TIME ZONE 'UTC')) DO NOTHING
RETURNING id
"""


async def notify_users(*, ctx: StepContext, **_: Any) -> Done | Skip:
    """Tell each violating user whose exports are gone from S3 that they were revoked."""
    p: Params = ctx.params
    provider = provider_of(ctx)
    violations = _violations(ctx)
    by_user: dict[str, list[Mapping[str, Any]]] = {}
    for v in violations:
        if v["user_id"] is not None and v["key"] is not None:
            by_user.setdefault(v["user_id"], []).append(v)
    if not by_user:
        return Skip("the audit found no user with a revocable export")
    aws = ctx.clients.need("aws")
    licensed = await _licensed_now(ctx, provider, sorted(by_user))
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
            + (f"; still in S3 for {_users(not_revoked)}" if not_revoked else "")
        )
    over = revoked[p.max_notifications :]
    db = ctx.clients.need("database")
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
    parts = [f"notified {len(notified)} users that their export was revoked: {_users(notified)}"]
    already = sorted(set(revoked[: p.max_notifications]) - set(notified))
    if already:
        parts.append(f"{len(already)} already notified today")
    if not_revoked:
        parts.append(f"not notified, export still in S3: {_users(not_revoked)}")
    if over:
        parts.append(f"{len(over)} over the limit of {p.max_notifications} left for a human")
    return Done(
        "; ".join(parts),
        data={"notified": notified, "not_revoked": not_revoked},
        changes={"notifications": inserted},
    )


def render_notify_users(*, ctx: StepContext, **_: Any) -> str:
    p: Params = ctx.params
    audit = ctx.results.get("audit_exports") or {}
    users = audit.get("users") or ["<user-uuid>"]
    payload = {"message": REVOKED_MESSAGE, "provider": provider_of(ctx), "exports": ["..."]}
    return (
        plan.sql(
            _NOTIFY,
            f"<each of {len(users)} users: {_users(list(users))}>",
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
    p: Params = ctx.params
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
    db = ctx.clients.need("database")
    async with db.transaction() as tx:
        rows = await tx.fetch(_GRANT, [uuid.UUID(u) for u in users], provider, p.grant_license_type)
    granted = sorted(str(r["user_id"]) for r in rows)
    if not granted:
        return Skip(f"every user already holds a {provider} {p.grant_license_type} license")
    return Done(
        f"granted a {provider} {p.grant_license_type} license to {len(granted)} users:"
        f" {_users(granted)}",
        data={"granted": granted},
        changes={
            "user_licenses": [
                {"user_id": u, "provider": provider, "license_type": p.grant_license_type}
                for u in granted
            ]
        },
    )


def render_grant_license(*, ctx: StepContext, **_: Any) -> str:
    p: Params = ctx.params
    try:
        users = _grantees(ctx)
    except StepFailed:
        users = ["<the users the audit finds>"]
    return plan.sql(_GRANT, users, provider_of(ctx), p.grant_license_type)


# ------------------------------------------------------- on resolve: report

_REPORT = "SELECT export, require_license FROM provider_rights WHERE provider = $1"


async def report_block(*, ctx: StepContext, **_: Any) -> Done:
    provider = provider_of(ctx)
    db = ctx.clients.need("database")
    row = await db.fetchrow(_REPORT, provider)
    if row is None:
        raise StepFailed(f"provider {provider} has no row in provider_rights")
    return Done(
        f"{provider} stays export={row['export']}, require_license="
        f"{str(row['require_license']).lower()}: nothing is lifted automatically;"
        " compliance lifts the block when the audit is closed",
        data={"export": row["export"], "require_license": bool(row["require_license"])},
    )


def render_report_block(*, ctx: StepContext, **_: Any) -> str:
    return plan.sql(_REPORT, provider_of(ctx))


STEPS: Sequence[Step] = (
    Step(
        "inspect_registry",
        "diagnose",
        "Inspect the provider's rights registry row",
        inspect_registry,
        render_inspect_registry,
        stop_on_failure=True,
        timeout=15.0,
    ),
    Step(
        "read_rights_registry",
        "diagnose",
        "Show the provider's entry in the rights registry YAML",
        rights_registry.read_registry,
        rights_registry.render_read_registry,
        timeout=15.0,
    ),
    Step(
        "check_reported_user",
        "diagnose",
        "Check the reported user's licenses",
        check_reported_user,
        render_check_reported_user,
        timeout=15.0,
    ),
    Step(
        "confirm_violation",
        "diagnose",
        "Confirm the violation in the export events",
        confirm_violation,
        render_confirm_violation,
        # Exports are blocked only on a violation that was seen.
        stop_on_failure=True,
        timeout=30.0,
    ),
    Step(
        "restrict_exports",
        "mitigate",
        "Block exports of the provider (kept after resolve: compliance lifts it)",
        restrict_exports,
        render_restrict_exports,
        mutates=True,
        idempotent=True,
        timeout=15.0,
    ),
    Step(
        "audit_exports",
        "diagnose",
        "Audit recent PDF exports against user licenses",
        audit_exports,
        render_audit_exports,
        timeout=30.0,
    ),
    Step(
        "revoke_pdfs",
        "mitigate",
        "Revoke the violating PDFs (S3 delete)",
        revoke_pdfs,
        render_revoke_pdfs,
        mutates=True,
        approval="approve",
        needs=("aws",),
        idempotent=True,
        timeout=120.0,
        attempts=2,
    ),
    Step(
        "notify_users",
        "notify",
        "Notify the users whose exports were revoked",
        notify_users,
        render_notify_users,
        mutates=True,
        approval="approve",
        needs=("aws", "database"),
        idempotent=True,
        timeout=60.0,
    ),
    Step(
        "grant_license",
        "mitigate",
        "Grant the missing license (only if legitimate)",
        grant_license,
        render_grant_license,
        mutates=True,
        approval="approve",
        needs=("database",),
        idempotent=True,
        timeout=15.0,
    ),
)

RESOLVE_STEPS: Sequence[Step] = (
    Step(
        "report_block",
        "verify",
        "Exports stay blocked until compliance lifts the block",
        report_block,
        render_report_block,
        timeout=15.0,
    ),
)

RUNBOOK = Runbook(
    id="RB-04",
    title="Rights registry violation",
    severity="P1",
    steps=tuple(STEPS),
    resolve_steps=tuple(RESOLVE_STEPS),
    params=Params,
    target=_target,
    anchor="rb-04-rights-registry-violation",
)
