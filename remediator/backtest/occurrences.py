"""Alert occurrences rebuilt from the points of ``ALERTS{alertstate="firing"}``.

An occurrence is one continuous firing interval of one label set: the points of a
series at consecutive steps. A gap of more than one step (one missing point or more)
ends it; the next point starts another. Its start is its first point (when the
webhook's run would start, to the resolution of the step) and its resolve is one step
after its last point, when Prometheus stopped writing the series. An interval still
firing at the last point of the range has no resolve.

A point counts as firing when its value is positive: ``ALERTS`` is 1 while firing, and
a NaN (what a backfilled history may hold where Prometheus writes a staleness marker)
is not firing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

# Labels of the ALERTS series that are not the alert's own.
SERIES_LABELS = frozenset({"__name__", "alertstate"})


@dataclass(frozen=True, slots=True)
class PastOccurrence:
    series: int  # index of its label set, in order of first appearance
    labels: Mapping[str, str]
    start: float  # unix seconds
    resolved: float | None  # None: still firing at the end of the range

    @property
    def alertname(self) -> str:
        return self.labels.get("alertname", "")

    def firing_at(self, t: float) -> bool:
        """Whether it still fires at ``t`` (a time after its start)."""
        return self.resolved is None or self.resolved > t


def _firing(value: str) -> bool:
    if value == "1":
        return True
    try:
        return float(value) > 0  # NaN > 0 is False
    except ValueError:
        return False


class Reconstructor:
    """Feed it each series' points chunk by chunk, in time order; ``finish`` gives
    the occurrences sorted by start (then by series, so the order is reproducible)."""

    def __init__(self, start: float, step: float) -> None:
        self.start = start
        self.step = step
        self._series: dict[tuple[tuple[str, str], ...], int] = {}
        self._labels: list[dict[str, str]] = []
        # series index -> [first step, last step] of its interval still open
        self._open: dict[int, list[int]] = {}
        self._closed: list[tuple[int, int, int]] = []  # (series, first, last) step indices

    @property
    def series(self) -> int:
        return len(self._labels)

    def add(self, metric: Mapping[str, str], values: Iterable[tuple[float, str]]) -> None:
        indices = [round((t - self.start) / self.step) for t, value in values if _firing(value)]
        if not indices:
            return
        labels = {k: v for k, v in metric.items() if k not in SERIES_LABELS}
        key = tuple(sorted(labels.items()))
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = len(self._labels)
            self._labels.append(labels)
        interval = self._open.get(series)
        for i in indices:
            if interval is None:
                interval = [i, i]
            elif i - interval[1] > 1:
                self._closed.append((series, interval[0], interval[1]))
                interval = [i, i]
            elif i > interval[1]:
                interval[1] = i
        assert interval is not None
        self._open[series] = interval

    def finish(self, last_point: float) -> list[PastOccurrence]:
        """All occurrences; ``last_point`` is the time of the range's last point."""
        last = round((last_point - self.start) / self.step)
        spans = [*self._closed, *((s, i[0], i[1]) for s, i in self._open.items())]
        spans.sort(key=lambda span: (span[1], span[0]))
        return [
            PastOccurrence(
                series,
                self._labels[series],
                self.start + first * self.step,
                None if end >= last else self.start + (end + 1) * self.step,
            )
            for series, first, end in spans
        ]
