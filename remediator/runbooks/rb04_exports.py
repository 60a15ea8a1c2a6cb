"""RB-04 steps 4 and 5, as actions: audit the PDF exports against the licenses, then (on
approval) revoke the violating PDFs with S3 deletes.

Revocation re-checks the licenses when it runs and deletes only keys under the user's
own prefix of the configured bucket (``export_audit.export_key`` made each key).
Deleting cannot be undone: the record is for the audit trail only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from remediator.runbook_api.action_steps import step
from remediator.runbook_api.actions import render_sql
from remediator.runbook_api.client_protocols import Aws
from remediator.runbook_api.context import Clients, StepContext
from remediator.runbook_api.steps import Done, Need, Skip, StepOutcome
from remediator.runbooks import export_audit
from remediator.runbooks.export_audit import Violation
from remediator.runbooks.rb04_params import (
    Audit,
    Params,
    abbreviated,
    audited,
    licensed_now,
    provider_of,
)

# ------------------------------------------------------------ 4 audit exports


@dataclass(frozen=True)
class AuditExports:
    provider: str
    days: int
    license_types: tuple[str, ...]
    limit: int

    needs: ClassVar[Need] = "database"
    mutates: ClassVar[bool] = False

    def render(self) -> str:
        return render_sql(
            export_audit.AUDIT, (self.provider, self.days, list(self.license_types), self.limit)
        )

    async def execute(self, clients: Clients) -> StepOutcome:
        provider, days = self.provider, self.days
        violations = await export_audit.violations(
            clients.need_database(), provider, days, self.license_types, self.limit
        )
        users = sorted({v.user_id for v in violations if v.user_id is not None})
        truncated = len(violations) >= self.limit
        if not violations:
            summary = (
                f"no export_pdf event in {days} days carried {provider} data"
                " without an export license"
            )
        else:
            summary = (
                f"{len(violations)}{'+' if truncated else ''} export_pdf events in"
                f" {days} days carried {provider} data without an export license,"
                f" by {len(users)} users: {abbreviated(users)}"
            )
        return Done(
            summary,
            data={
                "provider": provider,
                "violations": [v.model_dump(mode="json") for v in violations],
                "users": users,
                "truncated": truncated,
            },
        )


@step(
    "audit_exports",
    "diagnose",
    "Audit recent PDF exports against user licenses",
    mutates=False,
    timeout=30.0,
)
def audit_exports(ctx: StepContext[Params]) -> AuditExports:
    p = ctx.params
    return AuditExports(provider_of(ctx), p.audit_days, p.export_license_types, p.max_audit_rows)


# ------------------------------------------------------------ 5 revoke PDFs


@dataclass(frozen=True)
class S3Delete:
    """Delete these keys of one bucket, each only while it exists (a retry after a crash
    finds the deleted ones gone). Nothing to undo: S3 keeps no copy."""

    bucket: str
    keys: tuple[str, ...]

    needs: ClassVar[Need] = "aws"
    mutates: ClassVar[bool] = True

    def render(self) -> str:
        return "\n".join(f"aws s3 rm s3://{self.bucket}/{k}" for k in self.keys)

    async def delete(self, aws: Aws) -> tuple[list[str], list[str]]:
        """(deleted, already gone), each in the order of ``keys``."""
        deleted: list[str] = []
        already_gone: list[str] = []
        for key in self.keys:
            if await aws.s3_object_exists(self.bucket, key):
                await aws.s3_delete_object(self.bucket, key)
                deleted.append(key)
            else:
                already_gone.append(key)
        return deleted, already_gone

    async def execute(self, clients: Clients) -> StepOutcome:
        deleted, already_gone = await self.delete(clients.need_aws())
        return Done(
            f"deleted {len(deleted)} objects from s3://{self.bucket}",
            data={"deleted": deleted, "already_gone": already_gone},
            changes={"bucket": self.bucket, "deleted": deleted},
        )


@dataclass(frozen=True)
class RevokePdfs:
    """S3-delete the audited violating exports of users who still hold no export
    license (``violations`` None: the audit has no result yet, as in a plan)."""

    bucket: str
    provider: str
    license_types: tuple[str, ...]
    limit: int
    violations: tuple[Violation, ...] | None

    needs: ClassVar[Need] = "aws"
    mutates: ClassVar[bool] = True

    def render(self) -> str:
        if self.violations is None:
            return (
                f"aws s3 rm s3://{self.bucket}/<user-uuid>/<export-id>.pdf  # for each"
                f" unlicensed export the audit finds, at most {self.limit}"
            )
        keys = tuple(v.key for v in self.violations if v.key)
        if not keys:
            return "(the audit found no revocable export)"
        lines = [S3Delete(self.bucket, keys[: self.limit]).render()]
        if len(keys) > self.limit:
            lines.append(f"# {len(keys) - self.limit} more over the limit, by hand")
        lines.append("# skipped at run time for users who hold an export license by then")
        return "\n".join(lines)

    async def execute(self, clients: Clients) -> StepOutcome:
        violations = audited(self.violations)
        if not violations:
            return Skip("the audit found no violating exports")
        aws = clients.need_aws()  # before the license read: without AWS nothing is revoked
        users = sorted({v.user_id for v in violations if v.user_id})
        licensed = await licensed_now(clients, self.provider, users, self.license_types)
        bad = [v for v in violations if v.key is None]
        now_legit = [v for v in violations if v.key is not None and v.user_id in licensed]
        todo = [v for v in violations if v.key is not None and v.user_id not in licensed]
        chosen, over = todo[: self.limit], todo[self.limit :]
        keys = tuple(v.key for v in chosen if v.key is not None)
        removed, already_gone = await S3Delete(self.bucket, keys).delete(aws)
        deleted: list[dict[str, object]] = []
        for v in chosen:  # two events of one export: the first deleted it
            if v.key in removed:
                removed.remove(v.key)
                deleted.append({"user_id": v.user_id, "key": v.key, "event_id": v.event_id})
        parts = [f"deleted {len(deleted)} PDFs from s3://{self.bucket}"]
        if already_gone:
            parts.append(f"{len(already_gone)} already gone")
        if now_legit:
            parts.append(f"{len(now_legit)} kept: the user holds a license now")
        if bad:
            parts.append(
                f"{len(bad)} NOT revoked, no safe key: "
                + "; ".join(
                    f"event {v.event_id or 'of ' + v.created_at}: {v.key_problem}" for v in bad[:5]
                )
            )
        if over:
            parts.append(
                f"{len(over)} over the limit of {self.limit} left for a human: "
                + ", ".join(str(v.key) for v in over[:5])
            )
        data = {
            "deleted": deleted,
            "already_gone": already_gone,
            "kept_licensed": [v.key for v in now_legit],
            "no_key": [v.event_id for v in bad],
            "over_limit": [v.key for v in over],
        }
        # Deleting cannot be undone; the record is for the audit trail only.
        return Done(
            "; ".join(parts),
            data=data,
            changes={"bucket": self.bucket, "deleted": [d["key"] for d in deleted]},
        )


@step(
    "revoke_pdfs",
    "mitigate",
    "Revoke the violating PDFs (S3 delete)",
    mutates=True,
    approval="approve",
    needs=("aws",),
    idempotent=True,
    timeout=120.0,
    attempts=2,
)
def revoke_pdfs(ctx: StepContext[Params]) -> RevokePdfs:
    p = ctx.params
    audit = ctx.found("audit_exports", Audit)
    found = None if audit is None or audit.violations is None else tuple(audit.violations)
    return RevokePdfs(
        p.exports_bucket, provider_of(ctx), p.export_license_types, p.max_revocations, found
    )
