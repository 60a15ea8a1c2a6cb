"""RB-06 containment: confirm the source address, block it in the WAF IP set, and on
resolve list the blocks for review (nothing is ever unblocked).

A block needs this run's confirmation of exactly that network (``confirm_source``).
"""

from __future__ import annotations

from typing import Any

from remediator import validation
from remediator.errors import InputRejected, NotCorroborated, TargetError
from remediator.runbook_api.context import StepContext
from remediator.runbook_api.steps import Done, Skip, StepFailed
from remediator.runbooks import plan
from remediator.runbooks.rb06_params import (
    MAX_LOGIN_ADDRESSES,
    Params,
    addresses_of,
    source_network,
)

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
    p = ctx.params_as(Params)
    try:
        net = source_network(ctx, for_blocking=True)
    except InputRejected as exc:
        # The block step refuses the label itself, and the page says why.
        return Skip(f"nothing to confirm: the block step refuses this address ({exc.reason})")
    if net is None:
        return Skip("the alert carries no source_ip label: no address to confirm or block")
    addresses = addresses_of(net)
    if addresses is None:
        raise NotCorroborated(
            f"{net} holds more than {MAX_LOGIN_ADDRESSES} addresses, too many to look"
            " up: not blocked; look at it and block by hand"
        )
    db = ctx.clients.need_database()
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
    p = ctx.params_as(Params)
    try:
        net = source_network(ctx, for_blocking=True)
    except InputRejected:
        return "(the source_ip label is refused: nothing to look up)"
    if net is None:
        return "(no source_ip label: nothing to look up)"
    addresses: object = addresses_of(net) or f"<every address of {net}>"
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
    p = ctx.params_as(Params)
    net = source_network(ctx, for_blocking=True)
    if net is None:
        return Skip("the alert carries no source_ip label: nothing to block")
    if not _confirmed(ctx, net):
        return Skip(
            f"{net} was not confirmed (see the confirmation step): not blocked;"
            " block by hand if it must be"
        )
    set_id = _ip_set(p)
    aws = ctx.clients.need_aws()
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
    p = ctx.params_as(Params)
    net = source_network(ctx, for_blocking=True)
    if net is None:
        return "(no source_ip label: nothing to block)"
    set_id = p.waf_ip_set_id or "<params.waf_ip_set_id not set>"
    return (
        f"aws wafv2 update-ip-set --name {p.waf_ip_set_name} --id {set_id} --scope"
        f" {p.waf_scope} --addresses <current addresses> {net} --lock-token <token>"
    )


# ------------------------------------------------- on resolve: list the blocks


async def list_blocks(*, ctx: StepContext, **_: Any) -> Done | Skip:
    block = ctx.results.get("block_source_ip") or {}
    added = [str(a) for a in block.get("added", [])]
    if not added:
        return Skip("this run blocked nothing")
    name, set_id, scope = block["ip_set"], block["ip_set_id"], block["scope"]
    try:
        current = await ctx.clients.need_aws().waf_get_ip_set(name, set_id, scope)
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
    p = ctx.params_as(Params)
    set_id = p.waf_ip_set_id or "<params.waf_ip_set_id>"
    return (
        f"aws wafv2 get-ip-set --name {p.waf_ip_set_name} --id {set_id} --scope"
        f" {p.waf_scope}  # list what this run blocked; nothing is removed"
    )
