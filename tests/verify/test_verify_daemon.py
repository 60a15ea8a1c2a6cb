"""The daemon verifies in its maintenance loop, handing each poll to a background
task: a webhook in, a mitigation, then Prometheus shows recovery and /metrics says
``held``; no worker waits between polls."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx

from remediator.clients.database import TargetDatabase
from remediator.runbook_api.context import Clients
from remediator.testing import make_alert, make_payload
from tests.engine import _testbook
from tests.engine.conftest import knobs
from tests.helpers import running_daemon
from tests.verify.conftest import Exporter, PrometheusServer

ALERT = make_alert("TestAlert", {"service": "checkout", "severity": "page"})


async def test_daemon_verifies_in_the_background_and_exports_the_outcome(
    exporter: Exporter,
    prometheus: PrometheusServer,
    target_db: TargetDatabase,
    pg_schema_dsn: str,
    tmp_path: Path,
) -> None:
    exporter.set(0)
    rules = tmp_path / "rules.yaml"
    rules.write_text(_testbook.rules(verify="{query: 'max(verify_probe) > 0', within: 60s}"))
    config = {
        "mode": "live",
        "rules": str(rules),
        "state": pg_schema_dsn,
        "engine": {"poll_interval": "0.2s"},
        "targets": {"prometheus": {"url": prometheus.url, "corroborate": False}},
    }
    async with running_daemon(
        config, registry=_testbook.registry(), clients=Clients(database=target_db)
    ) as d:
        async with httpx.AsyncClient(base_url=d.url) as http:
            r = await http.post("/api/v1/alerts", json=make_payload(ALERT))
            assert r.status_code == 202
            store = d.daemon.store
            deadline = time.monotonic() + 30
            while not [s for s in await store.list_runs(10) if s["verify_at"] is not None]:
                assert time.monotonic() < deadline, "no verification was scheduled"
                await asyncio.sleep(0.2)
            [run] = await store.list_runs(10)
            assert await knobs(target_db) == {"throttle": 1, "replicas": 3, "other": 7}
            exporter.set(4)  # recovered
            held = {"runbook": "RB-T", "outcome": "held"}
            deadline = time.monotonic() + 30
            while d.sample("remediator_verifications_total", held) < 1:
                assert time.monotonic() < deadline, await store.steps_for_run(run["id"], "verify")
                await asyncio.sleep(0.2)
            text = (await http.get("/metrics")).text
            assert 'remediator_verifications_total{outcome="held",runbook="RB-T"} 1.0' in text
            assert 'remediator_verifications_total{outcome="failed",runbook="RB-T"} 0.0' in text
            [row] = await store.steps_for_run(run["id"], "verify")
            assert (row["state"], row["result"]["data"]["last_value"]) == ("done", "4")
            assert (await store.get_run(run["id"]))["verify_at"] is None
