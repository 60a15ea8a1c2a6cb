"""Pages as each pager would get them: the daemon's severity routing, and folding past
pagers.max_pages_per_hour as state/folds.py does it."""

from __future__ import annotations

from remediator.backtest import paging, report
from remediator.backtest.command import pager_routes
from remediator.backtest.paging import PageEvent
from remediator.backtest.simulate import RunMark
from remediator.daemon import build_pagers
from remediator.settings import from_mapping
from tests.backtest.sim_support import MIN, T0, occ

PD = {"pagerduty": ("P0", "P1")}


def ev(seq: int, minute: float, key: str, severity: str = "P1", **kw: bool) -> PageEvent:
    return PageEvent(T0 + minute * MIN, seq, "r", severity, key, **kw)


def test_past_the_budget_new_incidents_fold_into_one_summary_per_window() -> None:
    events = [ev(i, i, f"k{i}") for i in range(5)]  # five new incidents in 5 minutes
    tally = paging.fold(events, PD, budget=2)["pagerduty"]
    assert (tally.paged, tally.folded, tally.summaries) == (2, 3, 1)
    assert tally.by_rule["r"] == [2, 3]


def test_the_budget_is_a_rolling_hour_and_a_summary_lasts_an_hour() -> None:
    events = [ev(1, 0, "a"), ev(2, 1, "b"), ev(3, 2, "c"), ev(4, 61, "d"), ev(5, 63, "e")]
    tally = paging.fold(events, PD, budget=2)["pagerduty"]
    # c folds (summary opened at 2); at 61 "a" is out of the hour: d pages; at 63 "b"
    # is out too: e pages.
    assert (tally.paged, tally.folded, tally.summaries) == (4, 1, 1)
    late = [*events, ev(6, 64, "f"), ev(7, 65, "g")]
    tally = paging.fold(late, PD, budget=2)["pagerduty"]
    # f and g: d and e fill the hour; the summary of 2 ended at 62: a new one.
    assert (tally.paged, tally.folded, tally.summaries) == (4, 3, 2)


def test_an_update_of_an_incident_neither_counts_nor_folds() -> None:
    events = [ev(1, 0, "a"), ev(2, 1, "a"), ev(3, 2, "a"), ev(4, 3, "b")]
    tally = paging.fold(events, PD, budget=2)["pagerduty"]
    assert (tally.paged, tally.folded, tally.updates) == (2, 0, 2)


def test_a_p0_that_acted_is_never_folded_but_counts_toward_the_budget() -> None:
    events = [
        ev(1, 0, "a"),
        ev(2, 1, "b"),
        ev(3, 2, "p0", severity="P0", never_fold=True),
        ev(4, 3, "c"),
    ]
    tally = paging.fold(events, PD, budget=2)["pagerduty"]
    assert (tally.paged, tally.folded) == (3, 1)


def test_a_pager_gets_only_the_severities_routed_to_it() -> None:
    events = [ev(1, 0, "a", severity="P2"), ev(2, 1, "b", severity="P1")]
    tallies = paging.fold(events, {"pagerduty": ("P0", "P1"), "slack": ("P2", "P3")}, budget=9)
    assert tallies["pagerduty"].paged == 1 and tallies["slack"].paged == 1


def test_routing_is_the_daemons_pagers() -> None:
    slack = {"webhook_url": "http://127.0.0.1:9/s"}
    pd = {"routing_key": "0123456789abcdef0123456789abcdef", "url": "http://127.0.0.1:9/p"}
    routes = pager_routes(from_mapping({"pagers": {"slack": slack}}))
    # A Slack-only config pages every severity somewhere (DESIGN, severity routing).
    assert set(routes["slack"]) == {"P0", "P1", "P2", "P3"}
    routes = pager_routes(from_mapping({"pagers": {"slack": slack, "pagerduty": pd}}))
    assert set(routes["pagerduty"]) == {"P0", "P1"} and set(routes["slack"]) == {"P2", "P3"}
    built = build_pagers(from_mapping({"pagers": {"slack": slack, "pagerduty": pd}}))
    for name, pager in built.items():
        assert {s for s in ("P0", "P1", "P2", "P3") if pager.accepts(s)} == set(routes[name])
    assert pager_routes(from_mapping({})) == {}


def test_busiest_hour_is_the_clock_hour_with_most_starts_with_a_5_minute_timeline() -> None:
    occurrences = [occ(0, m, m + 1, alertname="A") for m in (5, 65, 66, 67, 71, 130)]
    runs = [RunMark(o.start, i % 2 == 0) for i, o in enumerate(occurrences)]
    busiest = report.busiest_hour(occurrences, runs)
    assert busiest is not None
    assert busiest.start == T0 + 3600 and busiest.occurrences == 4
    assert len(busiest.timeline) == 12
    assert [r.occurrences for r in busiest.timeline[:3]] == [0, 3, 1]  # | 65,66,67 | 71
    assert sum(r.runs + r.blocked for r in busiest.timeline) == 4
    assert report.busiest_hour([], []) is None
