"""The words of a summary incident: the pages a flood folded into it, with counts.

Rendered each time the summary is sent (``Outbox.deliver_due``), from the counts in
the state store (``state/folds.py``), so a re-send always shows them as they stand.
It must never name a folded page's own dedup key as its incident: the pager never
opened those.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from remediator.paging import text
from remediator.paging.base import MODES, SEVERITIES, PageContent, PageEvent, Severity
from remediator.state.folds import SummaryStats

ALERTNAME = "RemediatorPagesFolded"
MAX_LINKS = 10
_FIELD_BYTES = 200


def topic(c: PageContent) -> str:
    """What a summary counts a folded page under."""
    return json.dumps([c.alertname, c.rule, c.runbook, c.severity, c.mode])


def placeholder(pager: str, key: str) -> dict[str, Any]:
    """The event stored with a summary's row; the real one is rendered when sent."""
    content = PageContent(
        dedup_key=key,
        severity="P0",
        title=f"Page flood on {pager}: pages folded into this incident",
        alertname=ALERTNAME,
        runbook="-",
        rule="-",
        mode="live",
    )
    return PageEvent(action="trigger", content=content).to_json()


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds")


def _join(values: list[str]) -> str:
    return text.truncate(", ".join(sorted(set(values))), _FIELD_BYTES) or "-"


def content(
    stats: SummaryStats,
    *,
    budget: int,
    window: float,
    actions_command: str = "remediator actions --limit 100",
) -> PageContent:
    rows: list[dict[str, Any]] = []
    links: dict[str, str] = {}
    for t in stats.topics:
        names = ("alertname", "rule", "runbook", "severity", "mode")
        rows.append(
            {
                **dict(zip(names, json.loads(t.topic), strict=True)),
                "count": t.count,
                "resolved": t.resolved,
                "own": t.own,
            }
        )
        for link in (t.sample or {}).get("content", {}).get("links", []):
            if len(links) < MAX_LINKS:
                links.setdefault(str(link["href"]), str(link["text"]))
    total = sum(r["count"] for r in rows)
    resolved = sum(r["resolved"] for r in rows)
    by_alert: dict[str, int] = {}
    for r in rows:
        by_alert[r["alertname"]] = by_alert.get(r["alertname"], 0) + r["count"]
    counts = ", ".join(f"{a} {n}" for a, n in sorted(by_alert.items(), key=lambda x: -x[1]))
    severities = [r["severity"] for r in rows if r["severity"] in SEVERITIES]
    severity: Severity = min(severities, key=SEVERITIES.index) if severities else "P0"
    modes = {r["mode"] for r in rows if r["mode"] in MODES}
    mode = modes.pop() if len(modes) == 1 else "live"
    end = stats.window_start + window
    counted = [
        f"{r['alertname']} (rule {r['rule']}, runbook {r['runbook']}, {r['severity']}):"
        f" {r['count']} folded here, {r['resolved']} resolved since"
        + (f", {r['own']} then paged on their own (acted)" if r["own"] else "")
        for r in rows
    ]
    return PageContent(
        dedup_key=stats.key,
        severity=severity,
        title=f"Page flood on {stats.pager}: {total} new incidents folded into this one"
        f" ({counts or 'none yet'})",
        alertname=ALERTNAME,
        runbook=_join([r["runbook"] for r in rows]),
        rule=_join([r["rule"] for r in rows]),
        mode=mode,
        skipped=(
            f"their own pages: {stats.pager} had opened {budget} new incidents within an"
            f" hour (pagers.max_pages_per_hour); new ones fold into this incident until"
            f" {_iso(end)}, and it resolves once that time has passed and all of them"
            " have resolved",
            *counted,
        ),
        left_for_human=(
            f"each folded alert's runbook still ran: see what it did with `{actions_command}`",
        ),
        links=tuple((t, h) for h, t in links.items()),
        details={
            "pager": stats.pager,
            "window_start": _iso(stats.window_start),
            "window_end": _iso(end),
            "max_pages_per_hour": budget,
            "folded": total,
            "resolved": resolved,
            "by_alert": rows[:100],
        },
    )
