"""The Slack pager with a bot token: one message per incident, with approval buttons,
updated in place.

The first page of an incident (its ``dedup_key``) is posted with
``chat.postMessage`` into the configured channel; Slack's answer (the channel id and
the message ``ts``) is kept in the state store, and every later page of the same
incident (an approved step's outcome, an expiry, the resolve) is a ``chat.update`` of
that message. A message that is gone is posted again. Pages are rendered from the
state as it is when they are sent, so a page sent late never offers buttons for an
approval decided meanwhile. Like every pager it never retries: the outbox does.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from remediator.errors import StateUnavailable
from remediator.paging import slack_blocks
from remediator.paging.base import (
    Delivered,
    DeliveryResult,
    PageContent,
    PageEvent,
    Severity,
    severity_set,
)
from remediator.paging.slack_api import MESSAGE_GONE, SlackWebApi
from remediator.state import slack as slack_state
from remediator.state.store import StateStore

PAUSE_FLAG = "paused"


class SlackBotPager:
    name = "slack"

    def __init__(
        self,
        api: SlackWebApi,
        channel: str,
        store: StateStore,
        *,
        severities: Iterable[Severity] = ("P2", "P3"),
        buttons: bool = True,
    ) -> None:
        self.api = api
        self.channel = channel
        self.store = store
        self.buttons = buttons  # False: approvals.slack is not set, no click is taken
        self._severities = severity_set(severities, pager=self.name)

    def __repr__(self) -> str:
        return f"SlackBotPager(channel={self.channel!r}, severities={sorted(self._severities)})"

    def accepts(self, severity: Severity) -> bool:
        return severity in self._severities

    async def aclose(self) -> None:
        await self.api.aclose()

    async def send(self, event: PageEvent) -> DeliveryResult:
        content = event.content
        resolved = event.action == "resolve"
        try:
            body = await render(self.store, content, resolved=resolved, buttons=self.buttons)
            ref = await slack_state.message_for(self.store, content.dedup_key)
        except StateUnavailable:
            # The page of a state store outage (sent directly, not from the outbox):
            # posted as it is, without buttons (no nonce can be kept) and not kept.
            approvals = slack_blocks.views(content)
            body = slack_blocks.message(content, approvals, resolved=resolved)
            answer = await self.api.call("chat.postMessage", {"channel": self.channel, **body})
            return answer.result
        if ref is not None:
            answer = await self.api.call(
                "chat.update", {"channel": ref.channel, "ts": ref.ts, **body}
            )
            if answer.error not in MESSAGE_GONE:
                return answer.result
        answer = await self.api.call("chat.postMessage", {"channel": self.channel, **body})
        if isinstance(answer.result, Delivered) and answer.channel and answer.ts:
            run_id = content.details.get("run_id")
            await slack_state.save_message(
                self.store,
                content.dedup_key,
                run_id if isinstance(run_id, str) else None,
                slack_state.MessageRef(answer.channel, answer.ts),
                replace=True,
            )
        return answer.result


async def render(
    store: StateStore,
    content: PageContent,
    *,
    resolved: bool = False,
    notice: str | None = None,
    buttons: bool = True,
) -> dict[str, Any]:
    """The message body (``text`` and ``blocks``) for ``content``, as the store stands:
    each approval's current state, a nonce (its buttons) for each still pending."""
    run_id = content.details.get("run_id")
    live: dict[int, dict[str, object]] = {}
    nonces: dict[int, str] = {}
    paused = False
    if isinstance(run_id, str) and content.details.get("approvals"):
        live = {a.id: a.to_json() for a in await store.approvals_for_run(run_id)}
        pending = [i for i, r in live.items() if r["state"] == "pending"]
        if pending and not resolved and buttons:
            nonces = await slack_state.nonces_for(store, pending)
        if any(r["state"] == "approved" for r in live.values()):
            flag = await store.get_flag(PAUSE_FLAG)
            paused = flag is not None and flag["value"] == "1"
    approvals = slack_blocks.views(content, live, nonces)
    return slack_blocks.message(content, approvals, paused=paused, notice=notice, resolved=resolved)
