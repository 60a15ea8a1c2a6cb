"""``POST /api/v1/slack/interactions``: approvals decided with a Slack button.

    verify the signature (401)  ->  read the click (400)  ->  map user.id to an
    approver (else an ephemeral "not allowed", nothing changes)  ->  consume the
    button's nonce (one conditional UPDATE: single use, across replicas)  ->
    Daemon.decide, the path `remediator approve` and the operator API take, as
    "alice via Slack"  ->  answer 200  ->  then, after the answer, update the message
    through the click's response_url.

Slack wants its answer within 3 s, so the step itself is never run here: the decision
is recorded and the maintenance loop runs the approved step through the mutation
gate (with the kill switch on, it waits for ``resume``). Its outcome reaches the
message as the run's next page (``paging/slack_bot.py``). A click that changes
nothing (replayed, already decided, expired, resolved, a nonce that does not match)
still updates the message, saying why. Not configured (no ``approvals.slack``): 404.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from aiohttp import web

from remediator import commandline, logs
from remediator.cancelling import describe, finish_or_cancel
from remediator.engine import pages
from remediator.errors import StateUnavailable
from remediator.paging import routing, slack_api, slack_blocks
from remediator.paging.slack_bot import render
from remediator.server.responses import error
from remediator.server.slack_request import (
    Click,
    PayloadError,
    parse,
    response_url_allowed,
    verify,
)
from remediator.state import slack as slack_state

if TYPE_CHECKING:
    from remediator.daemon import Daemon
    from remediator.runbook_api.registry import Registry
    from remediator.settings import Settings

log = logs.get("remediator.slack")

# Work after the answer (message updates) gets this long at shutdown.
SHUTDOWN_GRACE = 5.0


@dataclass(frozen=True)
class Verdict:
    decided: bool
    reason: str | None = None  # why nothing changed


def unrouted_approvals(settings: Settings, registry: Registry) -> list[str]:
    """Runbooks with approval steps whose severity is not routed to Slack: with
    PagerDuty or Opsgenie also configured, P0/P1 pages go there by default, and so
    would every button of RB-03..RB-06."""
    slack = routing.for_settings(settings.pagers).severities_for("slack")
    return sorted(
        rb.id
        for rb in registry
        if rb.severity not in slack and any(st.approval == "approve" for st in rb.steps)
    )


class SlackInteractions:
    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.config = daemon.settings.approvals.slack
        self._tasks: set[asyncio.Task[None]] = set()
        self._responder = slack_api.Responder()
        slack_pager = daemon.settings.pagers.slack
        self._api_url = slack_pager.api_url if slack_pager is not None else None
        if self.config is not None and (slack_pager is None or slack_pager.bot_token is None):
            log.warning(
                "slack_approvals_without_buttons",
                detail="approvals.slack is set but pagers.slack.bot_token is not:"
                " no page offers Approve/Reject buttons",
            )
        bot = slack_pager is not None and slack_pager.bot_token is not None
        unrouted = unrouted_approvals(daemon.settings, daemon.registry) if bot else []
        if self.config is not None and unrouted:
            log.warning(
                "slack_approvals_not_routed",
                runbooks=unrouted,
                detail="these runbooks ask for approvals, but their pages go to other pagers"
                " (pagers.routes, or the default routing): their buttons never reach Slack",
            )
        if self.config is not None and not self.config.approvers:
            log.warning(
                "slack_approvals_without_approvers",
                detail="approvals.slack.approvers is empty: every click is refused",
            )

    async def handle(self, request: web.Request) -> web.Response:
        if self.config is None:
            return error(404, "not_found", "Slack approvals are not configured (approvals.slack)")
        limit = self.daemon.settings.limits.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            return error(413, "payload_too_large", f"body over {limit} bytes")
        raw = await self._body(request, limit)
        if isinstance(raw, web.Response):
            return raw
        problem = verify(
            self.config.signing_secret.get_secret_value().encode(),
            request.headers.get("X-Slack-Request-Timestamp"),
            request.headers.get("X-Slack-Signature"),
            raw,
            time.time(),
        )
        if problem is not None:
            self.daemon.metrics.auth_failures.labels("slack").inc()
            return error(401, "unauthorized", problem, path=request.path)
        try:
            click = parse(raw)
        except PayloadError as exc:
            return error(400, "bad_request", str(exc), path=request.path)
        if click is None:
            return web.Response(status=200)  # not one of our buttons: nothing to do
        if click.response_url is not None and not response_url_allowed(
            click.response_url, self._api_url
        ):
            log.warning("slack_response_url_refused", user=click.user_id)
            click = replace(click, response_url=None)
        name = self.config.approvers.get(click.user_id)
        if name is None:
            log.warning("slack_click_not_allowed", user=click.user_id, approval=click.approval_id)
            self._later(self._not_allowed(click))
            return web.Response(status=200)
        verdict = await self._decide(click, name)
        self._later(self._show(click, name, verdict))
        return web.Response(status=200)

    async def _body(self, request: web.Request, limit: int) -> bytes | web.Response:
        """The raw body (the signature covers it byte for byte), within ``limit``
        bytes and ``limits.read_timeout`` seconds."""
        chunks: list[bytes] = []
        size = 0
        read_timeout = self.daemon.settings.limits.read_timeout
        try:
            async with asyncio.timeout(read_timeout):
                while chunk := await request.content.read(65536):
                    size += len(chunk)
                    if size > limit:
                        return error(413, "payload_too_large", f"body over {limit} bytes")
                    chunks.append(chunk)
        except TimeoutError:
            resp = error(408, "request_timeout", f"body not received within {read_timeout:g} s")
            resp.force_close()
            return resp
        return b"".join(chunks)

    async def _decide(self, click: Click, name: str) -> Verdict:
        store = self.daemon.store
        now = time.time()
        if await slack_state.consume_nonce(store, click.approval_id, click.nonce, now):
            result = await self.daemon.decide(
                click.approval_id, click.decision, f"{name} via Slack"
            )
            if result.status == "ok":
                return Verdict(True)
            return Verdict(False, result.detail or result.status)
        state = await slack_state.approval_state(store, click.approval_id)
        why = slack_state.refusal(state, click.nonce, now)
        reason = await self._explain(why, state, click)
        log.warning(
            "slack_click_refused", reason=why, approval=click.approval_id, user=name, detail=reason
        )
        return Verdict(False, reason)

    async def _explain(
        self, why: slack_state.Refusal, state: slack_state.ApprovalState | None, click: Click
    ) -> str:
        n = click.approval_id
        if why == "not_found" or state is None:
            return f"approval {n} does not exist"
        if why == "mismatch":
            return (
                f"this button does not match approval {n} (an old or altered message);"
                " use the latest message or"
                f" `{commandline.command(self.daemon.settings, f'approve {n}')}`"
            )
        decided = f"{slack_blocks.who(state.decided_by)} at {slack_blocks.clock(state.decided_at)}"
        if state.state == "expired":
            run = await self.daemon.store.get_run(state.run_id)
            if run is not None and run.undo_state in ("requested", "done"):
                return f"approval {n} is closed: the alert resolved"
            return f"approval {n} expired unanswered"
        if why == "replayed":
            return f"this click was already taken: approval {n} is {state.state}" + (
                f" (by {decided})" if state.decided_by else ""
            )
        if why == "decided":
            return f"approval {n} was already {state.state} by {decided}"
        return f"approval {n} expired at {slack_blocks.clock(state.expires_at)}"

    # ------------------------------------------------------------ after the answer

    def _later(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(self._guarded(work), name="slack-interaction")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _guarded(self, work: Coroutine[Any, Any, None]) -> None:
        try:
            await work
        except StateUnavailable as exc:
            log.warning("slack_update_state_unavailable", error=str(exc))
        except Exception:
            log.exception("slack_update_failed")

    async def _not_allowed(self, click: Click) -> None:
        if click.response_url is None:
            return
        await self._responder.respond(
            click.response_url,
            {
                "response_type": "ephemeral",
                "replace_original": False,
                "text": (
                    "You are not allowed to decide remediator approvals: your Slack user"
                    f" {click.user_id} is not in approvals.slack.approvers. Nothing was changed."
                ),
            },
        )

    async def _show(self, click: Click, name: str, verdict: Verdict) -> None:
        """Update the message: the approval's new state, or why the click did nothing.

        The approved step may finish (and its page update the message) while this
        update is on its way; whichever lands last must show the latest state, so
        the state is read again after sending and, if it moved, sent again."""
        store = self.daemon.store
        notice = None if verdict.decided else f"A click by {name} changed nothing: {verdict.reason}"
        for _ in range(3):
            before = await slack_state.approval_state(store, click.approval_id)
            body = await self._message(before, notice)
            if body is None:
                if click.response_url is not None and notice is not None:
                    await self._responder.respond(
                        click.response_url,
                        {"response_type": "ephemeral", "replace_original": False, "text": notice},
                    )
                return
            if click.response_url is not None:
                result = await self._responder.respond(
                    click.response_url, {"replace_original": True, **body}
                )
                log.info(
                    "slack_message_updated",
                    approval=click.approval_id,
                    result=type(result).__name__,
                )
            if before is not None and click.channel_id and click.message_ts:
                # Adopt the clicked message: later pages of the run update it too.
                await slack_state.save_message(
                    store,
                    pages.dedup_key(before.run_id),
                    before.run_id,
                    slack_state.MessageRef(click.channel_id, click.message_ts),
                    replace=False,
                )
            after = await slack_state.approval_state(store, click.approval_id)
            if before is None or after is None or after.state == before.state:
                return

    async def _message(
        self, approval: slack_state.ApprovalState | None, notice: str | None
    ) -> dict[str, Any] | None:
        if approval is None:
            return None
        store = self.daemon.store
        run = await store.get_run(approval.run_id)
        if run is None:
            return None
        runbook = self.daemon.registry.get(run.runbook)
        content = await self.daemon.engine.pager.content(run, runbook)
        resolved = run.undo_state == "done"
        return await render(store, content, resolved=resolved, notice=notice)

    async def close(self) -> None:
        """Let the updates under way finish (briefly), then close the client."""
        stuck = await finish_or_cancel(
            set(self._tasks), grace=SHUTDOWN_GRACE, within=SHUTDOWN_GRACE
        )
        if stuck:
            log.error("slack_updates_would_not_stop", tasks=describe(stuck))
        await self._responder.aclose()
