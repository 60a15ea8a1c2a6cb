"""RB-04's params and the helpers its steps share: the provider and user labels (checked),
the violations this run's export audit found (a typed record), the licenses held now.

The runbook module (rb04_rights_violation) says what corroborates the alert.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from remediator import validation
from remediator.errors import InputRejected
from remediator.runbook_api.context import Clients, StepContext
from remediator.runbook_api.steps import StepFailed
from remediator.runbooks import rights_registry
from remediator.runbooks.export_audit import Violation
from remediator.validation import aws as aws_checks

_ALERT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}", re.ASCII)
_SHOWN_USERS = 10


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


def provider_of(ctx: StepContext[Params]) -> str:
    params = ctx.params
    return validation.provider(ctx.labels.get("provider"), params.providers)


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


def abbreviated(ids: Sequence[str]) -> str:
    shown = ", ".join(ids[:_SHOWN_USERS])
    return shown + (f" and {len(ids) - _SHOWN_USERS} more" if len(ids) > _SHOWN_USERS else "")


class Audit(BaseModel):
    """What audit_exports found, for the steps after it (None: it has no result in this
    run, and the steps that act on it fail rather than guess)."""

    violations: list[Violation] | None = None
    users: list[str] | None = None


def audited(violations: Sequence[Violation] | None) -> Sequence[Violation]:
    if violations is None:
        raise StepFailed("the export audit has no result in this run; audit by hand first")
    return violations


_LICENSED_NOW = """
SELECT DISTINCT user_id
FROM user_licenses
WHERE user_id = ANY($1::uuid[]) AND provider = $2 AND license_type = ANY($3::text[])
"""


async def licensed_now(
    clients: Clients, provider: str, users: Sequence[str], license_types: Sequence[str]
) -> set[str]:
    """Which of ``users`` hold an export license now (one granted since the audit makes
    their export legitimate)."""
    if not users:
        return set()
    db = clients.need_database()
    rows = await db.fetch(
        _LICENSED_NOW, [uuid.UUID(u) for u in users], provider, list(license_types)
    )
    return {str(r["user_id"]) for r in rows}
