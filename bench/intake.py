"""Scenario 1, intake ceiling ratio: the same load against the bare aiohttp ceiling,
``remediator serve`` on SQLite and on Postgres; 202s per second, alerts per second,
p50/p99 ack latency, and daemon/ceiling ratios, per payload size.

Each measurement gets a fresh server (fresh SQLite file or Postgres schema), so the
workers' backlog of one run never weighs on the next. The daemon's rules match
none of the bench alerts, as in a storm of alerts nobody wrote a rule for: each
occurrence is still journaled durably before the 202, but as already processed,
so the workers never claim it (the backlog column shows that none is left over).
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from bench import common, drive, servers
from bench.plan import Plan

ALERTNAME = "BenchIntake"
DUPSET = 2_000  # duplicate-heavy mode: fingerprints cycle over this many


def _measure(
    kind: str,
    workdir: Path,
    plan: Plan,
    per_payload: int,
    *,
    use_wrk: bool,
    dupset: int = 0,
) -> dict[str, Any]:
    tag = f"{kind}-{per_payload}{'-dup' if dupset else ''}"
    wd = workdir / tag
    wd.mkdir(parents=True, exist_ok=True)
    server = servers.start_ceiling(wd) if kind == "ceiling" else servers.start_serve(kind, wd)
    try:
        common_args: dict[str, Any] = {
            "server_pid": server.pid,
            "workdir": wd,
            "alertname": ALERTNAME,
            "per_payload": per_payload,
            "connections": plan.connections,
            "dupset": dupset,
            "use_wrk": use_wrk,
        }
        if plan.warmup_seconds or dupset:
            # Warm-up: connections, prepared statements, first-use imports; in the
            # duplicate-heavy mode it also journals the set the measured run repeats.
            drive.closed_load(
                server.webhook,
                name="warmup",
                seconds=max(plan.warmup_seconds, 1.0),
                **common_args,
            )
        before = _journal_counts(server) if kind != "ceiling" else None
        result = drive.closed_load(
            server.webhook, name="measure", seconds=plan.intake_seconds, **common_args
        )
        after = _journal_counts(server) if kind != "ceiling" else None
        alive = server.child.alive()
    finally:
        server.stop()
    ok = result["requests"] - result["non202"]
    return {
        "target": kind,
        "payload_alerts": per_payload,
        "mode": "duplicate-heavy" if dupset else "distinct",
        "generator": result["generator"],
        "rps": result["rps"],
        "alerts_per_s": result["alerts_per_s"],
        "p50_ms": result["p50_ms"],
        "p99_ms": result["p99_ms"],
        "requests": result["requests"],
        "non202": result["non202"],
        "journaled": result["journaled"],
        "duplicates": result["duplicates"],
        "server_cpu_us_per_request": (result["server_cpu_s"] / ok * 1e6) if ok else None,
        "server_cpu_share": result["server_cpu_s"] / result["seconds"],
        "client_cpu_share": result["client_cpu_s"] / result["seconds"],
        "server_survived": alive,
        **_journal_stats(before, after, result["seconds"]),
    }


def _journal_counts(server: servers.Server) -> dict[str, float]:
    """Journal commits and rows so far, and the workers' backlog (from /metrics)."""
    out = {"commits": 0.0, "rows": 0.0, "backlog": 0.0}
    text = common.http_get(server.url + "/metrics")
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "remediator_journal_batch_size_count":
                out["commits"] = s.value
            elif s.name == "remediator_journal_batch_size_sum":
                out["rows"] = s.value
            elif s.name == "remediator_queue_depth":
                out["backlog"] = s.value
    return out


def _journal_stats(
    before: dict[str, float] | None, after: dict[str, float] | None, seconds: float
) -> dict[str, Any]:
    if before is None or after is None:
        return {}
    commits = after["commits"] - before["commits"]
    rows = after["rows"] - before["rows"]
    return {
        "journal_commits_per_s": commits / seconds if seconds else 0.0,
        "journal_rows_per_commit": rows / commits if commits else 0.0,
        # Occurrences journaled but not yet processed by the workers at the end.
        "worker_backlog": after["backlog"],
    }


# Fields of a measurement that add up across rounds; every other number is a median.
_SUMMED = ("requests", "non202", "journaled", "duplicates")


def _combine(measured: list[dict[str, Any]]) -> dict[str, Any]:
    """One row from the same measurement repeated over rounds: counts are summed (so
    the accounting still adds up), rates, latencies and CPU are the medians."""
    out = dict(measured[0])
    for key, value in measured[0].items():
        if key in _SUMMED:
            out[key] = sum(m[key] for m in measured)
        elif isinstance(value, float):
            out[key] = statistics.median(m[key] for m in measured)
    out["server_survived"] = all(m["server_survived"] for m in measured)
    out["rounds"] = len(measured)
    return out


def run(workdir: Path, plan: Plan, *, backends: tuple[str, ...], use_wrk: bool) -> dict[str, Any]:
    """Every round measures the ceiling and then each backend, per payload size; a
    ratio is taken within its round (the daemon against the ceiling measured a
    minute before it), and the figure of record is the median over the rounds.
    This machine's speed drifts by 10-30% over minutes: a single pair of runs moves
    the ratio by more than most code changes do."""
    measured: dict[tuple[str, int, str], list[dict[str, Any]]] = {}
    per_round: dict[str, dict[str, list[float]]] = {}
    for round_no in range(plan.intake_rounds):
        round_dir = workdir / f"round-{round_no}"
        for size in plan.payload_sizes:
            ceiling = _measure("ceiling", round_dir, plan, size, use_wrk=use_wrk)
            measured.setdefault(("ceiling", size, "distinct"), []).append(ceiling)
            for kind in backends:
                row = _measure(kind, round_dir, plan, size, use_wrk=use_wrk)
                measured.setdefault((kind, size, "distinct"), []).append(row)
                ratio = row["rps"] / ceiling["rps"] if ceiling["rps"] else 0.0
                per_round.setdefault(str(size), {}).setdefault(kind, []).append(ratio)
    if plan.dup_heavy and use_wrk:
        size = max(plan.payload_sizes)
        for kind in backends:
            row = _measure(kind, workdir, plan, size, use_wrk=use_wrk, dupset=DUPSET)
            measured[(kind, size, "duplicate-heavy")] = [row]
    return {
        "connections": plan.connections,
        "rounds": plan.intake_rounds,
        "rows": [_combine(rows) for rows in measured.values()],
        # The figure of record: the median of the per-round ratios.
        "ratios": {
            size: {kind: statistics.median(r) for kind, r in by_kind.items()}
            for size, by_kind in per_round.items()
        },
        "ratios_by_round": per_round,
        "measurements": [row for rows in measured.values() for row in rows],
    }
