"""PagerDuty Events API v2: a PageEvent becomes one POST to /v2/enqueue.

The routing key is the only credential (it travels in the body), so it must never
appear in a repr, a log line or a result's reason. This module never retries: it
classifies the answer and the outbox decides.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from remediator.clients.http_post import HttpPoster
from remediator.errors import ConfigError
from remediator.paging import text
from remediator.paging.base import (
    Delivered,
    DeliveryResult,
    HttpPager,
    PageContent,
    PageEvent,
    Severity,
    check_url,
    dumps,
)

DEFAULT_URL = "https://events.pagerduty.com/v2/enqueue"

SEVERITY_MAP: dict[Severity, str] = {
    "P0": "critical",
    "P1": "error",
    "P2": "warning",
    "P3": "info",
}

SUMMARY_LIMIT = 1024
DEDUP_KEY_LIMIT = 255
# PagerDuty refuses events over 512 KB; stay clear of the edge.
EVENT_LIMIT = 500_000
# Fields PagerDuty gives no limit for; an absurd label value must not eat the budget.
FIELD_LIMIT = 1000
MAX_LINKS = (50, 50, 10)
LEFT_SUFFIX = "/left-for-human"


class PagerDutyPager(HttpPager):
    name = "pagerduty"

    def __init__(
        self,
        routing_key: str,
        url: str = DEFAULT_URL,
        *,
        client: HttpPoster | None = None,
        timeout: float = 10.0,
        severities: Iterable[Severity] = ("P0", "P1"),
    ) -> None:
        if not routing_key:
            raise ConfigError("pagers.pagerduty.routing_key: must not be empty")
        self._routing_key = routing_key
        self._url = check_url(url, key="pagers.pagerduty.url")
        super().__init__(
            secrets=[routing_key], client=client, timeout=timeout, severities=severities
        )

    def __repr__(self) -> str:
        return f"PagerDutyPager(url={self._url!r}, severities={sorted(self._severities)})"

    async def send(self, event: PageEvent) -> DeliveryResult:
        result = await self._post(self._url, dumps(self.body(event)))
        follow_up = self.follow_up(event)
        if follow_up is None or not isinstance(result, Delivered):
            return result
        # Both are idempotent by dedup key: the outbox's retry of a failed follow-up
        # resends the resolve too, harmlessly.
        return await self._post(self._url, dumps(follow_up))

    def follow_up(self, event: PageEvent) -> dict[str, Any] | None:
        """What a resolve leaves to a human, as an incident of its own.

        Events v2 has no notes, and a resolve shows nothing but the incident closing
        (its payload is ignored). So when the resolve leaves work (RB-01 "unmark it by
        hand", a failed undo), a P2 trigger with the run's dedup key and
        "/left-for-human" opens a to-do incident; the human resolves it when done.
        """
        c = event.content
        if event.action != "resolve" or not c.left_for_human:
            return None
        todo = replace(
            c,
            dedup_key=c.dedup_key + LEFT_SUFFIX,
            severity="P2",
            title=f"{c.title}: resolved; left for you",
            done=(),
            skipped=(),
        )
        return self.body(PageEvent("trigger", todo, event.timestamp))

    def body(self, event: PageEvent) -> dict[str, Any]:
        """The exact JSON sent for ``event`` (public so tests and replay can show it)."""
        c = event.content
        dedup_key = text.fit_key(c.dedup_key, DEDUP_KEY_LIMIT)
        if event.action == "resolve":
            return {
                "routing_key": self._routing_key,
                "event_action": "resolve",
                "dedup_key": dedup_key,
            }
        # Shrink step by step until the event fits: first the free-form details,
        # then the lists; the summary, links and mode always survive.
        for level in range(3):
            result = {
                "routing_key": self._routing_key,
                "event_action": "trigger",
                "dedup_key": dedup_key,
                "payload": {
                    "summary": text.summary(c, SUMMARY_LIMIT),
                    "source": text.truncate(c.source, FIELD_LIMIT),
                    "severity": SEVERITY_MAP[c.severity],
                    "timestamp": event.timestamp.isoformat(),
                    "component": text.truncate(c.runbook, FIELD_LIMIT),
                    "group": text.truncate(c.alertname, FIELD_LIMIT),
                    "class": text.truncate(c.rule, FIELD_LIMIT),
                    "custom_details": _custom_details(c, level),
                },
                "links": [
                    {"href": href, "text": t} for t, href in text.links(c)[: MAX_LINKS[level]]
                ],
            }
            if len(dumps(result)) <= EVENT_LIMIT:
                break
        return result


def _custom_details(c: PageContent, level: int) -> dict[str, Any]:
    max_items, item_bytes, details_bytes = [
        (text.MAX_ITEMS, text.MAX_ITEM_BYTES, None),
        (text.MAX_ITEMS, text.MAX_ITEM_BYTES, 100_000),
        (10, 200, 10_000),
    ][level]
    details: Any = c.details
    if details_bytes is not None:
        encoded = dumps(c.details).decode()
        if text.utf8_len(encoded) > details_bytes:
            details = {"truncated": text.truncate(encoded, details_bytes)}
    labels = c.labels
    if level == 2:
        labels = {
            text.truncate(k, item_bytes): text.truncate(v, item_bytes)
            for k, v in list(c.labels.items())[:100]
        }
    return {
        "done": text.cap_items(c.done, max_items, item_bytes),
        "skipped": text.cap_items(c.skipped, max_items, item_bytes),
        "left_for_human": text.cap_items(c.left_for_human, max_items, item_bytes),
        "mode": c.mode,
        "labels": labels,
        **({"values": dict(c.values)} if c.values else {}),
        "details": details,
    }
