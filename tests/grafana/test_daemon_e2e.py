"""End to end through a real daemon process: Grafana Alerting's webhook in, RB-02 out.

``remediator serve`` (``sys.executable -m remediator serve --config ...``, live mode,
Postgres state) receives Grafana's contact point bodies, with ``targets.grafana``
pointing at the fake Grafana alert-state API. In order, on one daemon:
  (a) a firing body of two alerts (offsets, fractions, one with dashboard and panel)
      that Grafana fires: both providers' DawsOS alert rows are paused;
  (b) the resolve arrives while Grafana still shows the alerts firing: nothing is
      undone, the undo waits (deferred, not_corroborated);
  (c) Grafana stops firing them: the deferred undo happens at the next recheck.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from remediator.engine.engine import UNDO_RECHECK
from tests.grafana.fake_grafana import FakeGrafana
from tests.grafana.payloads import alert, payload, resolved
from tests.reliability._bench import PROVIDER_ALERT, RULE, world
from tests.reliability._cluster import WEBHOOK_TOKEN, Cluster, settle

SA_TOKEN = "glsa_fake_service_account_token_e2e_0123"
MARGIN = 8.0  # seconds past UNDO_RECHECK: maintenance poll, the status page, the commit


async def _runs(dsn: str) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(dsn)
    try:
        return [dict(r) for r in await conn.fetch("SELECT * FROM runs WHERE rule = $1", RULE)]
    finally:
        await conn.close()


async def _step_states(dsn: str, phase: str, name: str) -> list[str]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT state FROM steps WHERE phase = $1 AND name = $2", phase, name
        )
        return [r["state"] for r in rows]
    finally:
        await conn.close()


@pytest.mark.timeout(180)
async def test_grafana_webhook_to_mitigation_and_corroborated_undo_through_a_real_daemon(
    request: pytest.FixtureRequest, pg_schema_dsn: str, tmp_path: Path
) -> None:
    grafana = FakeGrafana(SA_TOKEN)
    await grafana.start()
    cluster: Cluster | None = None
    try:
        async with world(request.config, 2) as w:
            labels = [
                {"alertname": PROVIDER_ALERT, "service": "dawsos", "provider": p}
                for p in w.providers
            ]
            for ls in labels:
                grafana.set_state(ls, "Alerting")
            targets = {
                **w.targets(),
                "grafana": {"url": grafana.url, "token": SA_TOKEN, "timeout": "5s"},
            }
            cluster = Cluster(
                tmp_path, pg_schema_dsn, rules_yaml=w.rules_yaml(), targets=targets, replicas=1
            )
            await cluster.start_all()
            url = cluster.replicas[0].url + "/api/v1/alerts"
            alerts = [
                alert(
                    labels[0],
                    "2022-01-01T12:00:00.123456+02:00",
                    dashboard_url="http://grafana.test/d/p",
                    panel_url="http://grafana.test/d/p?viewPanel=2",
                ),
                alert(labels[1], "2022-01-01T10:00:00.5Z"),
            ]
            auth = {"Authorization": f"Bearer {WEBHOOK_TOKEN}"}
            async with httpx.AsyncClient(timeout=30) as client:
                # (a) Grafana fires both: mitigated.
                r = await client.post(url, json=payload(alerts), headers=auth)
                assert r.status_code == 202 and r.json()["journaled"] == 2, r.text
                await settle(pg_schema_dsn, timeout=60)
                paused = await w.changes()
                assert sorted((c["row_id"], c["new"]) for c in paused) == sorted(
                    (f"{p}-{k}", "false") for p in w.providers for k in range(2)
                )
                runs = await _runs(pg_schema_dsn)
                assert (
                    sorted((r["state"], r["outcome"]) for r in runs)
                    == [("waiting", "mitigated")] * 2
                )
                assert sorted(r["starts_at"] for r in runs) == [
                    "2022-01-01T10:00:00.123456Z",
                    "2022-01-01T10:00:00.5Z",
                ]

                # (b) The resolve while Grafana still fires them: the undo waits.
                ends = ["2022-01-01T12:05:00+02:00", "2022-01-01T10:05:00Z"]
                body = payload([resolved(a, e) for a, e in zip(alerts, ends, strict=True)])
                r = await client.post(url, json=body, headers=auth)
                assert r.status_code == 202 and r.json()["journaled"] == 2, r.text
                deadline = time.monotonic() + 30
                while await _step_states(pg_schema_dsn, "resolve", "replay_dlq") != [
                    "deferred",
                    "deferred",
                ]:
                    assert time.monotonic() < deadline, cluster.tail(0)
                    await asyncio.sleep(0.2)
                await asyncio.sleep(2.0)  # ten maintenance passes
                assert len(await w.changes()) == len(paused)
                assert await _step_states(pg_schema_dsn, "undo", "pause_alerts") == []

                # (c) Grafana stops firing them: undone at the recheck.
                for ls in labels:
                    grafana.set_state(ls, "Normal")
                deadline = time.monotonic() + UNDO_RECHECK + MARGIN
                while len(await w.changes()) < 2 * len(paused):
                    assert time.monotonic() < deadline, cluster.tail(0)
                    await asyncio.sleep(0.25)
                await settle(pg_schema_dsn, timeout=60)
            back = [c for c in await w.changes() if c["new"] == "true"]
            assert sorted(c["row_id"] for c in back) == sorted(c["row_id"] for c in paused)
            runs = await _runs(pg_schema_dsn)
            assert [(r["state"], r["undo_state"]) for r in runs] == [("done", "done")] * 2
            assert grafana.refused == 0 and grafana.requests >= 4
            assert cluster.count_events("grafana_not_corroborated") == 0
            assert cluster.internal_errors() == []
    finally:
        if cluster is not None:
            await cluster.close()
        await grafana.stop()
