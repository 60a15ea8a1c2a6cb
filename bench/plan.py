"""What each run mode measures, and for how long.

full   the figures of record (bench/RESULTS.md); under 10 minutes on 2 cores
quick  the same scenarios, shorter (under 2 minutes); for a tuning loop
smoke  seconds; the CI smoke test checks the bench works, never its speed
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Plan:
    name: str
    # 1. intake ceiling ratio
    intake_seconds: float
    warmup_seconds: float
    payload_sizes: tuple[int, ...]
    # Ceiling-then-daemons rounds; ratios and latencies are medians over the rounds.
    intake_rounds: int
    dup_heavy: bool  # also run the duplicate-heavy load against both backends
    intake_backends: tuple[str, ...]
    # 2. time to mitigation
    ttm_rate: float
    ttm_seconds: float
    ttm_drain_timeout: float
    ttm_backends: tuple[str, ...]
    # 3. storm memory and loss
    storm_total: int
    storm_backends: tuple[str, ...]
    # 4. rule scaling
    rule_counts: tuple[int, ...]
    rule_alerts: int
    rule_repeats: int
    connections: int = 32
    storm_per_payload: int = 20
    storm_duplicate_share: float = 0.5
    storm_drain_timeout: float = 30.0
    # A daemon slower than this leaves the rest unsent (reported): the run stays bounded.
    storm_deadline: float = 90.0
    # 6. time to the first P0 page under P2 load, with runs parked (the full run's
    # values here; quick and smoke override them)
    p0_load_rate: float = 1000  # P2 alerts/s, open loop
    # P2 alerts per request: Alertmanager sends a group's alerts together; with 1 per
    # request the intake alone saturates before 1,000/s on the 2-core machine.
    p0_load_per_payload: int = 10
    p0_load_seconds: float = 30
    p0_parked: int = 8  # runs parked in a long wait before the load starts
    p0_alerts: int = 36  # P0 alerts, one every p0_interval, from p0_lead into the load
    p0_interval: float = 0.75
    p0_lead: float = 2.0
    p0_drain_timeout: float = 15.0  # after the last P0 is sent, for its page to go out
    p0_workers: int = 8  # limits.workers (a quarter is the P0 lane)
    p0_backends: tuple[str, ...] = ("sqlite", "postgres")
    # 7. backtest: label sets, days of history, occurrences of each series
    backtest_series: int = 1_000
    backtest_days: float = 30
    backtest_occurrences: int = 40


FULL = Plan(
    name="full",
    intake_seconds=8,
    warmup_seconds=2,
    payload_sizes=(1, 20),
    intake_rounds=3,
    dup_heavy=True,
    intake_backends=("sqlite", "postgres"),
    ttm_rate=200,
    ttm_seconds=30,
    ttm_drain_timeout=60,
    ttm_backends=("sqlite", "postgres"),
    storm_total=100_000,
    storm_backends=("sqlite", "postgres"),
    rule_counts=(10, 1_000, 10_000),
    rule_alerts=20_000,
    rule_repeats=15,
)

QUICK = Plan(
    name="quick",
    intake_seconds=3,
    warmup_seconds=1,
    payload_sizes=(1, 20),
    intake_rounds=1,
    dup_heavy=False,
    intake_backends=("sqlite", "postgres"),
    ttm_rate=200,
    ttm_seconds=5,
    ttm_drain_timeout=10,
    ttm_backends=("sqlite", "postgres"),
    storm_total=10_000,
    storm_backends=("sqlite", "postgres"),
    rule_counts=(10, 1_000, 10_000),
    rule_alerts=5_000,
    rule_repeats=9,
    storm_drain_timeout=10.0,
    storm_deadline=20.0,
    p0_load_seconds=10,
    p0_alerts=12,
    p0_interval=0.6,
    p0_lead=1.5,
    p0_drain_timeout=10.0,
)

SMOKE = Plan(
    name="smoke",
    intake_seconds=1,
    warmup_seconds=0,
    payload_sizes=(20,),
    intake_rounds=1,
    dup_heavy=False,
    intake_backends=("sqlite",),
    ttm_rate=20,
    ttm_seconds=1,
    ttm_drain_timeout=15,
    ttm_backends=("postgres",),
    storm_total=400,
    storm_backends=("sqlite",),
    rule_counts=(10, 100),
    rule_alerts=200,
    rule_repeats=1,
    storm_drain_timeout=15,
    storm_deadline=15,
    p0_load_rate=20,
    p0_load_seconds=3,
    p0_parked=2,
    p0_alerts=3,
    p0_interval=0.5,
    p0_lead=0.5,
    p0_drain_timeout=10.0,
    p0_backends=("postgres",),
    backtest_series=30,
    backtest_days=2,
    backtest_occurrences=4,
)

PLANS = {p.name: p for p in (FULL, QUICK, SMOKE)}
