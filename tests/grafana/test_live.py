"""Grafana alerts through a rule and a runbook in LIVE mode, and back on resolve.

The daemon runs in this process with the shipped runbooks (RB-02, provider outage)
against a fresh DawsOS database on the real Postgres, whose triggers log every change
(``rel_changes``); the state store is Postgres too. Corroboration goes through the
fake Grafana alert-state API (``tests/grafana/fake_grafana.py``) when
``targets.grafana`` names it, and fails closed when it does not.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from remediator.daemon.clients import open_clients
from remediator.paging import text
from remediator.paging.base import PageEvent
from remediator.runbook_api.registry import load_entry_points
from remediator.settings import from_mapping
from tests.grafana.fake_grafana import FakeGrafana
from tests.grafana.payloads import alert, payload, resolved
from tests.helpers import Running, running_daemon
from tests.reliability._bench import PROVIDER_ALERT, RULE, World, rows_of, world
from tests.reliability._cluster import settle

TOKEN = "grafana-contact-point-token-0123"
SA_TOKEN = "glsa_fake_service_account_token_0123456789"
DASHBOARD = "http://grafana.test/d/dawsos-providers?orgId=1"
PANEL = "http://grafana.test/d/dawsos-providers?orgId=1&viewPanel=3"


def labels(w: World, i: int, **extra: str) -> dict[str, str]:
    return {
        "alertname": PROVIDER_ALERT,
        "service": "dawsos",
        "provider": w.providers[i],
        "grafana_folder": "DawsOS",
        **extra,
    }


@contextlib.asynccontextmanager
async def daemon(
    w: World, state_dsn: str, tmp_path: Path, grafana: FakeGrafana | None
) -> AsyncIterator[Running]:
    rules = tmp_path / "rules.yaml"
    rules.write_text(w.rules_yaml())
    targets = w.targets()
    if grafana is not None:
        targets["grafana"] = {"url": grafana.url, "token": SA_TOKEN, "timeout": "5s"}
    cfg = {
        "mode": "live",
        "state": state_dsn,
        "rules": str(rules),
        "auth": {"webhook_tokens": [TOKEN]},
        "targets": targets,
        "engine": {"lease": "5s", "poll_interval": "0.2s"},
    }
    clients, closers = await open_clients(from_mapping(cfg, env={}))
    try:
        async with running_daemon(cfg, registry=load_entry_points(), clients=clients) as d:
            yield d
    finally:
        for close in closers:
            await close()


async def send(d: Running, body: dict[str, Any]) -> None:
    async with httpx.AsyncClient(base_url=d.url, timeout=30) as c:
        r = await c.post("/api/v1/alerts", json=body, headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 202, r.text


async def run_of(state_dsn: str, provider: str) -> dict[str, Any]:
    conn = await asyncpg.connect(state_dsn)
    try:
        rows = await conn.fetch("SELECT * FROM runs WHERE rule = $1", RULE)
        [run] = [
            dict(r)
            for r in rows
            if f'"provider": "{provider}"' in r["alert"] or f'"provider":"{provider}"' in r["alert"]
        ]
        steps = await conn.fetch("SELECT * FROM steps WHERE run_id = $1", run["id"])
        run["steps"] = {(s["phase"], s["name"]): dict(s) for s in steps}
        return run
    finally:
        await conn.close()


def pages_of(d: Running, run_id: str) -> list[PageEvent]:
    return [e for e in d.pager.sent if e.content.dedup_key == f"remediator/{run_id}"]


@pytest.mark.timeout(120)
async def test_grafana_alerts_grafana_fires_are_mitigated_paged_with_links_and_undone_on_resolve(
    request: pytest.FixtureRequest, pg_schema_dsn: str, tmp_path: Path
) -> None:
    grafana = FakeGrafana(SA_TOKEN)
    await grafana.start()
    try:
        async with world(request.config, 2) as w, daemon(w, pg_schema_dsn, tmp_path, grafana) as d:
            first, second = labels(w, 0), labels(w, 1)
            grafana.set_state(first, "Alerting")
            grafana.set_state(second, "Alerting")
            linked = alert(
                first, "2022-01-01T12:00:00.25+02:00", dashboard_url=DASHBOARD, panel_url=PANEL
            )
            bare = alert(second, "2022-01-01T05:30:00.000001-04:30", values={"B": 61.5})
            # Two alerts in one body; Grafana sends no fingerprint for the second.
            await send(d, payload([linked, bare]))
            await settle(pg_schema_dsn, timeout=60)

            paused = [(c["row_id"], c["new"]) for c in await w.changes()]
            assert sorted(paused) == [
                (r, "false") for r in rows_of(w.providers[0]) + rows_of(w.providers[1])
            ]
            run0, run1 = (
                await run_of(pg_schema_dsn, w.providers[0]),
                await run_of(pg_schema_dsn, w.providers[1]),
            )
            for run in (run0, run1):
                assert (run["state"], run["outcome"], run["blocked_by"]) == (
                    "waiting",
                    "mitigated",
                    None,
                )
                assert run["steps"][("fire", "pause_alerts")]["outcome"] == "applied"
            assert run0["starts_at"] == "2022-01-01T10:00:00.25Z"
            assert run1["starts_at"] == "2022-01-01T10:00:00.000001Z"
            assert grafana.requests >= 2 and grafana.refused == 0

            # The pages link the dashboard and panel when Grafana sent them, and carry
            # the values that fired the alert.
            [page0] = [e for e in pages_of(d, run0["id"]) if e.action == "trigger"][:1]
            links0 = dict((t, h) for t, h in page0.content.links)
            assert links0["Grafana dashboard"] == DASHBOARD and links0["Grafana panel"] == PANEL
            assert links0["Silence in Grafana"].startswith("http://grafana.test/alerting/silence")
            assert page0.content.values == (("B", "44.2394"), ("C", "1"))
            assert "Values: B=44.2394, C=1" in text.body(page0.content)
            assert PageEvent.from_json(page0.to_json()).content.values == page0.content.values
            [page1] = [e for e in pages_of(d, run1["id"]) if e.action == "trigger"][:1]
            links1 = [t for t, _ in page1.content.links]
            assert "Grafana dashboard" not in links1 and "Grafana panel" not in links1
            assert page1.content.values == (("B", "61.5"),)

            # Grafana stops firing both and sends the resolve: both undone, as for
            # Alertmanager.
            grafana.set_state(first, "Normal")
            grafana.set_state(second, "Normal")
            await send(
                d,
                payload(
                    [
                        resolved(linked, "2022-01-01T12:10:00+02:00"),
                        resolved(bare, "2022-01-01T10:10:00Z"),
                    ]
                ),
            )
            await settle(pg_schema_dsn, timeout=60)
            back = [(c["row_id"], c["new"]) for c in await w.changes() if c["new"] == "true"]
            assert sorted(back) == [
                (r, "true") for r in rows_of(w.providers[0]) + rows_of(w.providers[1])
            ]
            for provider in w.providers:
                run = await run_of(pg_schema_dsn, provider)
                assert (run["state"], run["undo_state"]) == ("done", "done")
                assert run["steps"][("undo", "pause_alerts")]["outcome"] == "rolled_back"
    finally:
        await grafana.stop()


@pytest.mark.timeout(120)
async def test_grafana_alerts_grafana_does_not_fire_are_blocked_not_corroborated(
    request: pytest.FixtureRequest, pg_schema_dsn: str, tmp_path: Path
) -> None:
    grafana = FakeGrafana(SA_TOKEN)
    await grafana.start()
    try:
        async with world(request.config, 3) as w, daemon(w, pg_schema_dsn, tmp_path, grafana) as d:
            grafana.set_state(labels(w, 0), "Normal")
            grafana.set_state(labels(w, 1), "Pending")
            grafana.set_state(labels(w, 2), "Alerting")
            forged = [
                alert(labels(w, 0), "2022-01-01T12:00:00+02:00"),  # Grafana: Normal
                alert(labels(w, 1), "2022-01-01T12:00:01+02:00"),  # Grafana: Pending
                # Grafana fires provider 2, but not with this extra label.
                alert(labels(w, 2, severity="page"), "2022-01-01T12:00:02+02:00"),
            ]
            await send(d, payload(forged))
            await settle(pg_schema_dsn, timeout=60)
            assert await w.changes() == []
            reasons = {}
            for provider in w.providers:
                run = await run_of(pg_schema_dsn, provider)
                assert (run["outcome"], run["blocked_by"]) == ("blocked", "not_corroborated")
                step = run["steps"][("fire", "pause_alerts")]
                assert step["outcome"] == "skipped"
                reasons[provider] = step["reason"]
            assert "Grafana shows ProviderErrorRateHigh Normal" in reasons[w.providers[0]]
            assert "Grafana shows ProviderErrorRateHigh Pending" in reasons[w.providers[1]]
            assert "labels that differ: severity" in reasons[w.providers[2]]
            assert d.sample("remediator_guard_blocks_total", {"guard": "not_corroborated"}) == 3
    finally:
        await grafana.stop()


@pytest.mark.timeout(120)
async def test_without_targets_grafana_a_grafana_alert_is_not_corroborated(
    request: pytest.FixtureRequest, pg_schema_dsn: str, tmp_path: Path
) -> None:
    """Fail closed: nothing can witness a Grafana-managed alert, so nothing acts on it."""
    async with world(request.config, 1) as w, daemon(w, pg_schema_dsn, tmp_path, None) as d:
        await send(d, payload([alert(labels(w, 0), "2022-01-01T12:00:00.5+02:00")]))
        await settle(pg_schema_dsn, timeout=60)
        assert await w.changes() == []
        run = await run_of(pg_schema_dsn, w.providers[0])
        assert (run["outcome"], run["blocked_by"]) == ("blocked", "not_corroborated")
        reason = run["steps"][("fire", "pause_alerts")]["reason"]
        assert "targets.grafana is not set" in reason, reason
        assert d.sample("remediator_guard_blocks_total", {"guard": "not_corroborated"}) == 1


@pytest.mark.timeout(120)
async def test_a_wrong_service_account_token_blocks_rather_than_acts(
    request: pytest.FixtureRequest, pg_schema_dsn: str, tmp_path: Path
) -> None:
    grafana = FakeGrafana("glsa_another_token_that_is_not_ours_0000")
    await grafana.start()
    try:
        async with world(request.config, 1) as w, daemon(w, pg_schema_dsn, tmp_path, grafana) as d:
            grafana.set_state(labels(w, 0), "Alerting")
            await send(d, payload([alert(labels(w, 0), "2022-01-01T12:00:00Z")]))
            await settle(pg_schema_dsn, timeout=60)
            assert await w.changes() == []
            assert grafana.refused >= 1
            run = await run_of(pg_schema_dsn, w.providers[0])
            assert (run["outcome"], run["blocked_by"]) == ("blocked", "not_corroborated")
            reason = run["steps"][("fire", "pause_alerts")]["reason"]
            assert "Grafana could not be asked" in reason and "HTTP 401" in reason
            assert SA_TOKEN not in reason
            del d
    finally:
        await grafana.stop()


@pytest.mark.timeout(120)
async def test_a_body_with_only_the_required_fields_is_mitigated_and_undone_on_resolve(
    request: pytest.FixtureRequest, pg_schema_dsn: str, tmp_path: Path
) -> None:
    """No orgId, title, state, message, values, URLs, annotations, endsAt, generatorURL
    nor fingerprint (older Grafana versions, or a hand-made contact point template):
    the same run, with a page that has no Grafana link and no values, and the resolve,
    just as bare, undoes it (its derived fingerprint is the firing's)."""
    grafana = FakeGrafana(SA_TOKEN)
    await grafana.start()
    try:
        async with world(request.config, 1) as w, daemon(w, pg_schema_dsn, tmp_path, grafana) as d:
            ls = labels(w, 0)
            grafana.set_state(ls, "Alerting")
            bare = {"status": "firing", "labels": ls, "startsAt": "2022-01-01T12:00:00+01:00"}
            await send(d, {"version": "1", "status": "firing", "alerts": [bare]})
            await settle(pg_schema_dsn, timeout=60)
            assert sorted(c["new"] for c in await w.changes()) == ["false"] * len(
                rows_of(w.providers[0])
            )
            run = await run_of(pg_schema_dsn, w.providers[0])
            assert (run["state"], run["outcome"]) == ("waiting", "mitigated")
            assert run["starts_at"] == "2022-01-01T11:00:00Z"
            [page] = [e for e in pages_of(d, run["id"]) if e.action == "trigger"][:1]
            assert not [t for t, _ in page.content.links if "Grafana" in t], page.content.links
            assert page.content.values == ()
            assert "Values:" not in text.body(page.content)

            grafana.set_state(ls, "Normal")
            gone = {**bare, "status": "resolved"}
            await send(d, {"version": "1", "status": "resolved", "alerts": [gone]})
            await settle(pg_schema_dsn, timeout=60)
            back = [c["row_id"] for c in await w.changes() if c["new"] == "true"]
            assert sorted(back) == sorted(rows_of(w.providers[0]))
            run = await run_of(pg_schema_dsn, w.providers[0])
            assert (run["state"], run["undo_state"]) == ("done", "done")
            assert run["steps"][("undo", "pause_alerts")]["outcome"] == "rolled_back"
    finally:
        await grafana.stop()
