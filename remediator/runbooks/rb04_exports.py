"""RB-04 steps 4 and 5: audit the PDF exports against the licenses, then (on approval)
revoke the violating PDFs.

Revocation re-checks the licenses when it runs and deletes only keys under the user's
own prefix of the configured bucket.
"""

from __future__ import annotations

from typing import Any

from remediator.runbook_api.context import StepContext
from remediator.runbook_api.steps import Done, Skip
from remediator.runbooks import export_audit, plan
from remediator.runbooks.rb04_params import (
    Params,
    abbreviated,
    audited_violations,
    licensed_now,
    provider_of,
)

# ------------------------------------------------------------ 4 audit exports


async def audit_exports(*, ctx: StepContext, **_: Any) -> Done:
    p = ctx.params_as(Params)
    provider = provider_of(ctx)
    db = ctx.clients.need_database()
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
            f" by {len(users)} users: {abbreviated(users)}"
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
    p = ctx.params_as(Params)
    return plan.sql(
        export_audit.AUDIT,
        provider_of(ctx),
        p.audit_days,
        list(p.export_license_types),
        p.max_audit_rows,
    )


async def revoke_pdfs(*, ctx: StepContext, **_: Any) -> Done | Skip:
    p = ctx.params_as(Params)
    provider = provider_of(ctx)
    violations = audited_violations(ctx)
    if not violations:
        return Skip("the audit found no violating exports")
    aws = ctx.clients.need_aws()
    licensed = await licensed_now(
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
    p = ctx.params_as(Params)
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
