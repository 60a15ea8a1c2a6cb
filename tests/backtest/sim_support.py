"""Rules and occurrences for the simulation tests: the real rule loader and the real
runbook registry (the built-in DawsOS runbooks, registered through their entry point)."""

from __future__ import annotations

from pathlib import Path

from remediator.backtest import simulate
from remediator.backtest.occurrences import PastOccurrence
from remediator.engine import rules as rules_mod
from remediator.runbook_api.registry import Registry, load_entry_points
from remediator.settings import Settings, from_mapping

MIN = 60.0
# An hour boundary, so "clock hour" figures are easy to count by hand.
T0 = 1_800_000_000.0 - 1_800_000_000.0 % 3600


def ruleset(tmp_path: Path, text: str) -> tuple[rules_mod.RuleSet, Registry]:
    registry = load_entry_points()
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    loaded, errors = rules_mod.load(path, registry)
    assert loaded is not None, errors
    return loaded, registry


def occ(series: int, start_min: float, end_min: float | None, **labels: str) -> PastOccurrence:
    return PastOccurrence(
        series,
        labels,
        T0 + start_min * MIN,
        None if end_min is None else T0 + end_min * MIN,
    )


def run(
    tmp_path: Path,
    rules_text: str,
    occurrences: list[PastOccurrence],
    *,
    settings: Settings | None = None,
    fail_rate: float = 0.0,
    until_min: float = 24 * 60,
) -> dict[str, simulate.RuleStats]:
    return {
        r.rule: r
        for r in simulation(
            tmp_path,
            rules_text,
            occurrences,
            settings=settings,
            fail_rate=fail_rate,
            until_min=until_min,
        ).rules
    }


def simulation(
    tmp_path: Path,
    rules_text: str,
    occurrences: list[PastOccurrence],
    *,
    settings: Settings | None = None,
    fail_rate: float = 0.0,
    until_min: float = 24 * 60,
) -> simulate.Simulation:
    loaded, registry = ruleset(tmp_path, rules_text)
    occurrences = sorted(occurrences, key=lambda o: (o.start, o.series))
    return simulate.simulate(
        occurrences,
        loaded,
        registry,
        settings if settings is not None else from_mapping({}),
        until=T0 + until_min * MIN,
        fail_rate=fail_rate,
    )
