"""Opsgenie Alert API: trigger creates an alert, resolve closes it by alias.

The API key travels in the ``Authorization: GenieKey`` header and must never appear
in a repr, a log line or a result's reason. Field limits are Opsgenie's documented
ones (message 130, alias 512, description 15000, details 8000 in total, tags 50 each,
source 100). This module never retries: it classifies the answer and the outbox decides.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

from remediator.clients.http_post import HttpPoster
from remediator.errors import ConfigError
from remediator.paging import text
from remediator.paging.base import (
    DeliveryResult,
    HttpPager,
    PageContent,
    PageEvent,
    Severity,
    check_url,
    dumps,
)

DEFAULT_URL = "https://api.opsgenie.com"

PRIORITY_MAP: dict[Severity, str] = {"P0": "P1", "P1": "P2", "P2": "P3", "P3": "P4"}

MESSAGE_LIMIT = 130
ALIAS_LIMIT = 512
DESCRIPTION_LIMIT = 15_000
DETAILS_LIMIT = 8_000  # keys and values together
DETAIL_VALUE_LIMIT = 1_000
TAG_LIMIT = 50
SOURCE_LIMIT = 100
NOTE_LIMIT = 25_000


class OpsgeniePager(HttpPager):
    name = "opsgenie"

    def __init__(
        self,
        api_key: str,
        url: str = DEFAULT_URL,
        *,
        client: HttpPoster | None = None,
        timeout: float = 10.0,
        severities: Iterable[Severity] = ("P0", "P1"),
    ) -> None:
        if not api_key:
            raise ConfigError("pagers.opsgenie.api_key: must not be empty")
        self._api_key = api_key
        self._url = check_url(url, key="pagers.opsgenie.url").rstrip("/")
        super().__init__(secrets=[api_key], client=client, timeout=timeout, severities=severities)

    def __repr__(self) -> str:
        return f"OpsgeniePager(url={self._url!r}, severities={sorted(self._severities)})"

    async def send(self, event: PageEvent) -> DeliveryResult:
        url, body = self.request(event)
        return await self._post(url, dumps(body), {"Authorization": f"GenieKey {self._api_key}"})

    def request(self, event: PageEvent) -> tuple[str, dict[str, Any]]:
        """The exact URL and JSON sent for ``event`` (public so tests and replay can show it)."""
        c = event.content
        alias = text.fit_key(c.dedup_key, ALIAS_LIMIT)
        source = text.truncate(c.source, SOURCE_LIMIT)
        if event.action == "resolve":
            url = f"{self._url}/v2/alerts/{quote(alias, safe='')}/close?identifierType=alias"
            return url, {"source": source, "note": close_note(c)}
        body = {
            "message": text.summary(c, MESSAGE_LIMIT),
            "alias": alias,
            "description": text.body(c, limit=DESCRIPTION_LIMIT),
            "details": details(c),
            "priority": PRIORITY_MAP[c.severity],
            "source": source,
            "tags": _tags(c),
        }
        return f"{self._url}/v2/alerts", body


def close_note(c: PageContent) -> str:
    """The close's note: what the resolve leaves to a human, where the on-call reads it."""
    if not c.left_for_human:
        return "The alert resolved."
    items = text.cap_items(c.left_for_human, text.MAX_ITEMS, text.MAX_ITEM_BYTES)
    note = "The alert resolved. Left for you:\n" + "\n".join(f"- {item}" for item in items)
    return text.truncate(note, NOTE_LIMIT)


def details(c: PageContent) -> dict[str, str]:
    """Opsgenie's flat str->str map: run facts, then labels, then the run's details."""
    entries: list[tuple[str, str]] = [
        ("runbook", c.runbook),
        ("rule", c.rule),
        ("mode", c.mode),
        ("severity", c.severity),
    ]
    taken = {k for k, _ in entries}
    for k, v in c.labels.items():
        # A label named like a run fact keeps its value under a prefixed key.
        entries.append((f"label.{k}" if k in taken else k, v))
    for k, v in c.details.items():
        entries.append((f"detail.{k}", v if isinstance(v, str) else json.dumps(v, default=str)))

    result: dict[str, str] = {}
    used = 0
    for i, (k, v) in enumerate(entries):
        k = text.truncate(k, TAG_LIMIT * 2)
        v = text.truncate(v, DETAIL_VALUE_LIMIT)
        size = len(k) + len(v)
        # Reserve room for the note that says how many entries were left out.
        if used + size > DETAILS_LIMIT - 40:
            result["omitted"] = f"{len(entries) - i} more entries"
            break
        result.setdefault(k, v)
        used += size
    return result


def _tags(c: PageContent) -> list[str]:
    tags: list[str] = []
    for tag in (c.runbook, c.alertname):
        tag = text.truncate(text.one_line(tag), TAG_LIMIT)
        if tag and tag not in tags:
            tags.append(tag)
    return tags
