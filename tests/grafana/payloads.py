"""Grafana Alerting webhook bodies in the documented shape (webhook notifier docs).

``documented()`` is the example body of Grafana's webhook notifier documentation
(tests/fixtures/grafana/webhook-firing.json); ``payload``/``alert`` build bodies of the
same shape for DawsOS labels.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).parent.parent / "fixtures" / "grafana"
ZERO = "0001-01-01T00:00:00Z"


def documented(name: str = "webhook-firing.json") -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return doc


def alert(
    labels: dict[str, str],
    starts_at: str,
    *,
    status: str = "firing",
    ends_at: str = ZERO,
    fingerprint: str | None = None,
    dashboard_url: str = "",
    panel_url: str = "",
    values: dict[str, float] | None = None,
) -> dict[str, Any]:
    a: dict[str, Any] = {
        "status": status,
        "labels": dict(labels),
        "annotations": {"summary": f"{labels.get('alertname', '')} from Grafana"},
        "startsAt": starts_at,
        "endsAt": ends_at,
        "generatorURL": "http://grafana.test/alerting/grafana/dawsos-rule-1/view?orgId=1",
        "silenceURL": "http://grafana.test/alerting/silence/new?alertmanager=grafana",
        "dashboardURL": dashboard_url,
        "panelURL": panel_url,
        "values": values if values is not None else {"B": 44.23943737541908, "C": 1},
    }
    if fingerprint is not None:
        a["fingerprint"] = fingerprint
    return a


def payload(alerts: list[dict[str, Any]], *, status: str | None = None) -> dict[str, Any]:
    status = status or ("firing" if any(a["status"] == "firing" for a in alerts) else "resolved")
    n = len(alerts)
    return {
        "receiver": "remediator",
        "status": status,
        "orgId": 1,
        "alerts": copy.deepcopy(alerts),
        "groupLabels": {},
        "commonLabels": {"service": "dawsos"},
        "commonAnnotations": {},
        "externalURL": "http://grafana.test/",
        "version": "1",
        "groupKey": '{}/{service="dawsos"}:{}',
        "truncatedAlerts": 0,
        "title": f"[{status.upper()}:{n}] (dawsos)",
        "state": "alerting" if status == "firing" else "ok",
        "message": f"**{status.title()}**\n\nLabels:\n - service = dawsos\n",
    }


def resolved(a: dict[str, Any], ends_at: str) -> dict[str, Any]:
    return {**copy.deepcopy(a), "status": "resolved", "endsAt": ends_at}
