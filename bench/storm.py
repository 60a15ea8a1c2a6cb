"""Scenario 3, storm memory and loss: a storm of alert occurrences, half of them
repeats (shuffled, so a repeat can race its original), sent as fast as
``remediator serve`` accepts them; then wait until the workers have drained the
journal.

Reports the daemon's peak RSS (the kernel's VmHWM: the exact high-water mark over
the whole storm and drain) and checks the journal against the plan: one row per
distinct occurrence, none lost, none doubled, and the replies' journaled and
duplicate counts adding up.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from bench import common, drive, payloads, servers
from bench.plan import Plan
from remediator.state.store import StateStore

ALERTNAME = "BenchStorm"


def _queue_depth(server: servers.Server) -> float:
    for family in text_string_to_metric_families(common.http_get(server.url + "/metrics")):
        if family.name == "remediator_queue_depth":
            return float(family.samples[0].value)
    raise RuntimeError("remediator_queue_depth missing from /metrics")


async def _journal(state_url: str, limit: int) -> list[tuple[str, str, str]]:
    store = await StateStore.open(state_url)
    try:
        rows = await store.list_occurrences(limit)
    finally:
        await store.close()
    return [(r["fingerprint"], r["starts_at"], r["status"]) for r in rows]


def run_backend(kind: str, workdir: Path, plan: Plan) -> dict[str, Any]:
    wd = workdir / f"storm-{kind}"
    wd.mkdir(parents=True, exist_ok=True)
    nonce = drive.new_nonce()
    _, planned = payloads.storm_plan(
        nonce, plan.storm_total, plan.storm_duplicate_share, plan.storm_per_payload
    )
    server = servers.start_serve(kind, wd)
    try:
        rss_start = common.rss_mb(server.pid)
        spec = {
            "url": server.webhook,
            "mode": "closed",
            "connections": plan.connections,
            "duration": plan.storm_deadline,
            # Like Alertmanager: a 503 (journal unavailable) is retried, not dropped.
            "retries": 8,
            "record_acked": True,
            "plan": {
                "kind": "storm",
                "alertname": ALERTNAME,
                "total": plan.storm_total,
                "duplicate_share": plan.storm_duplicate_share,
                "per_payload": plan.storm_per_payload,
                "nonce": nonce,
            },
        }
        cpu0 = common.cpu_seconds(server.pid)
        load = drive.loadgen(spec, wd, "storm")
        peak_after_load = common.peak_rss_mb(server.pid)
        started = time.monotonic()
        depth = _queue_depth(server)
        while depth > 0 and time.monotonic() - started < plan.storm_drain_timeout:
            time.sleep(0.5)
            depth = _queue_depth(server)
        drain_s = time.monotonic() - started
        cpu = common.cpu_seconds(server.pid) - cpu0
        peak = common.peak_rss_mb(server.pid)
        rss_end = common.rss_mb(server.pid)
        server.child.stop()
        assert server.state_url is not None
        journal = asyncio.run(_journal(server.state_url, plan.storm_total * 2))
    finally:
        server.stop()
    keys = {fp for fp, _, _ in journal}
    acked = set(load["acked"])
    # What was sent before the deadline is what the journal must hold.
    expected = set(load["attempted"])
    assert expected <= planned
    return {
        "backend": kind,
        "planned": plan.storm_total,
        "occurrences": len(load["attempted"]),
        "distinct": len(expected),
        "completed": len(load["attempted"]) == plan.storm_total,
        "payload_alerts": plan.storm_per_payload,
        "requests": load["requests"],
        "non202": load["non202"],
        "errors": load["errors"],
        "seconds": load["seconds"],
        "alerts_per_s": len(load["attempted"]) / load["seconds"] if load["seconds"] else 0.0,
        "ack_p99_ms": load["p99_ms"],
        "replies_journaled": load["journaled"],
        "replies_duplicates": load["duplicates"],
        "journal_rows": len(journal),
        "refused": load["refused"],
        "lost": len(expected - keys),
        # The contract: a 202 means durable. Anything acknowledged and missing is a bug.
        "lost_after_202": len(acked - keys),
        "doubled": len(journal) - len(set(journal)),
        "unexpected": len(keys - expected),
        "queue_left": depth,
        "drain_s": round(drain_s, 2),
        "rss_start_mb": rss_start,
        "peak_rss_after_load_mb": peak_after_load,
        "peak_rss_mb": peak,
        "rss_end_mb": rss_end,
        "daemon_cpu_s": cpu,
    }


def run(workdir: Path, plan: Plan) -> dict[str, Any]:
    return {"rows": [run_backend(kind, workdir, plan) for kind in plan.storm_backends]}
