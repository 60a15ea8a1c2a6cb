"""Grafana as a witness: does Grafana's own alert state show this alert firing?

An alert from Grafana Alerting was evaluated by Grafana, so Prometheus's ``ALERTS``
has no series for it; the evidence a leaked webhook token cannot forge is Grafana's
Prometheus-compatible alert list, ``GET /api/prometheus/grafana/api/v1/alerts``
(a service account token with alert-rule read access, sent as Bearer). It answers
``{"status": "success", "data": {"alerts": [{"labels", "annotations", "state",
"activeAt", "value"}]}}`` where ``state`` is Grafana's instance state (``Alerting``,
``Pending``, ``Normal``, ``NoData``, ``Error``; newer versions may add a reason in
parentheses, ``Alerting (NoData)``).

Labels: Grafana keeps private labels (``__alert_rule_uid__`` and the like, names
starting ``__``) out of notifications, so an instance matches when its labels less
those equal the webhook's labels exactly. An extra label in the payload (a forged
one) therefore fails the check, as it does against ``ALERTS``.
"""

from __future__ import annotations

from collections.abc import Mapping

import httpx

from remediator.clients.prometheus import Witness, api_data
from remediator.errors import TargetUnavailable

ALERTS_PATH = "/api/prometheus/grafana/api/v1/alerts"


def _is_firing(state: object) -> bool:
    text = str(state).strip().lower()
    return text.startswith("alerting") or text == "firing"


def _public(labels: Mapping[object, object]) -> dict[str, str]:
    return {str(k): str(v) for k, v in labels.items() if not str(k).startswith("__")}


class GrafanaClient:
    def __init__(self, url: str, token: str, *, timeout: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.AsyncClient(
            timeout=timeout,
            follow_redirects=False,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _alerts(self) -> list[object]:
        data = await api_data(self._http, "grafana", f"{self.url}{ALERTS_PATH}", ALERTS_PATH)
        alerts = data.get("alerts") if isinstance(data, dict) else None
        if not isinstance(alerts, list):
            raise TargetUnavailable("grafana", f"{ALERTS_PATH}: no data.alerts list")
        return alerts

    async def alert_firing(self, labels: Mapping[str, str]) -> Witness:
        """Whether Grafana has an alert instance with exactly these labels, Alerting."""
        alertname = labels.get("alertname", "")
        claimed = dict(labels)
        same_name: list[tuple[dict[str, str], str]] = []
        for item in await self._alerts():
            if not isinstance(item, dict) or not isinstance(item.get("labels"), dict):
                continue
            seen = _public(item["labels"])
            if seen.get("alertname") != alertname:
                continue
            state = str(item.get("state", ""))
            if seen == claimed:
                if _is_firing(state):
                    return Witness(True, f"Grafana shows {alertname} {state}")
                return Witness(False, f"Grafana shows {alertname} {state or 'with no state'}")
            same_name.append((seen, state))
        if not same_name:
            return Witness(False, f"Grafana has no {alertname} alert instance")
        # The closest instance says which labels differ (a forged extra label, say).
        differ = min(
            (
                sorted({k for k, _ in set(seen.items()) ^ set(claimed.items())})
                for seen, _ in same_name
            ),
            key=len,
        )
        return Witness(
            False,
            f"Grafana has {len(same_name)} {alertname} instance(s), none with these labels"
            f" (labels that differ: {', '.join(differ[:10])})",
        )
