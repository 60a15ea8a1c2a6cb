"""RB-04 steps 1 to 3 on the rights registry: inspect the provider's row, the reported
user's licenses, confirm the violation, block exports; on resolve, report the block.

The block is never lifted here: compliance lifts it by hand.
"""

from __future__ import annotations

import uuid
from typing import Any

from remediator.errors import NotCorroborated
from remediator.runbook_api.context import StepContext
from remediator.runbook_api.steps import Done, Skip, StepFailed
from remediator.runbooks import export_audit, plan
from remediator.runbooks.rb04_params import Params, provider_of, reported_user

# ------------------------------------------------------------ 1 inspect registry

_INSPECT = """
SELECT provider, export, require_license
FROM provider_rights
WHERE provider = $1
"""


async def inspect_registry(*, ctx: StepContext, **_: Any) -> Done:
    provider = provider_of(ctx)
    db = ctx.clients.need_database()
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
    db = ctx.clients.need_database()
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
    db = ctx.clients.need_database()
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
    p = ctx.params_as(Params)
    provider = provider_of(ctx)
    if not _licensed(provider, p):
        raise NotCorroborated(
            f"{provider} is not in licensed_providers: its data needs no license to"
            " export, so no export violates its rights; exports left open"
        )
    db = ctx.clients.need_database()
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
    p = ctx.params_as(Params)
    provider = provider_of(ctx)
    head = (
        f"-- {provider} is in licensed_providers\n"
        if _licensed(provider, p)
        else f"-- {provider} is NOT in licensed_providers: not corroborated, nothing read\n"
    )
    return head + plan.sql(
        export_audit.CONFIRM, provider, p.audit_days, list(p.export_license_types)
    )


# ------------------------------------------------------- on resolve: report

_REPORT = "SELECT export, require_license FROM provider_rights WHERE provider = $1"


async def report_block(*, ctx: StepContext, **_: Any) -> Done:
    provider = provider_of(ctx)
    db = ctx.clients.need_database()
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
