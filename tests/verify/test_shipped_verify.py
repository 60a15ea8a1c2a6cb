"""The shipped DawsOS rules' ``verify`` queries mean what the rules say, on real data.

A real Prometheus (Debian 2.42) loads the shipped alert rules
(``deploy/prometheus/dawsos-alerts.yml``, for RB-03's recording) and scrapes an
exporter serving DawsOS's input metrics, whose rates the test sets. Each rule's query,
rendered with the alert's labels as the engine renders it, is read with the client and
the truth test verification uses (``PrometheusClient.instant`` read by ``holds``):

    RB-01  pack not fresh -> false; fresh -> true
    RB-02  polygon failing 50% -> false; its errors stop while calls go on -> true;
           fmp, whose restarted process never counted an error (no error series
           exported yet) and serves its calls -> true: no error series is no error
    RB-03  30 notifications/min -> true; a storm of 6,000/min -> false (in this order:
           rate() over [2m] keeps a storm's increase for 2 minutes after it stops)
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web

from remediator.clients.prometheus import EMPTY, PrometheusClient
from remediator.engine import rules as rules_mod
from remediator.engine.verify import holds, render_query
from remediator.runbook_api.registry import load_entry_points
from tests.e2e.e2e_support import eventually
from tests.verify.conftest import running_prometheus

REPO = Path(__file__).resolve().parents[2]
ALERT_RULES = REPO / "deploy" / "prometheus" / "dawsos-alerts.yml"

pytestmark = pytest.mark.timeout(240)


@dataclass
class Counter:
    """A counter whose rate per second the test sets; its value is the integral."""

    rate: float
    value: float = 0.0  # a long-running process: far from 0
    since: float = field(default_factory=time.time)

    def now(self) -> float:
        return self.value + self.rate * (time.time() - self.since)

    def set_rate(self, rate: float) -> None:
        self.value, self.since, self.rate = self.now(), time.time(), rate


@dataclass
class DawsOS:
    """The input metrics of the shipped verify queries, as DawsOS's exporters name them."""

    fresh: float = 0.0
    counters: dict[str, Counter] = field(default_factory=dict)

    def text(self) -> str:
        lines = [
            "# TYPE dawsos_pricing_pack_fresh gauge",
            f"dawsos_pricing_pack_fresh {self.fresh}",
            "# TYPE dawsos_provider_requests_total counter",
            "# TYPE dawsos_notifications_sent_total counter",
        ]
        lines += [f"{series} {c.now():.3f}" for series, c in self.counters.items()]
        return "\n".join(lines) + "\n"


def requests(provider: str, result: str) -> str:
    return f'dawsos_provider_requests_total{{provider="{provider}",result="{result}"}}'


SENT = "dawsos_notifications_sent_total"


@pytest.fixture
async def dawsos(unused_port: int) -> AsyncIterator[tuple[DawsOS, str]]:
    state = DawsOS()

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(text=state.text(), content_type="text/plain")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", unused_port).start()
    try:
        yield state, f"127.0.0.1:{unused_port}"
    finally:
        await runner.cleanup()


def shipped_queries() -> dict[str, str]:
    """One verify query per runbook, from the shipped rules (their rules agree)."""
    ruleset, errors = rules_mod.load(REPO / "rules", load_entry_points())
    assert ruleset is not None, errors
    by_runbook: dict[str, set[str]] = {}
    for rule in ruleset.rules:
        if rule.verify is not None:
            by_runbook.setdefault(rule.runbook, set()).add(rule.verify.query)
    assert set(by_runbook) == {"RB-01", "RB-02", "RB-03"}
    assert all(len(q) == 1 for q in by_runbook.values()), by_runbook
    return {runbook: next(iter(q)) for runbook, q in by_runbook.items()}


async def test_shipped_verify_queries_hold_exactly_when_the_metric_shows_recovery(
    request: pytest.FixtureRequest, tmp_path: Path, dawsos: tuple[DawsOS, str]
) -> None:
    state, address = dawsos
    queries = shipped_queries()
    rb01 = render_query(queries["RB-01"], {"alertname": "PricingPackNotReady"})
    polygon = render_query(queries["RB-02"], {"provider": "polygon"})
    fmp = render_query(queries["RB-02"], {"provider": "fmp"})
    rb03 = render_query(queries["RB-03"], {"alertname": "AlertStorm"})
    # No fresh pack; polygon fails half its calls; fmp's process was restarted: it
    # serves its calls and has never counted an error; the notifier is calm (30/min).
    state.counters = {
        requests("polygon", "ok"): Counter(5.0, 1e6),
        requests("polygon", "error"): Counter(5.0, 1e5),
        requests("fmp", "ok"): Counter(5.0, 1e6),
        SENT: Counter(0.5, 1e6),
    }
    async with running_prometheus(request, tmp_path / "prom", address, [ALERT_RULES]) as prom:
        client = PrometheusClient(prom.url, timeout=2.0)
        try:

            async def rates_seen() -> bool:
                counted = await client.instant(
                    "count(rate(dawsos_provider_requests_total[5m]) > 0) == 3"
                )
                recorded = await client.instant("dawsos:notifications_per_minute > 0")
                return counted.true and recorded.true

            await eventually(rates_seen, "Prometheus to have the rates and the recording")

            async def held(query: str) -> bool:
                return holds(query, await client.instant(query))

            assert not await held(rb01)
            reading = await client.instant(polygon)
            # 50% errors: the comparison filters it out.
            assert not holds(polygon, reading) and reading.value == EMPTY, reading
            assert await held(fmp)  # no error series is no error: {} 0, held
            assert await held(rb03)  # calm: well under 200 a minute

            # A fresh pack; polygon's errors stop while its calls go on; and a storm
            # (6,000 a minute) starts.
            state.fresh = 1.0
            state.counters[requests("polygon", "error")].set_rate(0.0)
            state.counters[requests("polygon", "ok")].set_rate(100.0)
            state.counters[SENT].set_rate(100.0)

            wrong: list[str] = []

            async def settled() -> bool:
                wrong.clear()
                for query, want in ((rb01, True), (polygon, True), (rb03, False), (fmp, True)):
                    reading = await client.instant(query)
                    if holds(query, reading) != want:
                        wrong.append(f"{query}: {reading}")
                return not wrong

            await eventually(
                settled, "the readings to follow the metrics", timeout=90,
                diagnostics=lambda: "\n".join(wrong),
            )  # fmt: skip
            assert (await client.instant("dawsos:notifications_per_minute > 200")).true
        finally:
            await client.aclose()
