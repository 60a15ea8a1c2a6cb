"""End to end: alerts posted to a real Alertmanager reach the real daemon, which changes
the DawsOS database as the runbooks say, pages with what it did, undoes its temporary
fixes on resolve and resolves the page; Prometheus scrapes it all, and every Grafana
panel shows data.

The scenario is one night on the seeded database (tests.fixtures.dawsos):
  1. AlertStorm (RB-03) and PricingPackBuildSlow (RB-01) fire, all providers healthy.
     RB-03 raises cooldowns to 60 min, disables the three storm alerts and leaves two
     steps waiting for approval; RB-01 starts a build Job, which this test completes
     (it plays the Job controller), then marks the new pack fresh.
  2. Polygon goes down: ProviderErrorRateHigh{provider="polygon"} (RB-02, P2) pauses
     the polygon alerts still active and notifies Slack; its cache check fails (the
     cache lost its last-good data), which opens RB-02's circuit (circuit_failures: 1)
     and pages. A second PricingPackBuildSlow (another instance, same pack date) is
     stopped by the cooldown guard.
  3. Polygon recovers and every alert resolves: RB-02 re-enables exactly what it paused
     (never the alert a human disabled) and replays the DLQ; RB-03 restores each
     alert's own cooldown and keeps the offenders disabled; pages are resolved.
  4. Every query of every shipped dashboard returns data from Prometheus.
"""

from __future__ import annotations

import copy
import os
import signal
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from remediator.state.store import StateStore
from tests.e2e.e2e_support import (
    NS,
    AlertmanagerHandle,
    CaptureServer,
    DaemonHandle,
    PromAPI,
    PrometheusHandle,
    alert_labels,
    dashboards,
    eventually,
    finite_values,
    panel_queries,
    query_variables,
    substitute,
)
from tests.fixtures import dawsos as testing_dawsos
from tests.fixtures.kube_api import FakeKubeAPI

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

Snapshot = dict[str, list[dict[str, Any]]]

STORM = set(testing_dawsos.STORM_ALERT_IDS)  # RB-03's top offenders in the seed


def _shipped_exempt_alerts() -> set[str]:
    """What the shipped RB-03 rules never cool down (security and rights notices)."""
    doc = yaml.safe_load((Path(__file__).parents[2] / "rules" / "dawsos.yaml").read_text())
    rb03 = [r["params"] for r in doc["rules"] if r["runbook"] == "RB-03"]
    return {i for params in rb03 for i in params.get("exempt_alerts", ())}


EXEMPT = _shipped_exempt_alerts()
HUMAN_DISABLED = testing_dawsos.HUMAN_DISABLED_ALERT_ID
RAN = ("RB-01", "RB-02", "RB-03")
FALLBACK = " or vector(0)"
# What Grafana puts in for its built-in variables. 5m: wide enough to hold the whole
# scenario, as $__rate_interval does on a dashboard zoomed to the last hour.
BUILTINS = {"__rate_interval": "5m", "__interval": "1m", "__range": "1h"}


def _rfc3339(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _alert(labels: Mapping[str, str], starts: datetime, *, ends: datetime | None = None) -> dict:
    body: dict[str, Any] = {
        "labels": dict(labels),
        "annotations": {"summary": f"{labels['alertname']} (end-to-end test)"},
        "startsAt": _rfc3339(starts),
        "generatorURL": f"http://127.0.0.1/graph?g0.expr={labels['alertname']}",
    }
    if ends is not None:
        body["endsAt"] = _rfc3339(ends)
    return body


async def _post_alerts(http: httpx.AsyncClient, am: AlertmanagerHandle, alerts: list[dict]) -> None:
    r = await http.post(f"{am.url}/api/v2/alerts", json=alerts)
    assert r.status_code == 200, r.text


async def _actions(http: httpx.AsyncClient, daemon: DaemonHandle) -> list[dict[str, Any]]:
    r = await http.get(
        f"{daemon.url}/api/v1/actions",
        params={"limit": "1000"},
        headers={"Authorization": f"Bearer {daemon.operator_token}"},
    )
    assert r.status_code == 200, r.text
    return list(r.json()["actions"])


async def _sample(
    http: httpx.AsyncClient, daemon: DaemonHandle, name: str, labels: Mapping[str, str]
) -> float | None:
    """One sample of the daemon's /metrics, as Prometheus would read it."""
    text = (await http.get(f"{daemon.url}/metrics")).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == dict(labels):
                return float(sample.value)
    return None


def _is_run_page(event: Mapping[str, Any]) -> bool:
    """A run's own page (keyed by its run id), not a circuit or guard notice."""
    run_id = event["payload"]["custom_details"]["details"].get("run_id")
    return bool(event["dedup_key"] == f"remediator/{run_id}")


def _by_id(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in rows}


def _expect(before: Snapshot, table: str, updates: Mapping[str, Mapping[str, Any]]) -> Snapshot:
    """``before`` with exactly these rows of ``table`` (by id) updated."""
    after = copy.deepcopy(before)
    rows = _by_id(after[table])
    assert set(updates) <= set(rows), set(updates) - set(rows)
    for key, change in updates.items():
        rows[key].update(change)
    return after


def _diff(expected: Snapshot, actual: Snapshot) -> str:
    """The rows that differ, table by table (a readable assertion message)."""
    out = []
    for table in expected:
        exp = {str(r): r for r in expected[table]}
        act = {str(r): r for r in actual[table]}
        for key in sorted(exp.keys() - act.keys())[:10]:
            out.append(f"{table}: expected {exp[key]}")
        for key in sorted(act.keys() - exp.keys())[:10]:
            out.append(f"{table}: found    {act[key]}")
    return "\n".join(out)


async def test_alerts_are_mitigated_paged_undone_and_graphed(
    daemon: DaemonHandle,
    alertmanager: AlertmanagerHandle,
    prometheus: PrometheusHandle,
    capture: CaptureServer,
    fake_kube: FakeKubeAPI,
    dawsos_dsn: str,
    dawsos_conn: asyncpg.Connection,
    state_store: StateStore,
) -> None:
    began = time.time()
    tables = list(testing_dawsos.TABLES)
    before = await testing_dawsos.snapshot(dawsos_dsn, tables)
    alerts_before = _by_id(before["alerts"])
    packs_before = {r["date"]: r for r in before["pricing_pack"]}
    today = testing_dawsos.pack_today()  # RB-01's default timezone, as the seed
    yesterday = today - timedelta(days=1)
    polygon = {
        i for i, a in alerts_before.items() if a["condition_json"].get("provider") == "polygon"
    }
    # The seed this scenario relies on.
    assert not alerts_before[HUMAN_DISABLED]["active"] and HUMAN_DISABLED in polygon
    assert STORM & polygon and all(alerts_before[i]["active"] for i in STORM)
    assert packs_before[today]["status"] == "building" and packs_before[yesterday]["is_fresh"]

    def diagnostics() -> str:
        return "\n\n".join(
            [
                f"--- remediator log\n{daemon.service.tail(40)}",
                f"--- alertmanager log\n{alertmanager.service.tail(10)}",
                f"--- captured requests\n{capture.summary()}",
            ]
        )

    async with httpx.AsyncClient(timeout=10.0) as http:
        prom = PromAPI(http, prometheus.url)

        # Prometheus scrapes the daemon, then a SIGHUP reloads the shipped rules (the
        # dashboards' "Rule reloads" panel must see one).
        await eventually(
            lambda: prom.query('remediator_rule_reloads_total{job="remediator"}'),
            "Prometheus to scrape the daemon",
            diagnostics=lambda: prometheus.service.tail(20),
        )
        assert daemon.service.proc is not None
        os.kill(daemon.service.proc.pid, signal.SIGHUP)

        # ---------------------------------------------------------- 1 storm + slow build
        starts = datetime.now(UTC)
        storm = alert_labels("AlertStorm")
        build = alert_labels("PricingPackBuildSlow", instance="scheduler-0", job="scheduler")
        await _post_alerts(http, alertmanager, [_alert(storm, starts), _alert(build, starts)])

        job_name = f"build-pack-{today.isoformat()}-1"

        async def job_created() -> dict[str, Any] | None:
            return fake_kube.get("jobs", NS, job_name)

        job = await eventually(
            job_created, f"RB-01 to create Job {job_name}", diagnostics=diagnostics
        )
        container = job["spec"]["template"]["spec"]["containers"][0]
        assert container["command"] == [
            "python", "-m", "jobs.build_pack", "--date", today.isoformat(), "--force",
        ]  # fmt: skip
        assert job["metadata"]["labels"]["remediator/runbook"] == "RB-01"
        # Play the build: the Job writes the pack, then completes.
        pack_hash = "e2e-" + today.isoformat()
        await dawsos_conn.execute(
            "UPDATE pricing_pack SET status = 'ready', hash = $2 WHERE date = $1", today, pack_hash
        )
        fake_kube.set_job_status(NS, job_name, succeeded=1)

        def triggers_for(runbook: str) -> list[dict[str, Any]]:
            """PagerDuty triggers of the runs of ``runbook`` (keyed by run, not others)."""
            return [
                e
                for e in capture.pagerduty("trigger")
                if e["payload"]["component"] == runbook and _is_run_page(e)
            ]

        async def rb03_paged() -> list[dict[str, Any]]:
            return triggers_for("RB-03")

        await eventually(rb03_paged, "the RB-03 page", diagnostics=diagnostics)

        # ------------------------------------------- 2 polygon down; a second slow build
        capture.down = {"polygon"}
        outage_starts = datetime.now(UTC)
        outage = alert_labels("ProviderErrorRateHigh", provider="polygon")
        await _post_alerts(http, alertmanager, [_alert(outage, outage_starts)])

        async def rb02_notified() -> list[dict[str, Any]]:
            return [m for m in capture.slack() if "[RB-02] ProviderErrorRateHigh" in m["text"]]

        async def rb01_paged() -> list[dict[str, Any]]:
            return triggers_for("RB-01")

        [slack_trigger] = await eventually(
            rb02_notified, "the RB-02 Slack message", diagnostics=diagnostics
        )
        [rb01_trigger] = await eventually(rb01_paged, "the RB-01 page", diagnostics=diagnostics)
        [rb03_trigger] = triggers_for("RB-03")
        actions = await _actions(http, daemon)
        [rb02_run] = {a["run_id"] for a in actions if a["runbook"] == "RB-02"}
        rb02_key = f"remediator/{rb02_run}"

        async def circuit_paged() -> list[dict[str, Any]]:
            return [
                e
                for e in capture.pagerduty("trigger")
                if e["dedup_key"] == "remediator/circuit/RB-02"
            ]

        [circuit_trigger] = await eventually(
            circuit_paged, "the RB-02 circuit page", diagnostics=diagnostics
        )
        rb01_run = rb01_trigger["payload"]["custom_details"]["details"]["run_id"]

        async def rb01_finished() -> bool:
            run = await state_store.get_run(rb01_run)
            return run is not None and run["state"] != "running"

        # The same pack date from another instance, once the first run is over (and its
        # target lock released): the cooldown guard stops it.
        await eventually(rb01_finished, f"RB-01 run {rb01_run} to finish")
        build2_starts = datetime.now(UTC)
        build2 = alert_labels("PricingPackBuildSlow", instance="scheduler-1", job="scheduler")
        await _post_alerts(http, alertmanager, [_alert(build2, build2_starts)])

        async def second_build_blocked() -> bool:
            blocked = {"runbook": "RB-01", "outcome": "blocked"}
            return await _sample(http, daemon, "remediator_runbook_runs_total", blocked) == 1.0

        await eventually(second_build_blocked, "the second RB-01 run", diagnostics=diagnostics)
        cooldown = await _sample(
            http, daemon, "remediator_guard_blocks_total", {"guard": "cooldown"}
        )
        assert cooldown == 1.0

        # The database, whole: exactly the runbooks' changes, nothing else.
        paused_by_rb02 = sorted(i for i in polygon - STORM if alerts_before[i]["active"])
        assert paused_by_rb02, "the seed has active polygon alerts besides the storm"
        fired_alerts = {
            i: {
                "cooldown_minutes": a["cooldown_minutes"]
                if i in EXEMPT
                else max(60, a["cooldown_minutes"]),
                "active": a["active"] and i not in STORM and i not in polygon,
            }
            for i, a in alerts_before.items()
        }
        pack_ids = {r["date"]: r["id"] for r in before["pricing_pack"]}
        packs = {
            pack_ids[today]: {"status": "ready", "hash": pack_hash, "is_fresh": True},
            pack_ids[yesterday]: {"is_fresh": False},
        }
        expected_fired = _expect(_expect(before, "alerts", fired_alerts), "pricing_pack", packs)
        fired = await testing_dawsos.snapshot(dawsos_dsn, tables)
        assert fired == expected_fired, _diff(expected_fired, fired)
        assert not _by_id(fired["alerts"])[HUMAN_DISABLED]["active"]

        # The pages carry what was done and what is left.
        rb03 = rb03_trigger["payload"]["custom_details"]
        assert rb03["mode"] == "live"
        lowered = [
            a for a, r in alerts_before.items() if r["cooldown_minutes"] < 60 and a not in EXEMPT
        ]
        assert any(
            f"cooldown raised to 60 min on {len(lowered)} alerts" in d for d in rb03["done"]
        ), rb03
        [disabled] = [d for d in rb03["done"] if d.startswith("Disable the top offending alerts")]
        assert all(i in disabled for i in STORM), disabled
        approvals = [x for x in rb03["left_for_human"] if "`remediator approve " in x]
        assert len(approvals) == 2, rb03["left_for_human"]  # delete duplicates, scale down
        rb01 = rb01_trigger["payload"]["custom_details"]
        assert any(f"started build job {job_name}" in d for d in rb01["done"]), rb01
        assert any(
            f"marked {pack_ids[today]} fresh; unmarked {pack_ids[yesterday]}" in d
            for d in rb01["done"]
        ), rb01
        assert any("POST /execute answered 200" in d for d in rb01["done"]), rb01
        assert rb01["left_for_human"] == [], rb01
        assert rb01_trigger["payload"]["severity"] == "error"  # P1
        slack_text = "\n".join(b["text"]["text"] for b in slack_trigger["blocks"][1:])
        assert (
            f"paused {len(paused_by_rb02)} alerts that depend on polygon: "
            + ", ".join(paused_by_rb02)
            in slack_text
        ), slack_text
        assert (
            "Verify the cache serves last-good data FAILED: cache misses fundamentals:AAPL"
            in slack_text
        ), slack_text
        # The run's page is a notification (P2): Slack only. What pages is the circuit
        # its failure opened (P1), under its own key.
        assert rb02_key not in {e["dedup_key"] for e in capture.pagerduty()}
        assert "circuit breaker opened" in circuit_trigger["payload"]["summary"]
        assert circuit_trigger["payload"]["severity"] == "error"

        # ------------------------------------------------- 3 polygon recovers; resolve
        capture.down = set()
        ended = datetime.now(UTC)
        await _post_alerts(
            http,
            alertmanager,
            [
                _alert(storm, starts, ends=ended),
                _alert(build, starts, ends=ended),
                _alert(outage, outage_starts, ends=ended),
                _alert(build2, build2_starts, ends=ended),
            ],
        )

        async def all_resolved() -> bool:
            resolved = {e["dedup_key"] for e in capture.pagerduty("resolve")}
            slack_resolved = any(
                m["text"].startswith("Resolved:") and f"(dedup key {rb02_key})" in m["text"]
                for m in capture.slack()
            )
            want = {rb01_trigger["dedup_key"], rb03_trigger["dedup_key"]}
            return want <= resolved and slack_resolved

        await eventually(all_resolved, "the resolve pages", diagnostics=diagnostics)
        # One trigger and one resolve per run: nothing paged twice.
        assert sorted(e["dedup_key"] for e in capture.pagerduty("resolve")) == sorted(
            [rb01_trigger["dedup_key"], rb03_trigger["dedup_key"]]
        )
        trigger_keys = [e["dedup_key"] for e in capture.pagerduty("trigger")]
        assert len(trigger_keys) == len(set(trigger_keys)), trigger_keys
        assert [triggers_for(rb) for rb in RAN] == [[rb01_trigger], [], [rb03_trigger]]
        rb02_slack = [m for m in capture.slack() if "RB-02" in m["text"]]
        assert rb02_slack == [slack_trigger, rb02_slack[-1]]  # the trigger, then the resolve

        # Undo: RB-02's alerts back on (not the human-disabled one), RB-03's cooldowns
        # back to each alert's own value, offenders still off; the new pack stays fresh.
        resolved_alerts = {i: {"active": False} for i in STORM}
        expected_resolved = _expect(
            _expect(before, "alerts", resolved_alerts), "pricing_pack", packs
        )
        after = await testing_dawsos.snapshot(dawsos_dsn, tables)
        assert after == expected_resolved, _diff(expected_resolved, after)
        assert not _by_id(after["alerts"])[HUMAN_DISABLED]["active"]

        # RB-02's resolve step: the DLQ replay Job, once polygon reports healthy again.
        replay = fake_kube.get("jobs", NS, f"replay-dlq-polygon-{rb02_run.lower()}")
        assert replay is not None, [r.path for r in fake_kube.requests if r.method == "POST"]
        replay_cmd = replay["spec"]["template"]["spec"]["containers"][0]["command"]
        assert replay_cmd[:5] == ["python", "-m", "jobs.replay_dlq", "--provider", "polygon"]
        # RB-03's approvals died with the alert; nothing was deleted or scaled.
        final = await _actions(http, daemon)
        rb03_steps = {
            (a["phase"], a["name"]): a["outcome"] for a in final if a["runbook"] == "RB-03"
        }
        assert rb03_steps[("undo", "global_cooldown")] == "rolled_back"
        assert rb03_steps[("fire", "delete_duplicates")] == "awaiting_approval"
        assert ("approved", "delete_duplicates") not in rb03_steps
        assert fake_kube.get("deployments", NS, "scheduler")["spec"]["replicas"] == 2

        # ------------------------------------------------------------- 4 dashboards
        async def scraped_final_state() -> bool:
            delivered = await prom.value(
                'sum(remediator_pages_total{job="remediator", event="resolve",'
                ' outcome="delivered"})'
            )
            return delivered == 3.0  # PagerDuty RB-01 and RB-03, Slack RB-02

        await eventually(scraped_final_state, "Prometheus to scrape the resolve pages")

        # What the panels must have seen during the night, not only their shape.
        sel = 'job="remediator"'
        seen = {
            "approvals": f"max_over_time(remediator_approvals_pending{{{sel}}}[10m])",
            "cooldown": f'remediator_guard_blocks_total{{{sel}, guard="cooldown"}}',
            "dedup": f"remediator_alerts_deduplicated_total{{{sel}}}",
            "reloads": f'increase(remediator_rule_reloads_total{{{sel}, outcome="success"}}[5m])',
            "circuit": f'remediator_circuit_state{{{sel}, runbook="RB-02"}}',
        }
        values = {k: await prom.value(f"sum({expr})") for k, expr in seen.items()}
        assert values["approvals"] == 2.0, values  # RB-03's two pending approvals
        assert values["cooldown"] == 1.0, values  # the second slow-build alert
        assert (values["dedup"] or 0.0) >= 1.0, values  # the first, resent with it
        assert (values["reloads"] or 0.0) > 0.0, values  # SIGHUP
        assert values["circuit"] == 2.0, values  # open

        failures = []
        queried = 0
        for name, dashboard in dashboards().items():
            variables = query_variables(dashboard)
            choices: dict[str, list[str]] = {}
            for var, (metric, label) in variables.items():
                choices[var] = sorted(await prom.label_values(label, metric))
            if "job" in choices:
                assert choices["job"] == ["remediator"], choices
            if "runbook" in choices:
                # The variable offers every registered runbook (their series start at
                # zero); the drill-down is checked for the ones that ran tonight.
                assert set(RAN) <= set(choices["runbook"]), choices
                choices["runbook"] = list(RAN)
            # Every combination of the variable values (one runbook at a time).
            combos: list[dict[str, str]] = [{}]
            for var, options in choices.items():
                combos = [{**c, var: v} for c in combos for v in options]
            for combo in combos:
                for q in panel_queries(name, dashboard):
                    expr = substitute(q.expr, {**BUILTINS, **combo})
                    queried += 1
                    if q.annotation:
                        # Grafana evaluates annotations over the dashboard's time range.
                        result = await prom.query_range(expr, began, time.time())
                        if not result:
                            failures.append(f"{name} {q.where} {combo}: no data: {expr}")
                        continue
                    result = await prom.query(expr)
                    if not result:
                        failures.append(f"{name} {q.where} {combo}: no data: {expr}")
                    elif not finite_values(result):
                        failures.append(f"{name} {q.where} {combo}: only NaN: {expr} -> {result}")
                    elif expr.endswith(FALLBACK):
                        # Data from the series themselves, not only the panel's fallback.
                        primary = expr.removesuffix(FALLBACK)
                        if not finite_values(await prom.query(primary)):
                            failures.append(f"{name} {q.where} {combo}: only the fallback: {expr}")
        assert queried > 30
        assert not failures, "\n".join(failures)
