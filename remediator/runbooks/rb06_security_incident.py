"""RB-06 Security incident, as declared steps (P0: paged before anything else).

Runbook order, automated:

    - confirm the source address                      diagnose; corroborates the alert's
                                                      source_ip (below)
    1 rotate the JWT secret, restart the API          approve (every user logs in again)
    4 block the source IP in the WAF IP set           mitigate, auto (moved ahead of the
                                                      diagnosis: containment must not wait
                                                      on a slow database)
    2 the WAF's sampled requests from the IP          diagnose
    3 '403_idor' audit rows of the last 24 h          diagnose
    3 portfolio tables without RLS policies           diagnose
    5 recent logins from the source IP                diagnose
    5 force password resets for those users           approve
    6 notify those users                              approve
    on resolve: blocks are kept and listed for review; nothing is undone.

Step 2 reads the WAF's sampled requests from the source address (``waf_samples``)
when the rule names the web ACL (``waf_web_acl_name``, ``waf_web_acl_id``).

Guards on blocking: the ``source_ip`` label must pass ``validation.public_ip``: never a
private, loopback, link-local, multicast or reserved range, never anything overlapping
``allow_list``, never broader than ``/max_prefix_v4`` (``/max_prefix_v6``). A run
blocks at most that one network, so the rule's ``max_targets`` (distinct networks per
window, across replicas) and ``max_runs_per_hour`` bound the blocks per hour; the
rule's cooldown keeps one address from being re-handled; and ``max_ip_set_size``
refuses to grow an IP set nobody has reviewed.

A payload is a claim. Before anything else the run looks for the address in the
DawsOS database, in the tables the runbook's own SQL reads: ``403_idor`` rows of
``audit_log`` and login rows of ``analytics_events`` (``meta_json->>'ip_address'``) of
the last ``evidence_hours``. Fewer than ``min_evidence`` of them and the run is "not
corroborated": nothing is blocked or offered for approval. An address that leaves no
trace there (a scraper that never logs in) is left to a human. In live mode, blocking
is also refused while ``allow_list`` is empty (that step fails, and the page says to
block by hand): without it, nothing stops a block of our own offices or partners.

This module must never log, record or page the new JWT secret (it exists only in the
step's local variable and the patch request), never block an address the label did not
name, and never unblock anything.
"""

from __future__ import annotations

import ipaddress
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from remediator import validation
from remediator.errors import InputRejected, NotCorroborated, TargetError
from remediator.runbook_api.context import StepContext
from remediator.runbook_api.steps import Done, Runbook, Skip, Step, StepFailed
from remediator.runbooks import jwt_rotation, plan, waf_samples
from remediator.validation import aws as aws_checks

_SHOWN = 10
_MAX_LOGIN_ADDRESSES = 256  # a /24 at most: the login lookup lists addresses
RESET_MESSAGE = "Security incident detected. Please reset your password."


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


def _checked(check: Any, field: str, value: str) -> str:
    try:
        return str(check(field, value))
    except InputRejected as exc:
        raise ValueError(exc.reason) from None


# ------------------------------------------------------------------ helpers


def source_network(ctx: StepContext, *, for_blocking: bool) -> validation.IPNetwork | None:
    """The validated ``source_ip`` label, or None when the alert carries none.

    Blocking honours the allow-list; looking up logins does not (an allow-listed
    office address may still be worth investigating), but every other rule holds.
    """
    value = ctx.labels.get("source_ip")
    if value is None:
        return None
    p: Params = ctx.params
    return validation.public_ip(
        value,
        allow_list=p.allow_list if for_blocking else (),
        max_prefix_v4=p.max_prefix_v4,
        max_prefix_v6=p.max_prefix_v6,
    )


def _target(labels: Mapping[str, str], params: Any) -> str:
    value = labels.get("source_ip")
    if value is None:
        return labels.get("alertname", "")
    return str(
        validation.public_ip(
            value,
            allow_list=params.allow_list,
            max_prefix_v4=params.max_prefix_v4,
            max_prefix_v6=params.max_prefix_v6,
        )
    )


def _users(ids: Sequence[str]) -> str:
    shown = ", ".join(ids[:_SHOWN])
    return shown + (f" and {len(ids) - _SHOWN} more" if len(ids) > _SHOWN else "")


def _addresses(net: validation.IPNetwork) -> list[str] | None:
    if net.num_addresses == 1:
        return [str(net.network_address)]
    if net.num_addresses > _MAX_LOGIN_ADDRESSES:
        return None
    return [str(a) for a in net]


def _login_users(ctx: StepContext) -> list[str]:
    logins = ctx.results.get("logins_from_ip")
    if logins is None or "user_ids" not in logins:
        raise StepFailed(
            "the login lookup has no result in this run; find the accounts by hand first"
        )
    return [str(u) for u in logins["user_ids"]]


# --------------------------------------------------- confirm the source address

_EVIDENCE_IDOR = """
SELECT count(*) AS n FROM audit_log
WHERE action = '403_idor'
  AND meta_json->>'ip_address' = ANY($1::text[])
  AND ts > now() - make_interval(hours => $2)
"""
_EVIDENCE_LOGINS = """
SELECT count(*) AS n FROM analytics_events
WHERE event_type = ANY($3::text[])
  AND meta_json->>'ip_address' = ANY($1::text[])
  AND created_at > now() - make_interval(hours => $2)
"""


async def confirm_source(*, ctx: StepContext, **_: Any) -> Done | Skip:
    """Corroborates the alert's source_ip before anything is blocked or planned."""
    p: Params = ctx.params
    try:
        net = source_network(ctx, for_blocking=True)
    except InputRejected as exc:
        # The block step refuses the label itself, and the page says why.
        return Skip(f"nothing to confirm: the block step refuses this address ({exc.reason})")
    if net is None:
        return Skip("the alert carries no source_ip label: no address to confirm or block")
    addresses = _addresses(net)
    if addresses is None:
        raise NotCorroborated(
            f"{net} holds more than {_MAX_LOGIN_ADDRESSES} addresses, too many to look"
            " up: not blocked; look at it and block by hand"
        )
    db = ctx.clients.need("database")
    idor = int(await db.fetchval(_EVIDENCE_IDOR, addresses, p.evidence_hours))
    seen = f"{idor} '403_idor' audit rows"
    logins = 0
    if idor < p.min_evidence:  # enough already: spare the second read
        logins = int(
            await db.fetchval(
                _EVIDENCE_LOGINS, addresses, p.evidence_hours, list(p.login_event_types)
            )
        )
        seen += f" and {logins} login events"
    if idor + logins < p.min_evidence:
        raise NotCorroborated(
            f"{net} left {seen} in the last {p.evidence_hours} h, fewer than"
            f" min_evidence={p.min_evidence}: not blocked"
        )
    summary = f"{net} left {seen} in the last {p.evidence_hours} h"
    if not p.allow_list:
        if ctx.mode == "live":
            # A configuration gap, not a forged claim: a failure a human must see (not
            # a "not corroborated", which would tell them the alert was false).
            raise StepFailed(
                f"{net} is confirmed ({seen}), but allow_list is empty: RB-06 blocks"
                " nothing in live mode until it lists our offices, partners and health"
                f" checkers; block {net} by hand after checking it is not one of them"
            )
        summary += "; allow_list is empty: live mode would refuse to block"
    return Done(
        summary,
        data={"corroborated": True, "network": str(net), "idor": idor, "logins": logins},
    )


def render_confirm_source(*, ctx: StepContext, **_: Any) -> str:
    p: Params = ctx.params
    try:
        net = source_network(ctx, for_blocking=True)
    except InputRejected:
        return "(the source_ip label is refused: nothing to look up)"
    if net is None:
        return "(no source_ip label: nothing to look up)"
    addresses: object = _addresses(net) or f"<every address of {net}>"
    return (
        plan.sql(_EVIDENCE_IDOR, addresses, p.evidence_hours)
        + "\n"
        + plan.sql(_EVIDENCE_LOGINS, addresses, p.evidence_hours, list(p.login_event_types))
        + f"\n-- corroborated: at least {p.min_evidence} rows in all"
    )


def _confirmed(ctx: StepContext, net: validation.IPNetwork) -> bool:
    found = ctx.results.get("confirm_source") or {}
    return bool(found.get("corroborated")) and found.get("network") == str(net)


# ---------------------------------------------------------- 4 block source IP


def _ip_set(p: Params) -> str:
    if p.waf_ip_set_id is None:
        raise StepFailed("params.waf_ip_set_id is not set in the rule: block by hand")
    return p.waf_ip_set_id


async def block_source_ip(*, ctx: StepContext, **_: Any) -> Done | Skip:
    p: Params = ctx.params
    net = source_network(ctx, for_blocking=True)
    if net is None:
        return Skip("the alert carries no source_ip label: nothing to block")
    if not _confirmed(ctx, net):
        return Skip(
            f"{net} was not confirmed (see the confirmation step): not blocked;"
            " block by hand if it must be"
        )
    set_id = _ip_set(p)
    aws = ctx.clients.need("aws")
    current = await aws.waf_get_ip_set(p.waf_ip_set_name, set_id, p.waf_scope)
    cidr = str(net)
    if cidr in current.addresses:
        return Skip(f"{cidr} is already blocked in {p.waf_ip_set_name}")
    if len(current.addresses) >= p.max_ip_set_size:
        raise StepFailed(
            f"{p.waf_ip_set_name} already holds {len(current.addresses)}"
            f" addresses (max_ip_set_size={p.max_ip_set_size}): review the"
            f" blocks, then block {cidr} by hand"
        )
    added = await aws.waf_add_addresses(p.waf_ip_set_name, set_id, [cidr], p.waf_scope)
    if not added:
        return Skip(f"{cidr} was blocked meanwhile by someone else")
    record = {
        "ip_set": p.waf_ip_set_name,
        "ip_set_id": set_id,
        "scope": p.waf_scope,
        "added": added,
    }
    # Kept on resolve for review (README); the record is what a human would unblock.
    return Done(
        f"blocked {', '.join(added)} in WAF IP set {p.waf_ip_set_name}; kept after"
        " the alert resolves, for review",
        data=record,
        changes=record,
    )


def render_block_source_ip(*, ctx: StepContext, **_: Any) -> str:
    p: Params = ctx.params
    net = source_network(ctx, for_blocking=True)
    if net is None:
        return "(no source_ip label: nothing to block)"
    set_id = p.waf_ip_set_id or "<params.waf_ip_set_id not set>"
    return (
        f"aws wafv2 update-ip-set --name {p.waf_ip_set_name} --id {set_id} --scope"
        f" {p.waf_scope} --addresses <current addresses> {net} --lock-token <token>"
    )


# -------------------------------------------------------------- 3 IDOR audit

_IDOR = """
SELECT user_id, portfolio_id, action, meta_json, ts
FROM audit_log
WHERE action = '403_idor'
  AND ts > now() - make_interval(hours => $1)
ORDER BY ts DESC
LIMIT $2
"""


async def idor_audit(*, ctx: StepContext, **_: Any) -> Done:
    p: Params = ctx.params
    db = ctx.clients.need("database")
    rows = await db.fetch(_IDOR, p.idor_hours, p.idor_rows)
    users = sorted({str(r["user_id"]) for r in rows if r["user_id"] is not None})
    ips = sorted(
        {
            str(r["meta_json"].get("ip_address"))[:64]
            for r in rows
            if isinstance(r["meta_json"], Mapping) and r["meta_json"].get("ip_address")
        }
    )
    n = f"{len(rows)}{'+' if len(rows) >= p.idor_rows else ''}"
    if not rows:
        return Done(
            f"no '403_idor' audit rows in the last {p.idor_hours} h",
            data={"count": 0, "users": [], "ips": []},
        )
    return Done(
        f"{n} '403_idor' audit rows in the last {p.idor_hours} h from"
        f" {len(users)} users ({_users(users)}), addresses {_users(ips)}: RLS may be"
        " missing or wrong if many",
        data={"count": len(rows), "users": users, "ips": ips},
    )


def render_idor_audit(*, ctx: StepContext, **_: Any) -> str:
    p: Params = ctx.params
    return plan.sql(_IDOR, p.idor_hours, p.idor_rows)


# --------------------------------------------------------------- 3 RLS gaps

# The runbook's query, plus tables whose policies exist but whose RLS is switched off.
_RLS = """
SELECT t.tablename,
       c.relrowsecurity AS rls_enabled,
       EXISTS (SELECT 1 FROM pg_policies AS p
               WHERE p.schemaname = 'public' AND p.tablename = t.tablename) AS has_policy
FROM pg_tables AS t
JOIN pg_namespace AS n ON n.nspname = t.schemaname
JOIN pg_class AS c ON c.relnamespace = n.oid AND c.relname = t.tablename
WHERE t.schemaname = 'public'
  AND t.tablename LIKE '%portfolio%'
ORDER BY t.tablename
"""


async def rls_gaps(*, ctx: StepContext, **_: Any) -> Done:
    db = ctx.clients.need("database")
    rows = await db.fetch(_RLS)
    no_policy = [r["tablename"] for r in rows if not r["has_policy"]]
    rls_off = [r["tablename"] for r in rows if r["has_policy"] and not r["rls_enabled"]]
    if not no_policy and not rls_off:
        return Done(
            f"all {len(rows)} portfolio-scoped tables have RLS policies",
            data={"without_policy": [], "rls_disabled": []},
        )
    parts = []
    if no_policy:
        parts.append(f"portfolio-scoped tables WITHOUT an RLS policy: {', '.join(no_policy)}")
    if rls_off:
        parts.append(f"policies present but RLS disabled: {', '.join(rls_off)}")
    return Done("; ".join(parts), data={"without_policy": no_policy, "rls_disabled": rls_off})


def render_rls_gaps(*, ctx: StepContext, **_: Any) -> str:
    return plan.sql(_RLS)


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
    p: Params = ctx.params
    net = source_network(ctx, for_blocking=False)
    # The empty list tells the approve steps there is nobody to act on, by design.
    if net is None:
        return Skip(
            "the alert carries no source_ip label: no address to look up", data={"user_ids": []}
        )
    addresses = _addresses(net)
    if addresses is None:
        return Skip(
            f"{net} holds more than {_MAX_LOGIN_ADDRESSES} addresses: look up logins by hand",
            data={"user_ids": [], "too_broad": True},
        )
    db = ctx.clients.need("database")
    rows = await db.fetch(_LOGINS, addresses, p.login_days)
    users = [str(r["user_id"]) for r in rows]
    if not users:
        return Done(
            f"no logins from {net} in the last {p.login_days} days",
            data={"user_ids": [], "network": str(net)},
        )
    return Done(
        f"{len(users)} accounts logged in from {net} in the last {p.login_days} days:"
        f" {_users(users)}",
        data={"user_ids": users, "network": str(net)},
    )


def render_logins_from_ip(*, ctx: StepContext, **_: Any) -> str:
    p: Params = ctx.params
    net = source_network(ctx, for_blocking=False)
    if net is None:
        return "(no source_ip label: nothing to look up)"
    return plan.sql(_LOGINS, _addresses(net) or [f"<every address of {net}>"], p.login_days)


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
    p: Params = ctx.params
    users = _login_users(ctx)
    if not users:
        return Skip("no account to reset: no login from the alert's address was found")
    chosen, over = users[: p.max_password_resets], users[p.max_password_resets :]
    db = ctx.clients.need("database")
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
            f" human: {_users(over)}"
        )
    if not changed:
        return Skip("; ".join(["no reset forced", *notes]))
    # Kept on resolve: a compromised account stays reset. Previous values recorded.
    return Done(
        "; ".join(
            [f"forced a password reset for {len(changed)} accounts: {_users(changed)}", *notes]
        ),
        data={"reset": changed, "already_pending": pending},
        changes={"users": [{"id": u, "password_reset_required": False} for u in changed]},
    )


def render_force_password_resets(*, ctx: StepContext, **_: Any) -> str:
    p: Params = ctx.params
    try:
        users: list[str] | str = _login_users(ctx)[: p.max_password_resets]
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
    p: Params = ctx.params
    users = _login_users(ctx)
    if not users:
        return Skip("nobody to notify: no login from the alert's address was found")
    chosen, over = users[: p.max_notifications], users[p.max_notifications :]
    db = ctx.clients.need("database")
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
        "; ".join([f"notified {len(notified)} accounts: {_users(notified)}", *notes]),
        data={"notified": notified},
        changes={"notifications": sorted(int(r["id"]) for r in rows)},
    )


def render_notify_users(*, ctx: StepContext, **_: Any) -> str:
    p: Params = ctx.params
    try:
        users: list[str] | str = _login_users(ctx)[: p.max_notifications]
    except StepFailed:
        users = "<the accounts that logged in from the address>"
    return plan.sql(_NOTIFY, users, p.notification_alert_id, {"message": RESET_MESSAGE})


# ------------------------------------------------- on resolve: list the blocks


async def list_blocks(*, ctx: StepContext, **_: Any) -> Done | Skip:
    block = ctx.results.get("block_source_ip") or {}
    added = [str(a) for a in block.get("added", [])]
    if not added:
        return Skip("this run blocked nothing")
    name, set_id, scope = block["ip_set"], block["ip_set_id"], block["scope"]
    try:
        current = await ctx.clients.need("aws").waf_get_ip_set(name, set_id, scope)
    except TargetError as exc:
        return Done(
            f"kept for review (IP set unreadable: {str(exc)[:120]}): {', '.join(added)} in {name}",
            data={"kept": added},
        )
    kept = [a for a in added if a in current.addresses]
    gone = [a for a in added if a not in current.addresses]
    parts = []
    if kept:
        parts.append(
            f"kept blocked for review: {', '.join(kept)} in {name}; unblock after"
            f" review with aws wafv2 update-ip-set --name {name} --id {set_id}"
            f" --scope {scope} (without them)"
        )
    if gone:
        parts.append(f"already unblocked by someone: {', '.join(gone)}")
    return Done("; ".join(parts), data={"kept": kept, "unblocked": gone})


def render_list_blocks(*, ctx: StepContext, **_: Any) -> str:
    p: Params = ctx.params
    set_id = p.waf_ip_set_id or "<params.waf_ip_set_id>"
    return (
        f"aws wafv2 get-ip-set --name {p.waf_ip_set_name} --id {set_id} --scope"
        f" {p.waf_scope}  # list what this run blocked; nothing is removed"
    )


STEPS: Sequence[Step] = (
    Step(
        "confirm_source",
        "diagnose",
        "Confirm the source address in the audit log and logins",
        confirm_source,
        render_confirm_source,
        timeout=15.0,
    ),
    Step(
        "rotate_jwt_secret",
        "mitigate",
        "Rotate the JWT secret and restart the API",
        jwt_rotation.rotate_jwt_secret,
        jwt_rotation.render_rotate_jwt_secret,
        mutates=True,
        approval="approve",
        needs=("kubernetes",),
        timeout=60.0,
    ),
    Step(
        "block_source_ip",
        "mitigate",
        "Block the source IP in the WAF IP set",
        block_source_ip,
        render_block_source_ip,
        mutates=True,
        idempotent=True,
        timeout=30.0,
    ),
    Step(
        "waf_sampled_requests",
        "diagnose",
        "Read the WAF's sampled requests from the source address",
        waf_samples.sampled_requests,
        waf_samples.render_sampled_requests,
        timeout=30.0,
        attempts=1,
    ),
    Step(
        "idor_audit",
        "diagnose",
        "403_idor audit rows (RLS bypass attempts)",
        idor_audit,
        render_idor_audit,
        timeout=15.0,
    ),
    Step(
        "rls_gaps",
        "diagnose",
        "Portfolio tables without RLS policies",
        rls_gaps,
        render_rls_gaps,
        timeout=15.0,
    ),
    Step(
        "logins_from_ip",
        "diagnose",
        "Recent logins from the source IP",
        logins_from_ip,
        render_logins_from_ip,
        timeout=15.0,
    ),
    Step(
        "force_password_resets",
        "mitigate",
        "Force password resets for those accounts",
        force_password_resets,
        render_force_password_resets,
        mutates=True,
        approval="approve",
        needs=("database",),
        idempotent=True,
        timeout=15.0,
    ),
    Step(
        "notify_users",
        "notify",
        "Notify the affected users",
        notify_users,
        render_notify_users,
        mutates=True,
        approval="approve",
        needs=("database",),
        idempotent=True,
        timeout=15.0,
    ),
)

RESOLVE_STEPS: Sequence[Step] = (
    Step(
        "list_blocks",
        "verify",
        "Blocks are kept: list them for review",
        list_blocks,
        render_list_blocks,
        timeout=20.0,
    ),
)

RUNBOOK = Runbook(
    id="RB-06",
    title="Security incident",
    severity="P0",
    steps=tuple(STEPS),
    resolve_steps=tuple(RESOLVE_STEPS),
    params=Params,
    target=_target,
    page_first=True,
    anchor="rb-06-security-incident",
    warnings=rule_warnings,
)
