"""Grafana Alerting's webhook contact point payload (``"version": "1"``).

Grafana's notifier embeds Alertmanager's template data, so the shape is version 4's
plus ``orgId``, ``title``, ``state``, ``message`` and, per alert, ``values``,
``silenceURL``, ``dashboardURL`` and ``panelURL``. Each alert becomes the same
``Occurrence`` an Alertmanager alert does: the same key (fingerprint, canonical UTC
startsAt, status), so the same dedupe, rules and runbooks apply. What is Grafana's
own rides along as ``GrafanaDetails`` (links and values for the page), and the
occurrence is marked ``source="grafana"``: the gate then asks Grafana, not
Prometheus, whether the alert is really firing.

Fingerprint: Grafana always sends one (Alertmanager's label fingerprint). A sender
that leaves it out or empty gets one derived the same way Prometheus and Alertmanager
derive theirs (FNV-1a 64 over the sorted label names and values, each followed by a
0xff byte), so two deliveries of one label set always share a key; the details say
it was derived.
"""

from __future__ import annotations

import math
from typing import Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field

from remediator.bounds import MAX_PROBLEMS, BoundsExceeded, LabelBounds, Problem
from remediator.models import (
    MAX_TRUNCATED_ALERTS,
    ZERO_TIME,
    Delivery,
    GrafanaDetails,
    LabelName,
    Occurrence,
    Text,
    Timestamp,
)

_FNV_OFFSET = 14695981039346656037
_FNV_PRIME = 1099511628211
_MASK = (1 << 64) - 1
_SEPARATOR = 0xFF


def labels_fingerprint(labels: dict[str, str]) -> str:
    """Prometheus's ``LabelSet.Fingerprint`` (FNV-1a 64, 16 hex digits)."""
    h = _FNV_OFFSET
    for name in sorted(labels):
        for part in (name, labels[name]):
            for byte in part.encode("utf-8", "surrogatepass"):
                h = ((h ^ byte) * _FNV_PRIME) & _MASK
            h = ((h ^ _SEPARATOR) * _FNV_PRIME) & _MASK
    return f"{h:016x}"


class GrafanaAlert(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    status: Literal["firing", "resolved"]
    labels: dict[LabelName, Text]
    annotations: dict[Text, Text] = Field(default_factory=dict)
    startsAt: Timestamp
    endsAt: Timestamp = ZERO_TIME
    generatorURL: Text = ""
    # Empty or absent: derived from the labels (see the module docstring).
    fingerprint: str = Field(default="", pattern=r"^[0-9a-f]{0,32}$")
    silenceURL: Text = ""
    dashboardURL: Text = ""
    panelURL: Text = ""
    # Grafana sends null for an alert with no values (a NoData or Error alert).
    values: dict[Text, float | None] | None = None
    valueString: Text = ""

    @property
    def alertname(self) -> str:
        return self.labels.get("alertname", "")


class GrafanaPayload(BaseModel):
    """Strict where the engine depends on a field; optional where Grafana versions
    differ (``values`` is 9.x+, ``orgId`` and ``title`` 8.x+)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    version: Literal["1"]
    status: Literal["firing", "resolved"]
    alerts: list[GrafanaAlert]
    receiver: Text = ""
    groupKey: Text = ""
    orgId: int = Field(default=0, ge=0)
    title: Text = ""
    state: Text = ""
    message: Text = ""
    groupLabels: dict[Text, Text] = Field(default_factory=dict)
    commonLabels: dict[Text, Text] = Field(default_factory=dict)
    commonAnnotations: dict[Text, Text] = Field(default_factory=dict)
    externalURL: Text = ""
    truncatedAlerts: int = Field(default=0, ge=0, le=MAX_TRUNCATED_ALERTS)


def _check_values(payload: GrafanaPayload, bounds: LabelBounds) -> None:
    """``values`` are stored with the occurrence and shown on pages: bounded like labels."""
    problems: list[Problem] = []
    for i, alert in enumerate(payload.alerts):
        values = alert.values or {}
        if len(values) > bounds.max_labels:
            problems.append(
                Problem(
                    f"alerts.{i}.values",
                    f"{len(values)} entries; the limit is {bounds.max_labels} (limits.max_labels)",
                )
            )
        for name in values:
            if len(name.encode("utf-8", "surrogatepass")) > bounds.max_bytes:
                problems.append(
                    Problem(
                        f"alerts.{i}.values",
                        f"a name is over {bounds.max_bytes} bytes (limits.max_label_bytes)",
                    )
                )
        if len(problems) >= MAX_PROBLEMS:
            break
    if problems:
        raise BoundsExceeded(problems[:MAX_PROBLEMS])


def _details(alert: GrafanaAlert, org_id: int, derived: bool) -> GrafanaDetails:
    # NaN and infinities are not JSON (Postgres's json type refuses them): kept as None.
    values = {
        k: (v if v is not None and math.isfinite(v) else None)
        for k, v in (alert.values or {}).items()
    }
    return GrafanaDetails(
        org_id=org_id,
        dashboard_url=alert.dashboardURL,
        panel_url=alert.panelURL,
        silence_url=alert.silenceURL,
        values=values,
        value_string=alert.valueString,
        fingerprint_derived=derived,
    )


def occurrences(payload: GrafanaPayload, received_at: float) -> list[Occurrence]:
    """One occurrence per alert, repeats inside the payload dropped (as for version 4)."""
    seen: set[tuple[str, str, str]] = set()
    out: list[Occurrence] = []
    for a in payload.alerts:
        labels = dict(a.labels)
        fingerprint = a.fingerprint or labels_fingerprint(labels)
        occ = Occurrence(
            fingerprint,
            a.startsAt,
            a.status,
            a.alertname,
            labels,
            dict(a.annotations),
            a.endsAt,
            a.generatorURL,
            payload.groupKey,
            received_at,
            source="grafana",
            grafana=_details(a, payload.orgId, derived=not a.fingerprint),
        )
        if occ.key not in seen:
            seen.add(occ.key)
            out.append(occ)
    return out


def _version_of(body: bytes) -> object:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return doc.get("version") if isinstance(doc, dict) else None


def decode_grafana(
    body: bytes, received_at: float, bounds: LabelBounds | None = None
) -> Delivery | None:
    """The Delivery of a Grafana body, or None when the body is not one (the caller's
    Alertmanager decoder then has the last word, errors included).

    Raises pydantic's ValidationError for a version "1" body the model refuses and
    BoundsExceeded for one that breaks a bound.
    """
    if _version_of(body) != "1":
        return None
    payload = GrafanaPayload.model_validate_json(body)
    if bounds is not None:
        bounds.check(payload)
        _check_values(payload, bounds)
    return Delivery(
        payload.groupKey,
        len(payload.alerts),
        payload.truncatedAlerts,
        occurrences(payload, received_at),
    )


VERSION_MESSAGE = "Input should be '4' (Alertmanager) or '1' (Grafana Alerting)"


def is_version_error(error: dict[str, object]) -> bool:
    """A schema error about ``version`` alone: its message names both accepted versions."""
    return error.get("loc") == ("version",) and error.get("type") == "literal_error"
