"""Scenario 2, time to mitigation: distinct alerts at a fixed rate, each routed to
BENCH-TTM, whose first mitigation is one UPDATE on the real Postgres target.

Three views of the same latency, per state backend:
  histogram   p50/p99 of remediator_time_to_mitigation_seconds (from /metrics,
              interpolated inside buckets as Prometheus' histogram_quantile does)
  runs        the exact values that histogram observed: runs.mitigated_at minus
              runs.received_at, from the state store
  end-to-end  the target row's clock_timestamp() (stamped by the UPDATE) minus the
              load generator's wall-clock send time: what an operator would see
and the target rows prove each alert was mitigated once (hits == 1). An alert not
mitigated when the drain timeout ends is "missed" (still journaled: not lost) and
counts as an infinite time in the runs and end-to-end percentiles.
"""

from __future__ import annotations

import asyncio
import math
import time
from pathlib import Path
from typing import Any

import asyncpg
from prometheus_client.parser import text_string_to_metric_families

from bench import common, drive, payloads, runbook, servers
from bench.plan import Plan
from remediator.state.records import Run
from remediator.state.store import StateStore

METRIC = "remediator_time_to_mitigation_seconds"
# The daemon starts just before the storm, so its first seconds carry one-time costs
# (new state-store sessions, first statements); the exact runs are also split at this
# mark, so a reader can tell that start-up tail from the steady state.
COLD_SECONDS = 3.0


def _histogram(metrics_text: str) -> tuple[list[tuple[float, float]], float, float]:
    buckets: list[tuple[float, float]] = []
    count = total = 0.0
    for family in text_string_to_metric_families(metrics_text):
        if family.name != METRIC:
            continue
        for s in family.samples:
            if s.labels.get("runbook") != runbook.ID:
                continue
            if s.name == METRIC + "_bucket":
                buckets.append((float(s.labels["le"]), s.value))
            elif s.name == METRIC + "_count":
                count = s.value
            elif s.name == METRIC + "_sum":
                total = s.value
    return buckets, count, total


def prepare_target(dsn: str, fingerprints: list[str]) -> None:
    """The target table, one row per fingerprint the generator will send."""
    asyncio.run(_prepare_target(dsn, fingerprints))


def mitigated_count(dsn: str) -> int:
    return asyncio.run(_mitigated_count(dsn))


async def _prepare_target(dsn: str, fingerprints: list[str]) -> None:
    await common.pg_exec(runbook.TARGET_SCHEMA, dsn=dsn)
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        await conn.copy_records_to_table(
            "bench_mitigations", records=[(fp,) for fp in fingerprints], columns=["fingerprint"]
        )
    finally:
        await conn.close()


async def _target_rows(dsn: str) -> list[dict[str, Any]]:
    return await common.pg_fetch(
        "SELECT fingerprint, hits, extract(epoch FROM mitigated_at)::float8 AS at"
        " FROM bench_mitigations",
        dsn=dsn,
    )


async def _mitigated_count(dsn: str) -> int:
    rows = await common.pg_fetch(
        "SELECT count(*) AS n FROM bench_mitigations WHERE hits > 0", dsn=dsn
    )
    return int(rows[0]["n"])


async def _runs(state_url: str) -> list[Run]:
    store = await StateStore.open(state_url)
    try:
        return await store.list_runs(1_000_000)
    finally:
        await store.close()


def _quantiles(values: list[float]) -> dict[str, float]:
    return {
        "p50_ms": common.percentile(values, 50) * 1000,
        "p99_ms": common.percentile(values, 99) * 1000,
        "max_ms": (max(values) * 1000) if values else math.nan,
    }


def run_backend(
    kind: str,
    workdir: Path,
    plan: Plan,
    *,
    nonce: int | None = None,
    prometheus: str | None = None,
    name: str = "",
) -> dict[str, Any]:
    """One TTM run. ``nonce`` fixes the fingerprints (the corroboration scenario has
    Prometheus fire them first); ``prometheus`` turns corroboration on."""
    wd = workdir / f"ttm-{kind}{name}"
    wd.mkdir(parents=True, exist_ok=True)
    nonce = drive.new_nonce() if nonce is None else nonce
    total = int(plan.ttm_rate * plan.ttm_seconds)
    fingerprints = [payloads.fingerprint(nonce, 0, i) for i in range(total)]
    target_schema = common.new_schema("bench_target")
    target_dsn = common.with_search_path(common.PG_DSN, target_schema)
    server: servers.Server | None = None
    try:
        prepare_target(target_dsn, fingerprints)
        server = servers.start_ttm_daemon(kind, wd, target_dsn, prometheus=prometheus)
        cpu0 = common.cpu_seconds(server.pid)
        spec = {
            "url": server.webhook,
            "mode": "rate",
            "rate": plan.ttm_rate,
            "duration": plan.ttm_seconds,
            "connections": plan.connections,
            "plan": {
                "kind": "distinct",
                "alertname": runbook.ALERTNAME,
                "per_payload": 1,
                "nonce": nonce,
            },
        }
        load = drive.loadgen(spec, wd, "ttm")
        deadline = time.monotonic() + plan.ttm_drain_timeout
        mitigated = 0
        while time.monotonic() < deadline:
            mitigated = mitigated_count(target_dsn)
            if mitigated >= total or not server.child.alive():
                break
            time.sleep(0.2)
        drained_after = plan.ttm_drain_timeout - max(0.0, deadline - time.monotonic())
        cpu = common.cpu_seconds(server.pid) - cpu0
        buckets, count, _sum = _histogram(common.http_get(server.url + "/metrics"))
        server.child.stop()
        assert server.state_url is not None
        runs = asyncio.run(_runs(server.state_url))
        rows = asyncio.run(_target_rows(target_dsn))
    finally:
        if server is not None:
            server.stop()
        common.drop_schema(target_schema)
    exact: list[float] = []
    cold: list[float] = []
    steady: list[float] = []
    done = [(r, r.mitigated_at) for r in runs if r.runbook == runbook.ID and r.mitigated_at]
    first = min((r.received_at for r, _ in done), default=0.0)
    for r, mitigated_at in done:
        took = mitigated_at - r.received_at
        exact.append(took)
        (cold if r.received_at - first < COLD_SECONDS else steady).append(took)
    sends: dict[str, float] = load["sends"]
    e2e = [
        r["at"] - sends[r["fingerprint"]] for r in rows if r["hits"] and r["fingerprint"] in sends
    ]
    hits = [r["hits"] for r in rows]
    # An alert not mitigated by the drain deadline has an unbounded time to
    # mitigation: counting it as infinite keeps the percentiles honest (the
    # histogram cannot: it only ever sees the mitigated ones).
    missed = sum(1 for h in hits if h == 0)
    exact += [math.inf] * missed
    e2e += [math.inf] * missed
    return {
        "backend": kind,
        "rate": plan.ttm_rate,
        "seconds": plan.ttm_seconds,
        "sent": load["requests"],
        "accepted": load["status"].get("202", 0),
        "ack_p99_ms": load["p99_ms"],
        "achieved_rate": load["requests"] / load["seconds"] if load["seconds"] else 0.0,
        "mitigated": sum(1 for h in hits if h > 0),
        "missed": missed,
        "doubled": sum(1 for h in hits if h > 1),
        "drain_s": round(drained_after, 2),
        "histogram": {
            "count": count,
            "p50_ms": common.histogram_quantile(0.5, buckets) * 1000,
            "p99_ms": common.histogram_quantile(0.99, buckets) * 1000,
        },
        "runs": _quantiles(exact),
        # Mitigated runs only, split by arrival: the first COLD_SECONDS of the storm,
        # and the rest (a missed alert counts, as infinite, in "runs" alone).
        "runs_cold": {**_quantiles(cold), "count": len(cold)},
        "runs_steady": {**_quantiles(steady), "count": len(steady)},
        "end_to_end": _quantiles(e2e),
        "daemon_cpu_share": cpu / (load["seconds"] + drained_after),
    }


def run(workdir: Path, plan: Plan, *, backends: tuple[str, ...]) -> dict[str, Any]:
    return {"rows": [run_backend(kind, workdir, plan) for kind in backends]}
