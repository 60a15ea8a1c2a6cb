"""Forged alerts against a real Prometheus: a leaked webhook token is not a weapon.

The daemon (a real ``remediator serve``, live mode, Postgres state) has
``targets.prometheus`` pointing at the Debian Prometheus 2.42 on loopback, whose only
alerting rule fires ``ProviderErrorRateHigh`` for provider ``rel0000``. Prometheus
has an external label, which Alertmanager would deliver with every alert and which
``ALERTS`` (queried locally) does not carry. The target is the shipped RB-02 against
a fresh DawsOS database, whose triggers log every change (``rel_changes``).

In order, on one daemon:
  (a) forged alerts Prometheus does not fire (another provider, another alertname
      with the same labels, the real labels plus one) change nothing in the target;
      each run is blocked by ``not_corroborated`` and counted under that guard;
  (b) the alert Prometheus fires is mitigated;
  (c) a forged resolve of that still-firing alert undoes nothing, however many
      maintenance passes run: the run stays ``waiting`` with its undo requested;
  (d) once Prometheus stops firing it, the deferred undo happens at the next
      recheck (``UNDO_RECHECK`` after the deferral, plus a margin).
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import yaml

from remediator.engine.engine import UNDO_RECHECK
from remediator.testing import make_alert, resolved
from tests.reliability._bench import PROVIDER_ALERT, RULE, World, rows_of, world
from tests.reliability._cluster import Cluster, Sender, settle
from tests.reliability._prometheus import LoopbackPrometheus, fires, prometheus_binary

OTHER_ALERT = "ProviderCircuitBreakerOpen"  # RB-02 handles it too; Prometheus never fires it
EXTERNAL = {"prom_replica": "loopback-1"}  # Prometheus's global.external_labels
MARGIN = 6.0  # seconds past UNDO_RECHECK: maintenance poll, the status page, the commit


def _labels(w: World, i: int, **extra: str) -> dict[str, str]:
    return {"service": "dawsos", "provider": w.providers[i], "instance": "exporter-1", **extra}


def _alert(w: World, alertname: str, labels: dict[str, str], n: int) -> dict[str, Any]:
    """As Alertmanager would deliver it: with Prometheus's external labels added."""
    starts = w.base_time + timedelta(seconds=n)
    return make_alert(
        alertname,
        {**labels, **EXTERNAL},
        starts_at=starts.strftime("%Y-%m-%dT%H:%M:%S") + ".000000001Z",
    )


def _rules(w: World) -> str:
    doc = yaml.safe_load(w.rules_yaml())
    [rule] = [r for r in doc["rules"] if r["name"] == RULE]
    rule["matchers"][0] = f'alertname=~"{PROVIDER_ALERT}|{OTHER_ALERT}"'
    return yaml.safe_dump(doc, sort_keys=False)


async def _run_of(conn: asyncpg.Connection, alert: dict[str, Any]) -> dict[str, Any]:
    row = await conn.fetchrow(
        "SELECT * FROM runs WHERE fingerprint = $1 AND rule = $2", alert["fingerprint"], RULE
    )
    assert row is not None, f"no run for {alert['labels']}"
    return dict(row)


async def _steps(conn: asyncpg.Connection, run_id: str) -> dict[tuple[str, str], dict[str, Any]]:
    rows = await conn.fetch("SELECT * FROM steps WHERE run_id = $1", run_id)
    return {(r["phase"], r["name"]): dict(r) for r in rows}


async def _guard_blocks(url: str, guard: str) -> float:
    async with httpx.AsyncClient(timeout=5) as c:
        text = (await c.get(url + "/metrics")).text
    prefix = f'remediator_guard_blocks_total{{guard="{guard}"}} '
    return sum(float(line[len(prefix) :]) for line in text.splitlines() if line.startswith(prefix))


async def _until(what: str, check: Any, timeout: float, cluster: Cluster) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s: {what}\n{cluster.tail(0)}")
        await asyncio.sleep(0.1)


@pytest.mark.timeout(120)
async def test_only_alerts_prometheus_fires_are_acted_on_and_a_forged_resolve_undoes_nothing(
    request: pytest.FixtureRequest, pg_schema_dsn: str, tmp_path: Path
) -> None:
    binary = prometheus_binary(request.config)
    async with world(request.config, 3) as w:
        prom = LoopbackPrometheus(tmp_path, binary, external_labels=EXTERNAL)
        real = _labels(w, 0)
        cluster: Cluster | None = None
        state = await asyncpg.connect(pg_schema_dsn)
        try:
            await prom.start([fires(PROVIDER_ALERT, **real)])
            await prom.wait_firing({"alertname": PROVIDER_ALERT, **real})
            targets = {**w.targets(), "prometheus": {"url": prom.url, "corroborate": True}}
            cluster = Cluster(
                tmp_path, pg_schema_dsn, rules_yaml=_rules(w), targets=targets, replicas=1
            )
            await cluster.start_all()
            url = cluster.replicas[0].url
            async with httpx.AsyncClient(timeout=30) as client:
                sender = Sender(cluster, client)

                # (a) Three forged alerts, one at a time (two name rel0000's target, and
                # would otherwise meet its lock), none of which Prometheus fires.
                forged = [
                    _alert(w, PROVIDER_ALERT, _labels(w, 1), 1),  # another label value
                    _alert(w, OTHER_ALERT, real, 2),  # another alertname, same labels
                    _alert(w, PROVIDER_ALERT, {**real, "severity": "page"}, 3),  # one more label
                ]
                for alert in forged:
                    assert await sender.send(0, [alert])
                    await settle(pg_schema_dsn, timeout=30)
                assert await w.changes() == []
                for alert in forged:
                    run = await _run_of(state, alert)
                    assert (run["outcome"], run["blocked_by"]) == ("blocked", "not_corroborated")
                    steps = await _steps(state, run["id"])
                    pause = steps[("fire", "pause_alerts")]
                    assert pause["outcome"] == "skipped"
                    assert pause["reason"].startswith("not corroborated"), pause["reason"]
                    assert steps[("fire", "provider_status")]["outcome"] == "applied"
                assert await _guard_blocks(url, "not_corroborated") == len(forged)

                # (b) The alert Prometheus fires, as Alertmanager delivers it: mitigated.
                alert = _alert(w, PROVIDER_ALERT, real, 0)
                assert await sender.send(0, [alert])
                await settle(pg_schema_dsn, timeout=30)
                paused = [(c["row_id"], c["old"], c["new"]) for c in await w.changes()]
                assert paused == [(r, "true", "false") for r in rows_of(w.providers[0])]
                run = await _run_of(state, alert)
                assert (run["state"], run["outcome"], run["blocked_by"]) == (
                    "waiting",
                    "mitigated",
                    None,
                )

                # (c) A forged resolve while Prometheus still fires it: nothing undone.
                assert await sender.send(0, [resolved(alert)])

                async def deferred() -> Any:
                    s = (await _steps(state, run["id"])).get(("resolve", "replay_dlq"))
                    return s is not None and s["state"] == "deferred"

                await _until("the undo deferred", deferred, 20, cluster)
                deferred_at = time.monotonic()
                await asyncio.sleep(4.0)  # twenty maintenance passes (poll 0.2 s)
                assert len(await w.changes()) == len(paused)
                run = await _run_of(state, alert)
                assert (run["state"], run["undo_state"], run["undo_reason"]) == (
                    "waiting",
                    "requested",
                    "resolved",
                )
                steps = await _steps(state, run["id"])
                assert ("undo", "pause_alerts") not in steps
                reason = steps[("resolve", "replay_dlq")]["reason"]
                assert reason.startswith("resolve not corroborated: ALERTS shows"), reason
                assert await _guard_blocks(url, "not_corroborated") >= len(forged) + 1

                # (d) Prometheus stops firing it: the deferred undo goes on at the recheck.
                await prom.set_alerts([])
                stopped_at = await prom.wait_not_firing({"alertname": PROVIDER_ALERT, **real})

                async def restored() -> Any:
                    return [c for c in await w.changes() if c["new"] == "true"]

                back = await _until(
                    "the undo after Prometheus stopped firing",
                    restored,
                    UNDO_RECHECK + MARGIN,
                    cluster,
                )
                undone_at = time.monotonic()
                await settle(pg_schema_dsn, timeout=30)
            assert sorted(c["row_id"] for c in back) == rows_of(w.providers[0])
            assert len(await w.changes()) == 2 * len(paused)  # each row paused once, back once
            run = await _run_of(state, alert)
            assert (run["state"], run["undo_state"]) == ("done", "done")
            steps = await _steps(state, run["id"])
            assert steps[("undo", "pause_alerts")]["outcome"] == "rolled_back"
            errors = cluster.internal_errors()
        finally:
            await state.close()
            if cluster is not None:
                await cluster.close()
            prom.stop()
    assert undone_at - deferred_at <= UNDO_RECHECK + MARGIN
    assert errors == []
    print(
        f"\nforged resolve held back {undone_at - deferred_at:.1f} s;"
        f" undone {undone_at - stopped_at:.1f} s after Prometheus stopped firing"
        f" (UNDO_RECHECK {UNDO_RECHECK:.0f} s)"
    )


@pytest.mark.timeout(60)
async def test_the_witness_finds_exactly_the_firing_label_set_whatever_its_characters(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """The daemon's Prometheus client against the real binary: label values with quotes,
    backslashes, newlines, non-ASCII and non-BMP characters are matched exactly; one
    label more, one less or one value off is not firing; a label name PromQL cannot
    spell is refused without a query error; external labels are left out."""
    from remediator.clients.prometheus import PrometheusClient

    odd = {
        "alertname": "OddLabels",
        "quote": 'say "hi"',
        "backslash": "C:\\temp\\x",
        "newline": "two\nlines",
        "accents": "Zürich \u2013 café",
        "emoji": "fire 🔥 here",
    }
    prom = LoopbackPrometheus(tmp_path, prometheus_binary(request.config), external_labels=EXTERNAL)
    client = PrometheusClient("http://127.0.0.1:1")  # replaced below, once the port is known
    try:
        await prom.start(
            [
                fires("OddLabels", **{k: v for k, v in odd.items() if k != "alertname"}),
                fires("OddLabels", quote="other"),  # a second series of the same alertname
            ]
        )
        await prom.wait_firing(odd)
        await client.aclose()
        client = PrometheusClient(prom.url)
        assert (await client.alert_firing({**odd, **EXTERNAL})).firing
        assert (await client.alert_firing(odd)).firing
        assert (await client.alert_firing({"alertname": "OddLabels", "quote": "other"})).firing
        less = {k: v for k, v in odd.items() if k != "emoji"}
        for claim in (
            {**odd, "extra": "1"},  # one label more
            less,  # one label less
            {**odd, "emoji": "fire 🔥 there"},  # one value off
            {**odd, "alertname": "OtherAlert"},
            {**odd, "alertstate": "firing"},
            {"alertname": "OddLabels", "quote": "other", "bad-name": "x"},  # not a PromQL name
        ):
            witness = await client.alert_firing(claim)
            assert not witness.firing, (claim, witness)
        witness = await client.alert_firing({**odd, "extra": "1"})
        assert "extra" in witness.detail  # says which label differs
    finally:
        await client.aclose()
        prom.stop()
