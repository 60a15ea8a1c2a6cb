"""Sample pages and peer settings shared by the paging tests (plain data, no fixtures)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from remediator.paging.base import PageContent, PageEvent

PD_KEY = "R0UTINGKEY0000000000000000000abc"
PD_URL = "https://events.pagerduty.com/v2/enqueue"
OG_KEY = "0psgenie-key-1111-2222-333344445555"
OG_URL = "https://api.opsgenie.com"
SLACK_URL = "https://hooks.slack.com/services/T0000AAAA/B0000BBBB/SlackToken0123456789xyz"

WHEN = datetime(2026, 11, 28, 0, 9, 4, 123456, tzinfo=UTC)


def make_content(**overrides: Any) -> PageContent:
    fields: dict[str, Any] = {
        "dedup_key": "remediator/run-42",
        "severity": "P1",
        "title": "[RB-01] PricingPackBuildSlow: pack build is running for 14 min",
        "alertname": "PricingPackBuildSlow",
        "runbook": "RB-01",
        "rule": "pricing-pack-build-slow",
        "mode": "live",
        "done": ("serve_last_good_pack: applied (marked PP-2025-10-20 fresh)",),
        "skipped": ("rerun_build: skipped (providers unhealthy)",),
        "left_for_human": ("scale scheduler to 0: remediator approve 42",),
        "links": (
            ("Runbook", "https://runbooks.example/RB-01"),
            ("Grafana", "https://grafana.example/d/remediator"),
            ("Alert", "http://prom.example/graph?g0.expr=x"),
        ),
        "labels": {"alertname": "PricingPackBuildSlow", "severity": "page"},
        "details": {"pack_id": "PP-2025-10-20", "attempts": 2},
    }
    fields.update(overrides)
    return PageContent(**fields)


def make_event(action: str = "trigger", **overrides: Any) -> PageEvent:
    return PageEvent(action=action, content=make_content(**overrides), timestamp=WHEN)  # type: ignore[arg-type]
