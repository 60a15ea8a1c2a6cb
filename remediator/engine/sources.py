"""What the engine keeps of an alert's sender: Alertmanager or Grafana Alerting.

A Grafana alert's occurrence carries ``source="grafana"`` and its ``GrafanaDetails``
(migration 12). The run copies both into its stored alert, so every later step
(the gate's corroboration, the page's links and values) reads them from the run,
whichever replica picks it up and however long after the webhook.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import msgspec

from remediator.models import GrafanaDetails

# Said by `check-rules --config` (per rule) and at start when targets.grafana is unset.
GRAFANA_UNCORROBORATED = (
    "an alert from Grafana Alerting (webhook payload version 1) that this matches is"
    " blocked as not_corroborated: targets.grafana is not set"
)


def grafana_alert_fields(occ: Mapping[str, Any]) -> dict[str, Any]:
    """The keys a run's ``alert`` gets from a journaled occurrence beyond the labels:
    nothing for Alertmanager's (runs stored before stay as they were)."""
    if occ.get("source", "alertmanager") != "grafana":
        return {}
    return {"source": "grafana", "grafana": occ.get("grafana") or {}}


def grafana_details(alert: Mapping[str, Any]) -> GrafanaDetails | None:
    """The run's stored Grafana details, typed; None for an Alertmanager alert or a
    stored shape this version cannot read (the page then goes without them)."""
    if alert.get("source") != "grafana":
        return None
    try:
        return msgspec.convert(alert.get("grafana") or {}, GrafanaDetails)
    except msgspec.ValidationError:
        return None


def format_value(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "no value"
    return f"{value:.6g}"


def page_extras(
    alert: Mapping[str, Any],
) -> tuple[list[tuple[str, str]], tuple[tuple[str, str], ...]]:
    """(links, values) a page shows for the alert: Grafana's dashboard, panel and
    silence links when it sent them (empty ones are left out), and the query values
    that fired it, in the order Grafana sent them."""
    details = grafana_details(alert)
    if details is None:
        return [], ()
    links = [
        (text, href)
        for text, href in (
            ("Grafana dashboard", details.dashboard_url),
            ("Grafana panel", details.panel_url),
            ("Silence in Grafana", details.silence_url),
        )
        if href
    ]
    values = tuple((name, format_value(v)) for name, v in details.values.items())
    if not values and details.value_string:
        values = (("valueString", details.value_string),)
    return links, values
