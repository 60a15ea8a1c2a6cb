"""Block Kit for a page posted by the Slack bot: the page, then each approval.

    header        the page's one-line summary
    context       why the last click changed nothing (only when there is a notice)
    section(s)    the page text (done, skipped, left for you, links)
    per approval: section   "Approval 42: <title>" and the rendered call
                  actions   "Approve" (primary) and "Reject" (danger), while pending
                  context   "Approved by alice at 03:12 UTC, running…" once decided

Each button's ``value`` is ``"<approval id>:<nonce>"``, its ``action_id`` says which
decision it is. Every text a label or a step produced is escaped for mrkdwn. This
module renders only: it reads nothing and sends nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from remediator.paging import text
from remediator.paging.base import PageContent
from remediator.paging.slack import BODY_LIMIT, HEADER_LIMIT, SECTION_LIMIT, chunks, escape

APPROVE = "remediator_approve"
REJECT = "remediator_reject"
ACTIONS = {APPROVE: "approved", REJECT: "rejected"}
MAX_BLOCKS = 50  # Slack's limit per message
MAX_APPROVALS = 10  # three blocks each; the page text keeps the rest
CALL_LIMIT = 2500


@dataclass(frozen=True)
class ApprovalView:
    id: int
    step: str
    title: str
    call: str
    state: str  # pending | approved | executing | executed | failed | rejected | expired
    decided_by: str | None = None
    decided_at: float | None = None
    outcome: str | None = None  # "applied: deleted 3 rows", once its step ran
    nonce: str | None = None  # buttons are shown only with one
    # The commands that decide it and the kill switch's, as they paste from anywhere
    # (engine/pages.py writes them with the daemon's --config or --url).
    approve: str = ""
    reject: str = ""
    resume: str = "remediator resume"


def views(
    content: PageContent,
    live: Mapping[int, Mapping[str, Any]] | None = None,
    nonces: Mapping[int, str] | None = None,
) -> list[ApprovalView]:
    """The approvals a page names (``details["approvals"]``, see engine/pages.py), with
    their state as the store has it now (``live``): a page sent late from the outbox
    must not offer buttons for an approval decided meanwhile."""
    raw = content.details.get("approvals")
    resume = command(content, "resume")
    result: list[ApprovalView] = []
    for item in raw if isinstance(raw, list) else []:
        if not isinstance(item, dict) or not isinstance(item.get("id"), int):
            continue
        approval_id = int(item["id"])
        now = (live or {}).get(approval_id, item)
        decided_at = now.get("decided_at")
        result.append(
            ApprovalView(
                id=approval_id,
                step=str(item.get("step") or ""),
                title=str(item.get("title") or item.get("step") or ""),
                call=str(item.get("call") or ""),
                state=str(now.get("state") or "pending"),
                decided_by=_opt_str(now.get("decided_by")),
                decided_at=float(decided_at) if isinstance(decided_at, int | float) else None,
                outcome=_opt_str(item.get("outcome")),
                nonce=(nonces or {}).get(approval_id),
                approve=_opt_str(item.get("approve")) or f"remediator approve {approval_id}",
                reject=_opt_str(item.get("reject")) or f"remediator reject {approval_id}",
                resume=resume,
            )
        )
    return result


def _opt_str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def command(content: PageContent, name: str) -> str:
    """``remediator <name>`` as the page's daemon wrote it (``details["commands"]``)."""
    commands = content.details.get("commands")
    given = commands.get(name) if isinstance(commands, dict) else None
    return _opt_str(given) or f"remediator {name}"


def clock(at: float | None) -> str:
    if at is None:
        return "?"
    return datetime.fromtimestamp(at, UTC).strftime("%H:%M UTC")


def who(decided_by: str | None) -> str:
    """ "alice via Slack" reads as "alice" in Slack itself."""
    name = decided_by or "someone"
    return name.removesuffix(" via Slack")


def status(a: ApprovalView, *, paused: bool) -> str:
    """One line on where an approval stands, in plain words."""
    by = f"{who(a.decided_by)} at {clock(a.decided_at)}"
    if a.state in ("approved", "executing"):
        if paused and a.state == "approved":
            return f"Approved by {by}; the kill switch is on: it runs after `{a.resume}`"
        return f"Approved by {by}, running…"
    if a.state == "executed":
        return f"Approved by {by}: {a.outcome or 'done'}"
    if a.state == "failed":
        return f"Approved by {by}: failed" + (f" ({a.outcome})" if a.outcome else "")
    if a.state == "rejected":
        return f"Rejected by {by}: nothing was run"
    if a.state == "expired":
        return "Expired: no longer offered, nothing was run"
    return f"Pending: `{a.approve}` or `{a.reject}`"


def button(label: str, action_id: str, style: str, a: ApprovalView) -> dict[str, Any]:
    return {
        "type": "button",
        "text": {"type": "plain_text", "text": label},
        "style": style,
        "action_id": action_id,
        "value": f"{a.id}:{a.nonce}",
    }


def _approval_blocks(a: ApprovalView, *, paused: bool, offer: bool) -> list[dict[str, Any]]:
    call = text.truncate(a.call, CALL_LIMIT) if a.call else "(no call recorded)"
    head = text.truncate(text.one_line(a.title), 200)
    blocks: list[dict[str, Any]] = [
        {
            "type": "section",
            "block_id": f"approval-{a.id}-call",
            "text": {
                "type": "mrkdwn",
                "text": f"*Approval {a.id}: {escape(head)}*\n```{escape(call)}```",
            },
        }
    ]
    if offer and a.state == "pending" and a.nonce:
        blocks.append(
            {
                "type": "actions",
                "block_id": f"approval-{a.id}",
                "elements": [
                    button("Approve", APPROVE, "primary", a),
                    button("Reject", REJECT, "danger", a),
                ],
            }
        )
    else:
        line = escape(text.truncate(status(a, paused=paused), SECTION_LIMIT - 100))
        blocks.append(
            {
                "type": "context",
                "block_id": f"approval-{a.id}-status",
                "elements": [{"type": "mrkdwn", "text": line}],
            }
        )
    return blocks


def message(
    content: PageContent,
    approvals: Sequence[ApprovalView],
    *,
    paused: bool = False,
    notice: str | None = None,
    resolved: bool = False,
) -> dict[str, Any]:
    """``text`` (the notification fallback) and ``blocks`` of the message."""
    summary = text.summary(content, HEADER_LIMIT - 12)
    header = f"Resolved: {summary}" if resolved else summary
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": header}}
    ]
    if notice:
        blocks.append(
            {
                "type": "context",
                "block_id": "notice",
                "elements": [
                    {"type": "mrkdwn", "text": ":warning: " + escape(text.truncate(notice, 2000))}
                ],
            }
        )
    shown = list(approvals)[:MAX_APPROVALS]
    room = MAX_BLOCKS - len(blocks) - 2 * len(shown) - (1 if len(approvals) > len(shown) else 0)
    for chunk in chunks(text.body(content, limit=BODY_LIMIT), SECTION_LIMIT)[: max(1, room)]:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": chunk}})
    for a in shown:
        blocks += _approval_blocks(a, paused=paused, offer=not resolved)
    if len(approvals) > len(shown):
        more = len(approvals) - len(shown)
        listing = command(content, "approvals")
        blocks.append(
            {
                "type": "context",
                "elements": [
                    {
                        "type": "mrkdwn",
                        "text": f"… and {more} more approvals: see `{listing}`",
                    }
                ],
            }
        )
    fallback = ("Resolved: " if resolved else "") + text.summary(content)
    return {"text": escape(fallback), "blocks": blocks[:MAX_BLOCKS]}
