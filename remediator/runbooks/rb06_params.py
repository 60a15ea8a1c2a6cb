"""RB-06's params and the helpers its steps share: the validated source network, the
addresses it holds, the accounts that logged in from it.

The runbook module (rb06_security_incident) says what guards blocking.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from remediator import validation
from remediator.errors import InputRejected
from remediator.runbook_api.context import StepContext
from remediator.runbook_api.steps import StepFailed
from remediator.validation import aws as aws_checks

_SHOWN = 10
MAX_LOGIN_ADDRESSES = 256  # a /24 at most: the login lookup lists addresses


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    waf_ip_set_name: str = "dawsos-blocked-ips"
    # The IP set's id (aws wafv2 list-ip-sets); without it blocking fails visibly.
    waf_ip_set_id: str | None = None
    waf_scope: Literal["REGIONAL", "CLOUDFRONT"] = "REGIONAL"
    # Step 2: the web ACL whose sampled requests are read (aws wafv2 list-web-acls).
    waf_web_acl_name: str | None = None
    waf_web_acl_id: str | None = None
    waf_sample_minutes: int = Field(60, ge=1, le=180)  # AWS keeps 3 hours of samples
    # Never blocked: offices, partners, health checkers, the load balancers.
    allow_list: tuple[str, ...] = ()
    max_prefix_v4: int = Field(24, ge=8, le=32)
    max_prefix_v6: int = Field(64, ge=16, le=128)
    max_ip_set_size: int = Field(1000, ge=1, le=10_000)
    # Corroboration: the address's traces in audit_log ('403_idor') and logins.
    evidence_hours: int = Field(24, ge=1, le=24 * 7)
    min_evidence: int = Field(5, ge=1, le=10_000)
    login_event_types: tuple[str, ...] = ("login", "login_failed")
    idor_hours: int = Field(24, ge=1, le=24 * 30)
    idor_rows: int = Field(100, ge=1, le=1000)
    login_days: int = Field(7, ge=1, le=90)
    jwt_secret_name: str = "jwt-secret"
    jwt_secret_key: str = "JWT_SECRET"
    api_deployment: str = "api"
    max_password_resets: int = Field(50, ge=1, le=1000)
    max_notifications: int = Field(50, ge=1, le=1000)
    notification_alert_id: str = "sys-security-incident"

    @field_validator("waf_ip_set_name")
    @classmethod
    def _waf_name(cls, v: str) -> str:
        return _checked(aws_checks.check_waf_name, "waf_ip_set_name", v)

    @field_validator("waf_ip_set_id")
    @classmethod
    def _waf_id(cls, v: str | None) -> str | None:
        return None if v is None else _checked(aws_checks.check_waf_id, "waf_ip_set_id", v)

    @field_validator("waf_web_acl_name")
    @classmethod
    def _acl_name(cls, v: str | None) -> str | None:
        return None if v is None else _checked(aws_checks.check_waf_name, "waf_web_acl_name", v)

    @field_validator("waf_web_acl_id")
    @classmethod
    def _acl_id(cls, v: str | None) -> str | None:
        return None if v is None else _checked(aws_checks.check_waf_id, "waf_web_acl_id", v)

    @field_validator("allow_list")
    @classmethod
    def _allow(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for entry in v:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"{entry!r} is not a CIDR") from None
        return v

    @field_validator("jwt_secret_name", "api_deployment")
    @classmethod
    def _k8s(cls, v: str) -> str:
        try:
            return validation.k8s_name(v)
        except InputRejected as exc:
            raise ValueError(exc.reason) from None

    @field_validator("jwt_secret_key")
    @classmethod
    def _secret_key(cls, v: str) -> str:
        if not 0 < len(v) <= 253 or any(
            not (c.isascii() and (c.isalnum() or c in "-._")) for c in v
        ):
            raise ValueError("a Secret key is 1-253 of A-Z a-z 0-9 - . _")
        return v

    @field_validator("notification_alert_id")
    @classmethod
    def _alert_id(cls, v: str) -> str:
        validation.bounded_text(v, 64, field="notification_alert_id")
        return v

    @field_validator("login_event_types")
    @classmethod
    def _event_types(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if len(v) > 20 or any(not 0 < len(t) <= 64 for t in v):
            raise ValueError("at most 20 event types of 1..64 characters")
        return v


def rule_warnings(params: Params) -> list[str]:
    """What `check-rules` says about a rule's params (see Runbook.warnings)."""
    if params.allow_list:
        return []
    return [
        "allow_list is empty: in live mode RB-06 refuses to block any address until it"
        " lists your offices, partners, load balancers and health checkers (CIDRs)"
    ]


def _checked(check: Callable[[str, str], object], field: str, value: str) -> str:
    try:
        return str(check(field, value))
    except InputRejected as exc:
        raise ValueError(exc.reason) from None


# ------------------------------------------------------------------ helpers


def source_network(ctx: StepContext[Params], *, for_blocking: bool) -> validation.IPNetwork | None:
    """The validated ``source_ip`` label, or None when the alert carries none.

    Blocking honours the allow-list; looking up logins does not (an allow-listed
    office address may still be worth investigating), but every other rule holds.
    """
    value = ctx.labels.get("source_ip")
    if value is None:
        return None
    p = ctx.params
    return validation.public_ip(
        value,
        allow_list=p.allow_list if for_blocking else (),
        max_prefix_v4=p.max_prefix_v4,
        max_prefix_v6=p.max_prefix_v6,
    )


def abbreviated(ids: Sequence[str]) -> str:
    shown = ", ".join(ids[:_SHOWN])
    return shown + (f" and {len(ids) - _SHOWN} more" if len(ids) > _SHOWN else "")


def addresses_of(net: validation.IPNetwork) -> list[str] | None:
    if net.num_addresses == 1:
        return [str(net.network_address)]
    if net.num_addresses > MAX_LOGIN_ADDRESSES:
        return None
    return [str(a) for a in net]


class Logins(BaseModel):
    """What logins_from_ip found (``user_ids`` None: it has no result in this run)."""

    user_ids: list[str] | None = None


def login_users(users: Sequence[str] | None) -> list[str]:
    """The accounts the login lookup found; without its result (None), the steps
    acting on them fail rather than guess."""
    if users is None:
        raise StepFailed(
            "the login lookup has no result in this run; find the accounts by hand first"
        )
    return [str(u) for u in users]
