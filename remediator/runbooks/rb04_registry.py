"""RB-04 steps 1 to 3 on the rights registry, as actions: inspect the provider's row, the
reported user's licenses, confirm the violation, block exports; on resolve, report the
block.

Each action renders the statements it runs. The block is never lifted here: compliance
lifts it by hand.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import ClassVar

from remediator.errors import NotCorroborated
from remediator.runbook_api.action_steps import step
from remediator.runbook_api.actions import render_sql
from remediator.runbook_api.context import Clients, StepContext
from remediator.runbook_api.steps import Done, Need, Skip, StepFailed, StepOutcome
from remediator.runbooks import export_audit
from remediator.runbooks.rb04_params import Params, provider_of, reported_user

# ------------------------------------------------------------ 1 inspect registry

_INSPECT = """
SELECT provider, export, require_license
FROM provider_rights
WHERE provider = $1
"""


@dataclass(frozen=True)
class InspectRegistry:
    provider: str

    needs: ClassVar[Need] = "database"
    mutates: ClassVar[bool] = False

    def render(self) -> str:
        return render_sql(_INSPECT, (self.provider,))

    async def execute(self, clients: Clients) -> StepOutcome:
        row = await clients.need_database().fetchrow(_INSPECT, self.provider)
        if row is None:
            raise StepFailed(f"provider {self.provider} has no row in provider_rights")
        ok = row["export"] == "restricted" and row["require_license"]
        verdict = "as expected" if ok else "MISCONFIGURED (expected restricted, require_license)"
        return Done(
            f"{self.provider}: export={row['export']}, require_license="
            f"{str(row['require_license']).lower()}: {verdict}",
            data={
                "provider": self.provider,
                "export": row["export"],
                "require_license": bool(row["require_license"]),
                "misconfigured": not ok,
            },
        )


@step(
    "inspect_registry",
    "diagnose",
    "Inspect the provider's rights registry row",
    mutates=False,
    stop_on_failure=True,
    timeout=15.0,
)
def inspect_registry(ctx: StepContext[Params]) -> InspectRegistry:
    return InspectRegistry(provider_of(ctx))


# ------------------------------------------------------ 2 reported user licenses

_USER_LICENSES = """
SELECT user_id, provider, license_type, granted_at
FROM user_licenses
WHERE user_id = $1 AND provider = $2
ORDER BY license_type
"""


@dataclass(frozen=True)
class CheckReportedUser:
    user: str | None  # None: the alert names no user (no user_id label)
    provider: str

    needs: ClassVar[Need] = "database"
    mutates: ClassVar[bool] = False

    def render(self) -> str:
        if self.user is None:
            return "(no user_id label: nothing to check)"
        return render_sql(_USER_LICENSES, (self.user, self.provider))

    async def execute(self, clients: Clients) -> StepOutcome:
        user, provider = self.user, self.provider
        if user is None:
            return Skip("the alert names no reported user (no user_id label)")
        rows = await clients.need_database().fetch(_USER_LICENSES, uuid.UUID(user), provider)
        types = [r["license_type"] for r in rows]
        if not types:
            return Done(
                f"user {user} holds no {provider} license",
                data={"user_id": user, "license_types": []},
            )
        return Done(
            f"user {user} holds {provider} licenses: {', '.join(types)}",
            data={"user_id": user, "license_types": types},
        )


@step(
    "check_reported_user",
    "diagnose",
    "Check the reported user's licenses",
    mutates=False,
    timeout=15.0,
)
def check_reported_user(ctx: StepContext[Params]) -> CheckReportedUser:
    user = reported_user(ctx)  # a bad user_id label is refused before the provider
    return CheckReportedUser(user, provider_of(ctx))


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


@dataclass(frozen=True)
class RestrictExports:
    """Block the provider's exports, recording the old row (never lifted here)."""

    provider: str

    needs: ClassVar[Need] = "database"
    mutates: ClassVar[bool] = True

    def render(self) -> str:
        lock = render_sql(_LOCK_ROW, (self.provider,))
        restrict = render_sql(_RESTRICT, (self.provider,))
        return f"BEGIN;\n{lock}\n{restrict}\nCOMMIT;\n-- {KEPT}"

    async def execute(self, clients: Clients) -> StepOutcome:
        provider = self.provider
        async with clients.need_database().transaction() as tx:
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


@step(
    "restrict_exports",
    "mitigate",
    "Block exports of the provider (kept after resolve: compliance lifts it)",
    mutates=True,
    idempotent=True,
    timeout=15.0,
)
def restrict_exports(ctx: StepContext[Params]) -> RestrictExports:
    return RestrictExports(provider_of(ctx))


# --------------------------------------------------- confirm the violation


@dataclass(frozen=True)
class ConfirmViolation:
    """Corroborates the alert: the violation is in analytics_events and user_licenses.
    ``licensed``: the provider's data needs a license to export (else no violation)."""

    provider: str
    licensed: bool
    days: int
    license_types: tuple[str, ...]

    needs: ClassVar[Need] = "database"
    mutates: ClassVar[bool] = False

    def render(self) -> str:
        head = (
            f"-- {self.provider} is in licensed_providers\n"
            if self.licensed
            else f"-- {self.provider} is NOT in licensed_providers: not corroborated, nothing"
            " read\n"
        )
        binds = (self.provider, self.days, list(self.license_types))
        return head + render_sql(export_audit.CONFIRM, binds)

    async def execute(self, clients: Clients) -> StepOutcome:
        provider, days = self.provider, self.days
        if not self.licensed:
            raise NotCorroborated(
                f"{provider} is not in licensed_providers: its data needs no license to"
                " export, so no export violates its rights; exports left open"
            )
        db = clients.need_database()
        found = await export_audit.confirm(db, provider, days, self.license_types)
        if found.n == 0 or found.last is None:
            raise NotCorroborated(
                f"no export_pdf event in the last {days} days carried {provider}"
                " data without an export license; exports left open"
            )
        unknown = found.unknown
        note = f" ({unknown} of them do not say which providers they carried)" if unknown else ""
        return Done(
            f"{found.n} export_pdf events in the last {days} days carried {provider} data"
            f" without an export license{note}; the latest at {found.last.isoformat()}",
            data={"violations": found.n, "providers_unknown": unknown},
        )


@step(
    "confirm_violation",
    "diagnose",
    "Confirm the violation in the export events",
    mutates=False,
    # Exports are blocked only on a violation that was seen.
    stop_on_failure=True,
    timeout=30.0,
)
def confirm_violation(ctx: StepContext[Params]) -> ConfirmViolation:
    p = ctx.params
    provider = provider_of(ctx)
    licensed = p.licensed_providers if p.licensed_providers is not None else p.providers
    is_licensed = provider.lower() in {x.lower() for x in licensed}
    return ConfirmViolation(provider, is_licensed, p.audit_days, p.export_license_types)


# ------------------------------------------------------- on resolve: report

_REPORT = "SELECT export, require_license FROM provider_rights WHERE provider = $1"


@dataclass(frozen=True)
class ReportBlock:
    provider: str

    needs: ClassVar[Need] = "database"
    mutates: ClassVar[bool] = False

    def render(self) -> str:
        return render_sql(_REPORT, (self.provider,))

    async def execute(self, clients: Clients) -> StepOutcome:
        row = await clients.need_database().fetchrow(_REPORT, self.provider)
        if row is None:
            raise StepFailed(f"provider {self.provider} has no row in provider_rights")
        return Done(
            f"{self.provider} stays export={row['export']}, require_license="
            f"{str(row['require_license']).lower()}: nothing is lifted automatically;"
            " compliance lifts the block when the audit is closed",
            data={"export": row["export"], "require_license": bool(row["require_license"])},
        )


@step(
    "report_block",
    "verify",
    "Exports stay blocked until compliance lifts the block",
    mutates=False,
    timeout=15.0,
)
def report_block(ctx: StepContext[Params]) -> ReportBlock:
    return ReportBlock(provider_of(ctx))
