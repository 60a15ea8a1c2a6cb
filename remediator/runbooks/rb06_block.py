"""RB-06 containment, as actions: confirm the source address, block it in the WAF IP set
(WafBlock), and on resolve list the blocks for review. Nothing is ever unblocked here:
a block's undo (WafUnblock, built from its record) is the call the review page hands a
human, never one the daemon runs.

A block needs this run's confirmation of exactly that network (``confirm_source``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from pydantic import BaseModel

from remediator import validation
from remediator.errors import InputRejected, NotCorroborated, TargetError
from remediator.runbook_api.action_steps import step
from remediator.runbook_api.actions import Hint, render_sql
from remediator.runbook_api.context import Clients, StepContext
from remediator.runbook_api.steps import Done, Need, Skip, StepFailed, StepOutcome
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


@dataclass(frozen=True)
class ConfirmSource:
    """Corroborates the alert's source_ip before anything is blocked or planned.
    ``net`` None: no label, or ``refused`` says why the block step refuses it."""

    net: validation.IPNetwork | None
    refused: str | None
    hours: int
    min_evidence: int
    login_event_types: tuple[str, ...]
    allow_list_empty: bool
    live: bool

    needs: ClassVar[Need] = "database"
    mutates: ClassVar[bool] = False

    def render(self) -> str:
        if self.refused is not None:
            return "(the source_ip label is refused: nothing to look up)"
        if self.net is None:
            return "(no source_ip label: nothing to look up)"
        addresses: object = addresses_of(self.net) or f"<every address of {self.net}>"
        types = list(self.login_event_types)
        return (
            render_sql(_EVIDENCE_IDOR, (addresses, self.hours))
            + "\n"
            + render_sql(_EVIDENCE_LOGINS, (addresses, self.hours, types))
            + f"\n-- corroborated: at least {self.min_evidence} rows in all"
        )

    async def execute(self, clients: Clients) -> StepOutcome:
        net, hours = self.net, self.hours
        if self.refused is not None:
            # The block step refuses the label itself, and the page says why.
            return Skip(f"nothing to confirm: the block step refuses this address ({self.refused})")
        if net is None:
            return Skip("the alert carries no source_ip label: no address to confirm or block")
        addresses = addresses_of(net)
        if addresses is None:
            raise NotCorroborated(
                f"{net} holds more than {MAX_LOGIN_ADDRESSES} addresses, too many to look"
                " up: not blocked; look at it and block by hand"
            )
        db = clients.need_database()
        idor = int(await db.fetchval(_EVIDENCE_IDOR, addresses, hours))
        seen = f"{idor} '403_idor' audit rows"
        logins = 0
        if idor < self.min_evidence:  # enough already: spare the second read
            types = list(self.login_event_types)
            logins = int(await db.fetchval(_EVIDENCE_LOGINS, addresses, hours, types))
            seen += f" and {logins} login events"
        if idor + logins < self.min_evidence:
            raise NotCorroborated(
                f"{net} left {seen} in the last {hours} h, fewer than"
                f" min_evidence={self.min_evidence}: not blocked"
            )
        summary = f"{net} left {seen} in the last {hours} h"
        if self.allow_list_empty:
            if self.live:
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


@step(
    "confirm_source",
    "diagnose",
    "Confirm the source address in the audit log and logins",
    mutates=False,
    timeout=15.0,
)
def confirm_source(ctx: StepContext[Params]) -> ConfirmSource:
    p = ctx.params
    try:
        net, refused = source_network(ctx, for_blocking=True), None
    except InputRejected as exc:
        net, refused = None, exc.reason
    return ConfirmSource(
        net,
        refused,
        p.evidence_hours,
        p.min_evidence,
        p.login_event_types,
        not p.allow_list,
        ctx.mode == "live",
    )


class Confirmed(BaseModel):
    """What confirm_source found."""

    corroborated: bool = False
    network: str | None = None


# ---------------------------------------------------------- 4 block source IP


@dataclass(frozen=True)
class WafUnblock:
    """Take ``addresses`` out of the IP set: a block's undo, built from its record. RB-06
    never runs it (blocks are kept for review); the review page shows its call."""

    ip_set: str
    ip_set_id: str
    scope: str
    addresses: tuple[str, ...]

    needs: ClassVar[Need] = "aws"
    mutates: ClassVar[bool] = True

    def render(self) -> str:
        return (
            f"aws wafv2 update-ip-set --name {self.ip_set} --id {self.ip_set_id} --scope"
            f" {self.scope} --addresses <current addresses without"
            f" {', '.join(self.addresses)}> --lock-token <token>"
        )

    async def execute(self, clients: Clients) -> StepOutcome:
        removed = await clients.need_aws().waf_remove_addresses(
            self.ip_set, self.ip_set_id, list(self.addresses), self.scope
        )
        if not removed:
            return Skip(f"{', '.join(self.addresses)} not in {self.ip_set} (unblocked since)")
        return Done(f"unblocked {', '.join(removed)} in WAF IP set {self.ip_set}")


class BlockRecord(BaseModel):
    """What block_source_ip recorded: what a human would unblock."""

    ip_set: str = ""
    ip_set_id: str = ""
    scope: str = "REGIONAL"
    added: list[str] = []

    def unblock(self, addresses: list[str]) -> WafUnblock:
        return WafUnblock(self.ip_set, self.ip_set_id, self.scope, tuple(addresses))


@dataclass(frozen=True)
class WafBlock:
    """Add the source network to the WAF IP set, only once this run confirmed it and
    while the set is below ``max_size``; records what it added (kept on resolve)."""

    ip_set: str
    ip_set_id: str | None  # None: not configured; blocking fails visibly
    scope: str
    net: validation.IPNetwork | None  # None: the alert carries no source_ip
    confirmed: bool
    max_size: int

    needs: ClassVar[Need] = "aws"
    mutates: ClassVar[bool] = True

    def render(self) -> str:
        if self.net is None:
            return "(no source_ip label: nothing to block)"
        set_id = self.ip_set_id or "<params.waf_ip_set_id not set>"
        return (
            f"aws wafv2 update-ip-set --name {self.ip_set} --id {set_id} --scope"
            f" {self.scope} --addresses <current addresses> {self.net} --lock-token <token>"
        )

    async def execute(self, clients: Clients) -> StepOutcome:
        name, net = self.ip_set, self.net
        if net is None:
            return Skip("the alert carries no source_ip label: nothing to block")
        if not self.confirmed:
            return Skip(
                f"{net} was not confirmed (see the confirmation step): not blocked;"
                " block by hand if it must be"
            )
        if self.ip_set_id is None:
            raise StepFailed("params.waf_ip_set_id is not set in the rule: block by hand")
        aws = clients.need_aws()
        current = await aws.waf_get_ip_set(name, self.ip_set_id, self.scope)
        cidr = str(net)
        if cidr in current.addresses:
            return Skip(f"{cidr} is already blocked in {name}")
        if len(current.addresses) >= self.max_size:
            raise StepFailed(
                f"{name} already holds {len(current.addresses)}"
                f" addresses (max_ip_set_size={self.max_size}): review the"
                f" blocks, then block {cidr} by hand"
            )
        added = await aws.waf_add_addresses(name, self.ip_set_id, [cidr], self.scope)
        if not added:
            return Skip(f"{cidr} was blocked meanwhile by someone else")
        record = BlockRecord(ip_set=name, ip_set_id=self.ip_set_id, scope=self.scope, added=added)
        # Kept on resolve for review (README); the record is what a human would unblock.
        return Done(
            f"blocked {', '.join(added)} in WAF IP set {name}; kept after"
            " the alert resolves, for review",
            data=record.model_dump(),
            changes=record.model_dump(),
        )

    def planned_undo(self) -> str:
        set_id = self.ip_set_id or "<params.waf_ip_set_id not set>"
        return WafUnblock(
            self.ip_set, set_id, self.scope, (Hint("<the addresses added>"),)
        ).render()

    def undo(self, changes: Mapping[str, object]) -> WafUnblock:
        record = BlockRecord.model_validate(changes)
        if not record.added:
            raise StepFailed("the block record names no address")
        return record.unblock(record.added)


@step(
    "block_source_ip",
    "mitigate",
    "Block the source IP in the WAF IP set",
    mutates=True,
    idempotent=True,
    timeout=30.0,
)
def block_source_ip(ctx: StepContext[Params]) -> WafBlock:
    p = ctx.params
    net = source_network(ctx, for_blocking=True)
    found = ctx.found("confirm_source", Confirmed)
    confirmed = (
        net is not None and found is not None and found.corroborated and found.network == str(net)
    )
    return WafBlock(
        p.waf_ip_set_name, p.waf_ip_set_id, p.waf_scope, net, confirmed, p.max_ip_set_size
    )


# ------------------------------------------------- on resolve: list the blocks


@dataclass(frozen=True)
class ListBlocks:
    """Which of this run's blocks still stand, with the call that would lift them
    (``record`` None: this run blocked nothing)."""

    record: BlockRecord | None
    ip_set: str  # the params', for the plan
    ip_set_id: str | None
    scope: str

    needs: ClassVar[Need] = "aws"
    mutates: ClassVar[bool] = False

    def render(self) -> str:
        set_id = self.ip_set_id or "<params.waf_ip_set_id>"
        return (
            f"aws wafv2 get-ip-set --name {self.ip_set} --id {set_id} --scope"
            f" {self.scope}  # list what this run blocked; nothing is removed"
        )

    async def execute(self, clients: Clients) -> StepOutcome:
        block = self.record
        if block is None or not block.added:
            return Skip("this run blocked nothing")
        added, name = block.added, block.ip_set
        try:
            current = await clients.need_aws().waf_get_ip_set(name, block.ip_set_id, block.scope)
        except TargetError as exc:
            return Done(
                f"kept for review (IP set unreadable: {str(exc)[:120]}): {', '.join(added)} in"
                f" {name}",
                data={"kept": added},
            )
        kept = [a for a in added if a in current.addresses]
        gone = [a for a in added if a not in current.addresses]
        parts = []
        if kept:
            parts.append(
                f"kept blocked for review: {', '.join(kept)} in {name}; unblock after"
                f" review with {block.unblock(kept).render()}"
            )
        if gone:
            parts.append(f"already unblocked by someone: {', '.join(gone)}")
        return Done("; ".join(parts), data={"kept": kept, "unblocked": gone})


@step(
    "list_blocks",
    "verify",
    "Blocks are kept: list them for review",
    mutates=False,
    timeout=20.0,
)
def list_blocks(ctx: StepContext[Params]) -> ListBlocks:
    p = ctx.params
    record = ctx.found("block_source_ip", BlockRecord)
    return ListBlocks(record, p.waf_ip_set_name, p.waf_ip_set_id, p.waf_scope)
