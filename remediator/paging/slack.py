"""Slack incoming webhook: the notify-level pager (P2/P3 by default).

The webhook URL *is* the secret: anyone holding it can post. It must never appear in
a repr, a log line (httpx logs request URLs, see ``base.hide_in_library_logs``) or a
result's reason. Slack has no dedup or resolve of its own, so a resolve is a short
message naming the dedup key. This module never retries: the outbox decides.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from remediator.clients.http_post import HttpPoster
from remediator.errors import ConfigError
from remediator.paging import text
from remediator.paging.base import (
    DeliveryResult,
    HttpPager,
    PageEvent,
    Severity,
    check_url,
    dumps,
)

HEADER_LIMIT = 150  # Slack's limit for a header block's plain_text
SECTION_LIMIT = 3000  # Slack's limit for a section block's text
BODY_LIMIT = 12_000  # a handful of sections; Slack allows 50 blocks per message


class SlackPager(HttpPager):
    name = "slack"

    def __init__(
        self,
        webhook_url: str,
        *,
        client: HttpPoster | None = None,
        timeout: float = 10.0,
        severities: Iterable[Severity] = ("P2", "P3"),
    ) -> None:
        if not webhook_url:
            raise ConfigError("pagers.slack.webhook_url: must not be empty")
        self._url = check_url(webhook_url, key="pagers.slack.webhook_url", secret=True)
        super().__init__(
            secrets=_secret_parts(webhook_url),
            client=client,
            timeout=timeout,
            severities=severities,
        )

    def __repr__(self) -> str:
        return f"SlackPager(url=<redacted>, severities={sorted(self._severities)})"

    async def send(self, event: PageEvent) -> DeliveryResult:
        return await self._post(self._url, dumps(self.body(event)))

    def body(self, event: PageEvent) -> dict[str, Any]:
        """The exact JSON sent for ``event`` (public so tests and replay can show it)."""
        c = event.content
        if event.action == "resolve":
            said = f"Resolved: {text.summary(c)} (dedup key {c.dedup_key})"
            if c.left_for_human:  # what the resolve leaves to a human reaches one
                items = text.cap_items(c.left_for_human, text.MAX_ITEMS, text.MAX_ITEM_BYTES)
                said += "\nLeft for you:\n" + "\n".join(f"- {item}" for item in items)
            return {"text": escape(text.truncate(said, BODY_LIMIT))}
        blocks: list[dict[str, Any]] = [
            {
                "type": "header",
                "text": {"type": "plain_text", "text": text.summary(c, HEADER_LIMIT)},
            }
        ]
        for chunk in chunks(text.body(c, limit=BODY_LIMIT), SECTION_LIMIT):
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": chunk}})
        return {"text": escape(text.summary(c)), "blocks": blocks}


def escape(s: str) -> str:
    """Slack's mrkdwn control characters; everything else is shown as written."""
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def chunks(body: str, limit: int) -> list[str]:
    """Escaped pieces of at most ``limit`` characters, split at line ends when possible."""
    result: list[str] = []
    current: list[str] = []
    size = 0
    for line in body.split("\n"):
        for piece in _split_line(line, limit):
            extra = len(piece) + (1 if current else 0)
            if current and size + extra > limit:
                result.append("\n".join(current))
                current, size = [], 0
                extra = len(piece)
            current.append(piece)
            size += extra
    if current:
        result.append("\n".join(current))
    # Slack refuses a section whose text is empty.
    return [r if r.strip() else " " for r in result]


def _split_line(line: str, limit: int) -> list[str]:
    # Escape per character so that no "&amp;" is ever split across two sections.
    pieces: list[str] = []
    piece = ""
    for ch in line:
        esc = escape(ch)
        if len(piece) + len(esc) > limit:
            pieces.append(piece)
            piece = ""
        piece += esc
    pieces.append(piece)
    return pieces


def _secret_parts(url: str) -> list[str]:
    """The whole URL, and the parts of it that an error message might show alone."""
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    secrets = [url, path if len(path) > 1 else ""]
    # The last path segment is the token in hooks.slack.com/services/T../B../TOKEN.
    last = parts.path.rstrip("/").rsplit("/", 1)[-1]
    if len(last) >= 8:
        secrets.append(last)
    return [s for s in secrets if s]
