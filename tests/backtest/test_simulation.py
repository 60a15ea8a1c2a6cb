"""Each guard, in simulated time, decides as the engine's guard would; approvals,
pages, escalations and max_duration are counted from the runbooks' declarations."""

from __future__ import annotations

from pathlib import Path

from remediator.backtest import simulate
from remediator.runbook_api.registry import load_entry_points
from remediator.settings import from_mapping
from tests.backtest.sim_support import occ, run, simulation

RB02 = """
rules:
  - name: provider
    matchers: ['alertname=~"ProviderErrorRateHigh|ProviderCircuitBreakerOpen"']
    runbook: RB-02
{extra}
"""


def rb02(extra: str = "") -> str:
    return RB02.format(extra="\n".join(f"    {line}" for line in extra.splitlines()))


def err(series: int, start: float, end: float | None, provider: str) -> object:
    return occ(series, start, end, alertname="ProviderErrorRateHigh", provider=provider)


def test_cooldown_is_per_rule_and_target(tmp_path: Path) -> None:
    stats = run(
        tmp_path,
        rb02("cooldown: 30m"),
        [
            err(0, 0, 5, "polygon"),
            err(1, 10, 15, "fmp"),  # another target: its own cooldown
            err(0, 20, 25, "polygon"),  # 20 min after polygon's run: blocked
            err(0, 31, 35, "polygon"),  # 31 min after it: runs
        ],
    )["provider"]
    assert stats.occurrences == 4 and stats.runs == 3
    assert stats.blocked["cooldown"] == 1
    assert sum(stats.blocked.values()) == 1


def test_cooldown_counts_from_the_last_run_that_passed_not_from_blocked_ones(
    tmp_path: Path,
) -> None:
    stats = run(
        tmp_path,
        rb02("cooldown: 30m"),
        [err(0, 0, 5, "polygon"), err(0, 20, 25, "polygon"), err(0, 40, 45, "polygon")],
    )["provider"]
    # The run at 20 was blocked, so the one at 40 is 40 min after the last that acted.
    assert stats.runs == 2 and stats.blocked["cooldown"] == 1


def test_rate_limit_counts_runs_that_acted_in_the_last_hour(tmp_path: Path) -> None:
    rules = """
rules:
  - name: storm
    matchers: ['alertname="AlertStorm"']
    runbook: RB-03
    max_runs_per_hour: 2
"""
    starts = [0, 10, 20, 61, 62]
    stats = run(tmp_path, rules, [occ(0, s, s + 1, alertname="AlertStorm") for s in starts])[
        "storm"
    ]
    # 0 and 10 act; 20 is the third in an hour; at 61 the run of 0 is out of the
    # hour (10 is in: one of two); at 62 10 and 61 are: blocked.
    assert stats.runs == 3
    assert stats.blocked["rate_limit"] == 2


def test_lock_stops_a_second_occurrence_on_the_same_target_at_the_same_time(
    tmp_path: Path,
) -> None:
    stats = run(
        tmp_path,
        rb02(),
        [
            err(0, 0, 5, "fmp"),
            occ(1, 0, 5, alertname="ProviderCircuitBreakerOpen", provider="fmp"),
            err(2, 0, 5, "polygon"),  # another target: no contention
            err(0, 1, 5, "fmp"),  # a minute later the fire phase has handed over
        ],
    )["provider"]
    assert stats.runs == 3 and stats.blocked["lock_busy"] == 1


def test_one_occurrence_matched_by_two_rules_runs_both_one_after_the_other(
    tmp_path: Path,
) -> None:
    rules = """
rules:
  - name: first
    matchers: ['alertname="ProviderErrorRateHigh"']
    runbook: RB-02
  - name: second
    matchers: ['provider="fmp"']
    runbook: RB-02
"""
    stats = run(tmp_path, rules, [err(0, 0, 5, "fmp")])
    assert stats["first"].runs == 1 and stats["second"].runs == 1
    assert stats["second"].blocked["lock_busy"] == 0


def test_blast_radius_bounds_distinct_targets_mutated_per_window(tmp_path: Path) -> None:
    stats = run(
        tmp_path,
        rb02("max_targets: {count: 2, per: 1h}"),
        [
            err(0, 0, 5, "polygon"),
            err(1, 1, 5, "fmp"),
            err(2, 2, 5, "fred"),  # a third distinct target in the hour: blocked
            err(0, 3, 5, "polygon"),  # already mutated in the window: allowed
            err(2, 64, 65, "fred"),  # 64 min: the three mutations above are out of the hour
        ],
    )["provider"]
    assert stats.blocked["blast_radius"] == 1
    assert stats.runs == 4


def test_blast_radius_window_counts_a_target_from_its_latest_mutation(tmp_path: Path) -> None:
    stats = run(
        tmp_path,
        rb02("max_targets: {count: 2, per: 1h}"),
        [
            err(0, 0, 5, "polygon"),
            err(1, 1, 5, "fmp"),
            err(0, 3, 5, "polygon"),
            err(2, 61, 65, "fred"),  # fmp (1) and polygon (3) are still in the hour
        ],
    )["provider"]
    assert stats.blocked["blast_radius"] == 1 and stats.runs == 3


def test_a_dry_run_rule_mutates_nothing_so_its_blast_radius_never_engages(
    tmp_path: Path,
) -> None:
    stats = run(
        tmp_path,
        rb02("mode: dry-run\nmax_targets: {count: 1, per: 1h}"),
        [err(0, 0, 5, "polygon"), err(1, 1, 5, "fmp"), err(2, 2, 5, "fred")],
    )["provider"]
    assert stats.runs == 3 and stats.blocked["blast_radius"] == 0


def test_circuit_opens_after_consecutive_failures_and_lets_one_trial_through_after_reset(
    tmp_path: Path,
) -> None:
    settings = from_mapping({})
    failures, reset = settings.engine.circuit_failures, settings.engine.circuit_reset
    providers = ["polygon", "fmp", "fred"]
    occurrences = [err(i, i, i + 0.5, providers[i % 3]) for i in range(failures + 2)]
    trial_at = (failures - 1) + reset / 60 + 1  # after the reset, from the opening run
    occurrences.append(err(9, trial_at, trial_at + 1, "polygon"))
    stats = run(tmp_path, rb02(), occurrences, settings=settings, fail_rate=1.0)["provider"]
    assert stats.blocked["circuit_open"] == 2  # the two runs right after it opened
    assert stats.runs == failures + 1 and stats.failed == failures + 1
    assert stats.circuit_opened == 2  # the trial failed: open again
    # The circuit's page is one incident (it stays open); a P2 runbook's blocked runs
    # get no guard page for an open circuit.
    assert stats.pages == {"P2": failures + 1, "P1": 1}


def test_without_fail_rate_every_run_succeeds_and_the_circuit_stays_closed(
    tmp_path: Path,
) -> None:
    occurrences = [err(i, i, i + 0.5, "polygon") for i in range(20)]
    stats = run(tmp_path, rb02(), occurrences)["provider"]
    assert stats.runs == 20 and stats.failed == 0 and stats.blocked["circuit_open"] == 0


def test_fail_rate_draws_are_reproducible(tmp_path: Path) -> None:
    occurrences = [err(i, i * 15, i * 15 + 1, "polygon") for i in range(40)]
    a = run(tmp_path, rb02(), occurrences, fail_rate=0.5)["provider"]
    b = run(tmp_path, rb02(), occurrences, fail_rate=0.5)["provider"]
    assert a == b and 0 < a.failed < a.runs


def test_approvals_are_the_approve_steps_of_each_run_that_acts(tmp_path: Path) -> None:
    rules = """
rules:
  - name: storm
    matchers: ['alertname="AlertStorm"']
    runbook: RB-03
    max_runs_per_hour: 1
"""
    runbook = load_entry_points().get("RB-03")
    assert runbook is not None
    asked = sum(1 for s in runbook.steps if s.approval == "approve")
    assert asked > 0
    stats = run(tmp_path, rules, [occ(0, m, m + 1, alertname="AlertStorm") for m in (0, 5, 70)])[
        "storm"
    ]
    assert stats.runs == 2 and stats.approvals == 2 * asked  # the blocked run asks nothing


def test_max_duration_undoes_and_escalation_pages_p1_for_long_occurrences(
    tmp_path: Path,
) -> None:
    runbook = load_entry_points().get("RB-02")
    assert runbook is not None and runbook.escalate_after is not None
    stats = run(
        tmp_path,
        rb02("max_duration: 1h"),
        [
            err(0, 0, 120, "polygon"),  # two hours: escalated (30 min) and expired (1 h)
            err(1, 0, 10, "fmp"),  # ten minutes: neither
            err(2, 0, None, "fred"),  # still firing at the end of the range
        ],
        until_min=45,  # fred's hour has not passed by then; its 30 min have
    )["provider"]
    assert stats.escalated == 2  # polygon and fred fired past page_after_seconds
    assert stats.max_duration_undos == 0  # the range ends at 45 min
    assert stats.pages == {"P2": 3, "P1": 2}


def test_max_duration_counts_runs_still_firing_past_it(tmp_path: Path) -> None:
    stats = run(
        tmp_path,
        rb02("max_duration: 1h"),
        [err(0, 0, 120, "polygon"), err(1, 0, 20, "fmp")],
    )["provider"]
    assert stats.max_duration_undos == 1
    # The undo updates the run's own page: no new one.
    assert stats.pages == {"P2": 2, "P1": 1}


def test_runs_a_guard_stops_page_once_per_rule_guard_and_clock_hour(tmp_path: Path) -> None:
    stats = run(
        tmp_path,
        rb02("cooldown: 2h"),
        [err(0, m, m + 1, "polygon") for m in (0, 10, 20, 30, 70, 80)],
    )["provider"]
    assert stats.runs == 1 and stats.blocked["cooldown"] == 5
    # One page for the run; one for hour 0's blocked runs, one for hour 1's.
    assert stats.pages == {"P2": 3}


def test_occurrences_no_rule_matches_are_unmatched(tmp_path: Path) -> None:
    sim = simulation(
        tmp_path,
        rb02(),
        [err(0, 0, 1, "polygon"), occ(1, 0, 1, alertname="DiskFull"), occ(2, 5, 6, job="x")],
    )
    assert sim.unmatched == 2
    assert sum(r.occurrences for r in sim.rules) == 1


def test_an_invalid_label_gets_the_engines_invalid_target_and_its_own_guards(
    tmp_path: Path,
) -> None:
    stats = run(
        tmp_path,
        rb02("cooldown: 1h"),
        [err(0, 0, 1, "polygon"), err(1, 5, 6, "not a provider; drop table")],
    )["provider"]
    # Not polygon's target: the cooldown of polygon does not apply to it.
    assert stats.runs == 2


def test_simulated_guards_are_named_as_in_guard_blocks_total() -> None:
    from remediator.backtest.guards import SIMULATED
    from remediator.metrics import GUARDS

    assert set(SIMULATED) <= set(GUARDS)
    assert set(simulate.RuleStats("r", "RB-01", "P1").blocked) == set(SIMULATED)
