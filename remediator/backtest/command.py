"""``remediator backtest``: read the history, simulate, print. Exit codes:

0  the report was printed
1  Prometheus could not be read (down, refused, an error answer), or the rules
   do not load
2  bad arguments (--prometheus not an http(s) URL, --since, --step, --fail-rate)
   or a bad config (the CLI's ConfigError)
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import urllib.parse
from dataclasses import dataclass

from remediator.backtest import paging, report, simulate
from remediator.backtest.occurrences import PastOccurrence, Reconstructor
from remediator.clients.prometheus_range import PrometheusHistory, prometheus_duration
from remediator.engine import rules as rules_mod
from remediator.errors import TargetError
from remediator.paging.base import SEVERITIES
from remediator.runbook_api.registry import Registry
from remediator.runbooks.yaml_runbooks import registry_for
from remediator.settings import Settings, parse_duration


class UsageError(ValueError):
    """A bad argument: exit 2 with its message."""


@dataclass(frozen=True)
class Options:
    prometheus: str
    since: float  # seconds back from now
    step: float | None  # None: Prometheus's evaluation_interval
    rules: str | None
    fail_rate: float
    json: bool


def add_arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--prometheus", required=True, help="Prometheus base URL (http://host:9090)")
    sp.add_argument("--since", default="30d", help="how far back (default 30d)")
    sp.add_argument("--rules", help="rules file or directory (default: from config)")
    sp.add_argument(
        "--step",
        help="resolution, e.g. 30s (default: Prometheus's global evaluation_interval)",
    )
    sp.add_argument(
        "--fail-rate",
        default="0",
        help="share of live runs that fail, 0..1, for the circuit breaker (default 0)",
    )
    sp.add_argument("--json", action="store_true")


def _duration(value: str, name: str) -> float:
    try:
        seconds = parse_duration(value)
    except ValueError:
        try:
            seconds = prometheus_duration(value)
        except ValueError:
            raise UsageError(
                f"{name}: expected a duration like 30s, 15m, 30d, got {value!r}"
            ) from None
    if not 0 < seconds < math.inf:
        raise UsageError(f"{name} must be positive, got {value!r}")
    return seconds


def _step(value: str) -> float:
    step = _duration(value, "--step")
    # Below a second, a month is billions of points: no rule is evaluated that often.
    if step < 1:
        raise UsageError(f"--step must be at least 1s, got {value!r}")
    return step


def options(args: argparse.Namespace) -> Options:
    url = urllib.parse.urlsplit(args.prometheus)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise UsageError(f"--prometheus must be an http(s) URL, got {args.prometheus!r}")
    try:
        fail_rate = float(args.fail_rate)
    except ValueError:
        fail_rate = math.nan
    if not 0 <= fail_rate <= 1:
        raise UsageError(f"--fail-rate must be a number from 0 to 1, got {args.fail_rate!r}")
    return Options(
        prometheus=args.prometheus,
        since=_duration(args.since, "--since"),
        step=_step(args.step) if args.step is not None else None,
        rules=args.rules,
        fail_rate=fail_rate,
        json=args.json,
    )


def pager_routes(settings: Settings) -> dict[str, tuple[str, ...]]:
    """Which severities each configured pager would get: the daemon's own pagers, as
    ``build_pagers`` makes them (its severity routing), asked what they accept.
    Building one opens nothing: a pager makes its HTTP client when it first sends."""
    from remediator.daemon import build_pagers

    return {
        name: tuple(s for s in SEVERITIES if pager.accepts(s))
        for name, pager in build_pagers(settings).items()
    }


@dataclass(frozen=True)
class History:
    """The occurrences Prometheus holds for the range, at ``step``."""

    since: float
    until: float
    step: float
    series: int
    occurrences: list[PastOccurrence]
    retention: float | None = None  # Prometheus's storage retention, if it says


async def read_history(opts: Options, *, now: float | None = None) -> History:
    """Read the range from Prometheus and rebuild its occurrences. Raises TargetError."""
    history = PrometheusHistory(opts.prometheus)
    try:
        step = opts.step if opts.step is not None else await history.evaluation_interval()
        retention = await history.retention()
        now = time.time() if now is None else now
        until = math.floor(now / step) * step
        since = math.ceil((now - opts.since) / step) * step
        rebuilt = Reconstructor(since, step)
        async for chunk in history.firing(since, until, step):
            for series in chunk.series:
                rebuilt.add(series.metric, series.values)
    finally:
        await history.aclose()
    return History(since, until, step, rebuilt.series, rebuilt.finish(until), retention)


async def backtest(
    opts: Options,
    settings: Settings,
    ruleset: rules_mod.RuleSet,
    registry: Registry,
    *,
    now: float | None = None,
) -> report.Report:
    """Read the range from Prometheus and simulate it. Raises TargetError."""
    past = await read_history(opts, now=now)
    sim = simulate.simulate(
        past.occurrences, ruleset, registry, settings, until=past.until, fail_rate=opts.fail_rate
    )
    budget = settings.pagers.max_pages_per_hour
    return report.Report(
        since=past.since,
        until=past.until,
        step=past.step,
        series=past.series,
        occurrences=len(past.occurrences),
        rules=sim.rules,
        unmatched=sim.unmatched,
        busiest=report.busiest_hour(past.occurrences, sim.runs),
        pagers=paging.fold(sim.pages, pager_routes(settings), budget),
        max_pages_per_hour=budget,
        fail_rate=opts.fail_rate,
        retention=past.retention,
    )


async def run(args: argparse.Namespace, settings: Settings) -> int:
    try:
        opts = options(args)
    except UsageError as exc:
        print(f"backtest: {exc}", file=sys.stderr)
        return 2
    registry, errors = registry_for(settings.runbooks)
    ruleset = None
    if not errors:
        ruleset, errors = rules_mod.load(opts.rules or settings.rules, registry)
    if ruleset is None:
        for e in errors:
            print(e, file=sys.stderr)
        return 1
    try:
        result = await backtest(opts, settings, ruleset, registry)
    except TargetError as exc:
        print(
            f"backtest: cannot read the alert history from {opts.prometheus}: {exc}",
            file=sys.stderr,
        )
        return 1
    if opts.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        print(report.text(result))
    return 0
