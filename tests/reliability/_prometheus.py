"""A real Prometheus (the Debian 2.42 binary) on loopback that fires the alerts a test chooses.

The witness the gate asks before a mutation (``targets.prometheus``) is Prometheus's
own ``ALERTS{alertstate="firing"}``. Here it is the real binary with a rule file of
``expr: vector(1)`` alerting rules (``for: 0s``, evaluated every second), so a test
decides exactly which alerts, with which labels, Prometheus fires:

    prom = LoopbackPrometheus(tmp_path, prometheus_binary(request.config),
                              external_labels={"prom": "loop-1"})
    await prom.start([fires("ProviderErrorRateHigh", provider="rel0000")])
    await prom.wait_firing({"alertname": "ProviderErrorRateHigh", "provider": "rel0000"})
    await prom.set_alerts([])          # rewrite the rule file and POST /-/reload
    await prom.wait_not_firing(...)     # the stale marker is written at the next evaluation
    prom.stop()

Listens on 127.0.0.1 only, scrapes nothing, and is stopped (SIGTERM, then SIGKILL) by
``stop()``; the kernel SIGTERMs it if pytest dies (Service's PDEATHSIG).
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import free_port
from tests.e2e.e2e_support import Service, environ, wait_http_ok
from tests.support import root_conftest

Labels = Mapping[str, str]


def prometheus_binary(config: pytest.Config) -> str:
    """The ``prometheus`` binary; a missing one fails under REMEDIATOR_REQUIRE_SERVICES=1."""
    path = shutil.which("prometheus")
    if path is None:
        root_conftest(config).service_missing(
            "prometheus", FileNotFoundError("prometheus is not on PATH")
        )
        raise AssertionError("unreachable: service_missing fails or skips")
    return path


def fires(alertname: str, **labels: str) -> dict[str, Any]:
    """An alerting rule that fires ``alertname`` with exactly ``labels``, at once."""
    return {"alert": alertname, "expr": "vector(1)", "for": "0s", "labels": dict(labels)}


class LoopbackPrometheus:
    def __init__(
        self, workdir: Path, binary: str, *, external_labels: Labels | None = None
    ) -> None:
        self.home = workdir / "prometheus"
        self.home.mkdir(parents=True, exist_ok=True)
        self.binary = binary
        self.external_labels = dict(external_labels or {})
        self.port = free_port()
        self.rules = self.home / "forged-alerts.yml"
        self.config = self.home / "prometheus.yml"
        self.service = Service(
            "prometheus",
            [
                binary,
                f"--config.file={self.config}",
                f"--storage.tsdb.path={self.home / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--web.enable-lifecycle",  # POST /-/reload
            ],
            cwd=self.home,
            env=environ(),
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _write_rules(self, alerts: Sequence[Mapping[str, Any]]) -> None:
        groups = [{"name": "forged", "interval": "1s", "rules": [dict(a) for a in alerts]}]
        self.rules.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))

    async def start(self, alerts: Sequence[Mapping[str, Any]]) -> None:
        self._write_rules(alerts)
        config = {
            "global": {
                "scrape_interval": "15s",
                "evaluation_interval": "1s",
                "external_labels": self.external_labels,
            },
            "rule_files": [str(self.rules)],
            "scrape_configs": [],
        }
        self.config.write_text(yaml.safe_dump(config, sort_keys=False))
        self.service.start()
        await wait_http_ok(self.url + "/-/ready", self.service)

    async def set_alerts(self, alerts: Sequence[Mapping[str, Any]]) -> None:
        """Replace the alerting rules and reload (alerts no longer defined stop firing)."""
        self._write_rules(alerts)
        async with httpx.AsyncClient(timeout=10) as c:
            r = await c.post(self.url + "/-/reload")
        assert r.status_code == 200, f"reload: HTTP {r.status_code} {r.text}"

    async def firing(self, alertname: str | None = None) -> list[dict[str, str]]:
        """The label sets of the firing ``ALERTS`` series (less __name__ and alertstate)."""
        name = f',alertname="{alertname}"' if alertname else ""
        async with httpx.AsyncClient(timeout=5) as c:
            r = await c.get(
                self.url + "/api/v1/query",
                params={"query": f'ALERTS{{alertstate="firing"{name}}}'},
            )
        assert r.status_code == 200, r.text
        return [
            {k: v for k, v in s["metric"].items() if k not in ("__name__", "alertstate")}
            for s in r.json()["data"]["result"]
        ]

    async def _wait(self, labels: Labels, want: bool, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while True:
            now = [dict(s) for s in await self.firing(labels.get("alertname"))]
            if (dict(labels) in now) == want:
                return time.monotonic()
            if time.monotonic() > deadline or not self.service.running:
                raise AssertionError(
                    f"ALERTS {'never showed' if want else 'still shows'} {dict(labels)}"
                    f" firing after {timeout} s (firing: {now})\n{self.service.tail()}"
                )
            await asyncio.sleep(0.1)

    async def wait_firing(self, labels: Labels, timeout: float = 20.0) -> float:
        """Until ``ALERTS`` shows exactly ``labels`` firing; returns the monotonic time."""
        return await self._wait(labels, True, timeout)

    async def wait_not_firing(self, labels: Labels, timeout: float = 20.0) -> float:
        return await self._wait(labels, False, timeout)

    def stop(self) -> None:
        self.service.stop()
