"""The Slack Web API calls the bot pager and the approval route make.

``chat.postMessage`` and ``chat.update`` (bearer bot token, JSON body) answer HTTP 200
with ``{"ok": false, "error": "..."}`` on most failures, so an answer is classified
from its ``ok``/``error`` as well as its status: rate limits and Slack's own
failures are retried later by the outbox, anything else (a bad token, a channel the
bot is not in, blocks Slack refuses) is rejected with Slack's error code as the
reason. A ``response_url`` (from a click) takes a message without a token.

The bot token and every ``response_url`` are secrets: neither may reach a log line,
a repr or a reason (``base.hide_in_library_logs`` covers httpx's own request log).
Nothing here retries.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass
from typing import Any

from remediator.clients.http_post import HttpPoster, PostFailed
from remediator.paging.base import (
    USER_AGENT,
    Delivered,
    DeliveryResult,
    Redactor,
    Rejected,
    RetryLater,
    classify,
    dumps,
    hide_in_library_logs,
    parse_retry_after,
)

# Errors worth trying again: Slack's side, not our request.
TEMPORARY = frozenset(
    {
        "ratelimited",
        "rate_limited",
        "internal_error",
        "fatal_error",
        "service_unavailable",
        "request_timeout",
        "team_added_to_org",
    }
)
# chat.update on a message that is gone: post a new one instead.
MESSAGE_GONE = frozenset({"message_not_found", "cant_update_message", "edit_window_closed"})


@dataclass(frozen=True)
class ApiAnswer:
    result: DeliveryResult
    error: str | None = None  # Slack's error code when ok was false
    channel: str | None = None
    ts: str | None = None


class SlackWebApi:
    def __init__(
        self,
        token: str,
        base_url: str = "https://slack.com/api",
        *,
        client: HttpPoster | None = None,
        timeout: float = 10.0,
    ) -> None:
        self._token = token
        self._base = base_url.rstrip("/")
        self._http = client if client is not None else HttpPoster()
        self._owns_client = client is None
        self._timeout = timeout
        self._redact = Redactor([token])
        hide_in_library_logs(token)

    def __repr__(self) -> str:
        return f"SlackWebApi(base_url={self._base!r}, token=<redacted>)"

    async def aclose(self) -> None:
        if self._owns_client:
            await self._http.aclose()

    async def call(self, method: str, body: dict[str, Any]) -> ApiAnswer:
        """One Web API call (``chat.postMessage``, ``chat.update``), classified."""
        headers = {
            "Authorization": f"Bearer {self._token}",
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": USER_AGENT,
        }
        try:
            response = await self._http.post(
                f"{self._base}/{method}", dumps(body), headers, self._timeout
            )
        except PostFailed as exc:
            if exc.timeout:
                return ApiAnswer(RetryLater(reason=f"slack: {method}: timeout ({exc.kind})"))
            reason = self._redact(f"slack: {method}: {exc.kind}: {exc.detail}")
            return ApiAnswer(RetryLater(reason=reason))
        if response.status != 200:
            return ApiAnswer(classify(f"slack: {method}", response, self._redact))
        try:
            answer = response.json()
        except ValueError:
            return ApiAnswer(RetryLater(reason=f"slack: {method}: an answer that is not JSON"))
        if not isinstance(answer, dict):
            return ApiAnswer(RetryLater(reason=f"slack: {method}: an answer that is not an object"))
        if answer.get("ok") is True:
            channel, ts = answer.get("channel"), answer.get("ts")
            return ApiAnswer(
                Delivered(status=200),
                channel=channel if isinstance(channel, str) else None,
                ts=ts if isinstance(ts, str) else None,
            )
        error = str(answer.get("error") or "unknown_error")[:100]
        reason = self._redact(f"slack: {method}: {error}")
        if error in TEMPORARY:
            after = parse_retry_after(response.headers.get("retry-after"))
            return ApiAnswer(RetryLater(reason=reason, after=after), error=error)
        return ApiAnswer(Rejected(status=200, reason=reason), error=error)

    async def respond(self, response_url: str, body: dict[str, Any]) -> DeliveryResult:
        """Post to a click's ``response_url`` (update the message, or an ephemeral)."""
        return await respond(self._http, response_url, body)


class _RecentUrls(logging.Filter):
    """httpx logs each request URL at INFO, and a response_url lets its holder post to
    the channel for 30 minutes. The URLs used lately are redacted from those lines;
    a bounded window (not ``hide_in_library_logs``, which keeps every secret for
    good) because each click brings a new one."""

    def __init__(self, size: int = 512) -> None:
        super().__init__()
        self.urls: deque[str] = deque(maxlen=size)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.urls:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a broken log call must not break a send
            return True
        redacted = Redactor(self.urls)(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


_recent_urls = _RecentUrls()
logging.getLogger("httpx").addFilter(_recent_urls)


RESPOND_TIMEOUT = 10.0


async def respond(client: HttpPoster, response_url: str, body: dict[str, Any]) -> DeliveryResult:
    """One POST to a ``response_url``; the URL itself never appears in the result."""
    redact = Redactor([response_url])
    _recent_urls.urls.append(response_url)
    headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": USER_AGENT}
    try:
        response = await client.post(response_url, dumps(body), headers, RESPOND_TIMEOUT)
    except PostFailed as exc:
        if exc.timeout:
            return RetryLater(reason="slack: response_url: timeout")
        return RetryLater(reason=redact(f"slack: response_url: {exc.kind}"))
    return classify("slack: response_url", response, redact)


class Responder:
    """Posts to clicks' ``response_url``s with one client of its own (the approval
    route has no bot token to hand: a response_url needs none)."""

    def __init__(self) -> None:
        self._http = HttpPoster()

    async def respond(self, response_url: str, body: dict[str, Any]) -> DeliveryResult:
        return await respond(self._http, response_url, body)

    async def aclose(self) -> None:
        await self._http.aclose()
