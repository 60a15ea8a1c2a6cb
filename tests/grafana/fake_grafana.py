"""A stand-in for Grafana's Prometheus-compatible alert state API, on loopback.

``GET /api/prometheus/grafana/api/v1/alerts`` answers the documented shape,
``{"status": "success", "data": {"alerts": [{"labels", "annotations", "state",
"activeAt", "value"}]}}``, with Grafana's instance states (``Alerting``, ``Normal``,
...), and only to a request bearing the service account token (401 otherwise, as
Grafana answers). Each instance carries Grafana's private ``__alert_rule_uid__`` label,
which Grafana keeps out of its notifications.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

ALERTS_PATH = "/api/prometheus/grafana/api/v1/alerts"


class FakeGrafana:
    def __init__(self, token: str) -> None:
        self.token = token
        self.instances: list[dict[str, Any]] = []
        self.requests = 0
        self.refused = 0  # requests without the right bearer token
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def set_state(self, labels: Mapping[str, str], state: str) -> None:
        """Grafana's instance of this label set is now in ``state`` (replacing any)."""
        self.instances = [i for i in self.instances if _public(i["labels"]) != dict(labels)]
        self.instances.append(
            {
                "labels": {**labels, "__alert_rule_uid__": "dawsos-rule-1"},
                "annotations": {"summary": "from the fake Grafana"},
                "state": state,
                "activeAt": "2022-01-01T10:00:00Z",
                "value": "4.4e+01",
            }
        )

    async def _alerts(self, request: web.Request) -> web.Response:
        self.requests += 1
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            self.refused += 1
            return web.json_response({"message": "Unauthorized"}, status=401)
        return web.json_response({"status": "success", "data": {"alerts": self.instances}})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get(ALERTS_PATH, self._alerts)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def _public(labels: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in labels.items() if not k.startswith("__")}
