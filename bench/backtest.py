"""Scenario 7, the speed of ``remediator backtest``: 30 days of 1,000 alert series.

A seeded history (``history``) of ``backtest_series`` label sets over
``backtest_days`` days is backfilled into a real Prometheus (the Debian binary, via
``promtool tsdb create-blocks-from openmetrics``; setup, not timed). The label sets
are the shipped rules' alerts (``rules/``: provider, storm, database, security,
pricing-pack alerts, each with its own ``instance``) and a third that no rule
matches; each series fires ``backtest_occurrences`` times, one to 90 minutes each.

Timed: ``python -m remediator backtest --since {days}d --rules rules/ --json`` as a
child process against that Prometheus, start to exit (interpreter start, imports,
the chunked ``query_range`` reads, reconstruction, simulation and folding with two
pagers configured), with the child's peak RSS (``wait4``). Then, in this process,
the two halves apart: reading and rebuilding the occurrences, and simulating them.
The figures check the accounting: the backtest finds exactly the series and
occurrences planned.
"""

from __future__ import annotations

import asyncio
import random
import subprocess
import time
from pathlib import Path
from typing import Any

import orjson

from bench import common
from bench.alert_history import AlertSeries, HistoryPrometheus, binaries, openmetrics
from bench.plan import Plan

STEP = 60.0
# The alerts the shipped rules act on, with the labels their matchers want.
MATCHED = (
    ("ProviderErrorRateHigh", {"provider": "polygon"}),
    ("ProviderErrorRateHigh", {"provider": "fmp"}),
    ("ProviderCircuitBreakerOpen", {"provider": "fred"}),
    ("AlertStorm", {}),
    ("NotificationQueueBacklog", {}),
    ("DatabaseSlowQueries", {}),
    ("DatabaseCPUHigh", {}),
    ("SuspiciousRequestRate", {"source_ip": "203.0.113.7"}),
    ("IdorSpike", {}),
    ("RightsExportViolation", {"provider": "FMP"}),
    ("PricingPackBuildSlow", {}),
)
UNMATCHED = ("NodeDiskFull", "HighRequestLatency", "KubePodCrashLooping")
CONFIG = """
pagers:
  pagerduty: {routing_key: "0123456789abcdef0123456789abcdef", url: "http://127.0.0.1:9/pd"}
  slack: {webhook_url: "http://127.0.0.1:9/slack"}
"""


def history(
    n_series: int, days: float, per_series: int, end: float, seed: int = 7
) -> list[AlertSeries]:
    """Non-overlapping intervals, at least three steps apart, all inside
    [end - days, end - 3 h]: each one is exactly one occurrence to the backtest."""
    rnd = random.Random(seed)
    first = (end - days * 86400) // STEP * STEP + 3600
    last = (end - 3 * 3600) // STEP * STEP
    slot = (last - first) // per_series // STEP * STEP
    out = []
    for i in range(n_series):
        if i % 3 == 2:
            name, extra = UNMATCHED[i % len(UNMATCHED)], {}
        else:
            name, extra = MATCHED[i % len(MATCHED)]
        labels = {
            "alertname": name,
            "service": "dawsos",
            "severity": "page",
            "instance": f"host-{i:04d}",
            **extra,
        }
        intervals = []
        for k in range(per_series):
            length = rnd.randint(1, min(90, int(slot // STEP) - 4)) * STEP
            start = first + k * slot + rnd.randint(0, int((slot - length) // STEP) - 3) * STEP
            intervals.append((start, start + length))
        out.append(AlertSeries(labels, intervals))
    return out


def _cli(url: str, days: float, home: Path) -> dict[str, Any]:
    (home / "config.yaml").write_text(CONFIG)
    out_path = home / "backtest.json"
    argv = [common.PYTHON, "-m", "remediator", "backtest", "--prometheus", url]
    argv += ["--since", f"{days:g}d", "--rules", str(common.REPO / "rules")]
    argv += ["--config", str(home / "config.yaml"), "--json"]
    peak = 0.0
    with open(out_path, "wb") as out, open(home / "backtest.err", "wb") as err:
        started = time.monotonic()
        proc = subprocess.Popen(argv, cwd=common.REPO, stdout=out, stderr=err)
        # VmHWM, polled: wait4's ru_maxrss would count the pages of this (big) process
        # that the child held between fork and exec.
        while proc.poll() is None:
            try:
                peak = max(peak, common.peak_rss_mb(proc.pid))
            except (OSError, KeyError, ValueError):
                pass  # it exited between the poll and the read
            time.sleep(0.02)
        seconds = time.monotonic() - started
    if proc.returncode != 0:
        raise RuntimeError(
            f"backtest exited {proc.returncode}: {(home / 'backtest.err').read_text()}"
        )
    result: dict[str, Any] = orjson.loads(out_path.read_bytes())
    return {"seconds": seconds, "peak_rss_mb": peak, "result": result}


async def _halves(url: str, days: float) -> dict[str, float]:
    """Reading + rebuilding, then simulating, timed apart in this process."""
    from remediator.backtest import command, simulate
    from remediator.engine import rules as rules_mod
    from remediator.runbook_api.registry import load_entry_points
    from remediator.settings import from_mapping

    settings = from_mapping({})
    registry = load_entry_points()
    ruleset, errors = rules_mod.load(common.REPO / "rules", registry)
    if ruleset is None:
        raise RuntimeError(f"shipped rules do not load: {errors}")
    opts = command.Options(url, days * 86400, None, None, 0.0, True)
    t0 = time.perf_counter()
    past = await command.read_history(opts)
    t1 = time.perf_counter()
    simulate.simulate(past.occurrences, ruleset, registry, settings, until=past.until)
    t2 = time.perf_counter()
    return {"read_s": t1 - t0, "simulate_s": t2 - t1, "occurrences": len(past.occurrences)}


def run(workdir: Path, plan: Plan) -> dict[str, Any]:
    if binaries() is None:
        return {"skipped": "prometheus and promtool are not installed (Debian package)"}
    home = workdir / "backtest"
    home.mkdir(parents=True, exist_ok=True)
    days, n_series, per = plan.backtest_days, plan.backtest_series, plan.backtest_occurrences
    series = history(n_series, days, per, time.time())
    points = sum(int((b - a) // STEP) for s in series for a, b in s.intervals)
    prom = HistoryPrometheus(home / "prometheus", openmetrics(series, STEP))
    del series
    with prom as url:
        cli = _cli(url, days, home)
        halves = asyncio.run(_halves(url, days))
    result = cli["result"]
    planned = n_series * per
    return {
        "rows": [
            {
                "days": days,
                "series_planned": n_series,
                "occurrences_planned": planned,
                "points": points,
                "backfill_s": prom.backfill_seconds,
                "series": result["series"],
                "occurrences": result["occurrences"],
                "unmatched": result["unmatched"],
                "runs": sum(r["runs"] for r in result["rules"]),
                "blocked": sum(sum(r["blocked"].values()) for r in result["rules"]),
                "seconds": cli["seconds"],
                "occurrences_per_s": result["occurrences"] / cli["seconds"],
                "peak_rss_mb": cli["peak_rss_mb"],
                "read_s": halves["read_s"],
                "simulate_s": halves["simulate_s"],
                "simulate_occurrences_per_s": halves["occurrences"] / halves["simulate_s"]
                if halves["simulate_s"]
                else 0.0,
            }
        ]
    }
