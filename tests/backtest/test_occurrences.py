"""Occurrences rebuilt from ALERTS points: one per continuous firing interval of one
label set; a gap of more than one step ends it."""

from __future__ import annotations

from remediator.backtest.occurrences import Reconstructor

STEP = 60.0
T0 = 1_800_000_000.0
LABELS = {"__name__": "ALERTS", "alertstate": "firing", "alertname": "DiskFull", "instance": "a"}


def points(*minutes: int, value: str = "1") -> list[tuple[float, str]]:
    return [(T0 + m * STEP, value) for m in minutes]


def test_consecutive_points_are_one_occurrence_resolved_one_step_after_the_last() -> None:
    r = Reconstructor(T0, STEP)
    r.add(LABELS, points(0, 1, 2, 3))
    (occ,) = r.finish(T0 + 100 * STEP)
    assert occ.start == T0 and occ.resolved == T0 + 4 * STEP
    assert occ.labels == {"alertname": "DiskFull", "instance": "a"}  # no __name__, alertstate
    assert occ.alertname == "DiskFull"


def test_one_missing_point_splits_the_interval_in_two() -> None:
    r = Reconstructor(T0, STEP)
    r.add(LABELS, points(0, 1, 3, 4))
    first, second = r.finish(T0 + 100 * STEP)
    assert (first.start, first.resolved) == (T0, T0 + 2 * STEP)
    assert (second.start, second.resolved) == (T0 + 3 * STEP, T0 + 5 * STEP)
    assert first.series == second.series


def test_an_interval_across_two_chunks_is_one_occurrence() -> None:
    r = Reconstructor(T0, STEP)
    r.add(LABELS, points(8, 9))  # the end of one chunk
    r.add(LABELS, points(10, 11))  # the start of the next
    (occ,) = r.finish(T0 + 100 * STEP)
    assert (occ.start, occ.resolved) == (T0 + 8 * STEP, T0 + 12 * STEP)


def test_still_firing_at_the_last_point_has_no_resolve() -> None:
    r = Reconstructor(T0, STEP)
    r.add(LABELS, points(5, 6, 7))
    (occ,) = r.finish(T0 + 7 * STEP)
    assert occ.resolved is None
    assert occ.firing_at(T0 + 10_000 * STEP)


def test_nan_points_are_not_firing() -> None:
    r = Reconstructor(T0, STEP)
    r.add(LABELS, [*points(0, 1), *points(2, 3, value="NaN"), *points(4)])
    first, second = r.finish(T0 + 100 * STEP)
    assert first.resolved == T0 + 2 * STEP and second.start == T0 + 4 * STEP
    assert r.series == 1


def test_label_sets_are_series_and_occurrences_come_sorted_by_start() -> None:
    r = Reconstructor(T0, STEP)
    r.add({**LABELS, "instance": "b"}, points(5, 6))
    r.add(LABELS, points(0, 1, 7))
    occs = r.finish(T0 + 100 * STEP)
    assert [(o.labels["instance"], o.start) for o in occs] == [
        ("a", T0),
        ("b", T0 + 5 * STEP),
        ("a", T0 + 7 * STEP),
    ]
    assert r.series == 2


def test_a_series_with_no_firing_point_is_not_counted() -> None:
    r = Reconstructor(T0, STEP)
    r.add(LABELS, points(0, 1, value="NaN"))
    assert r.finish(T0 + 10 * STEP) == [] and r.series == 0
