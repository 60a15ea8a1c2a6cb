"""The backtest's figures: one typed report, printed as text or as DESIGN's JSON.

The JSON object has DESIGN's keys (``since``, ``until``, ``step_seconds``, ``series``,
``occurrences``, ``rules``, ``unmatched``, ``busiest_hour``) and, beside them, the
per-pager folding (``pagers``), the failure rate the circuit was fed
(``fail_rate``) and what the backtest cannot know (``assumptions``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from remediator.backtest.guards import SIMULATED
from remediator.backtest.occurrences import PastOccurrence
from remediator.backtest.paging import PagerTally
from remediator.backtest.simulate import RuleStats, RunMark

HOUR = 3600.0
BUCKET = 300.0  # the busiest hour's timeline, in 5-minute rows
BAR_WIDTH = 40

ASSUMPTIONS = (
    "ALERTS has no annotations: rules and runbooks saw labels only",
    "no Alertmanager grouping, silences or inhibitions: every firing interval is"
    " taken as delivered, at its first evaluation",
    "every target is taken as configured: corroboration passes and every approve step"
    " is offered (the daemon offers none whose target, e.g. targets.kubernetes, is unset);"
    " the kill switch is off",
    "simulated as live (rules that set mode: dry-run stay dry-run); every step"
    " succeeds unless --fail-rate is given; a runbook's fire phase takes no time",
    "times are to the step: an occurrence starts at its first point and resolves one"
    " step after its last",
    "a target named from the wall clock (RB-01's pack date when the alert has no date"
    " label) is today's, not the occurrence's day",
    "rules' verify queries are not evaluated: every mitigation is taken to hold",
)


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class TimelineRow:
    start: float
    occurrences: int
    runs: int
    blocked: int


@dataclass(frozen=True)
class BusiestHour:
    start: float
    occurrences: int
    timeline: tuple[TimelineRow, ...]


@dataclass(frozen=True)
class Report:
    since: float
    until: float
    step: float
    series: int
    occurrences: int
    rules: Sequence[RuleStats]
    unmatched: int
    busiest: BusiestHour | None
    pagers: Mapping[str, PagerTally]
    max_pages_per_hour: int
    fail_rate: float
    retention: float | None = None  # Prometheus's storage retention, seconds

    def notes(self) -> list[str]:
        """What this range's history lacks, beyond ASSUMPTIONS."""
        if self.retention is None or self.until - self.since <= self.retention:
            return []
        kept = self.retention / 86400
        days = "1 day" if kept == 1 else f"{kept:g} days"
        return [
            f"Prometheus keeps {days} of data (its storage retention): alerts before"
            f" {iso(self.until - self.retention)} are gone from its history and not counted,"
            f" though the range asked for starts at {iso(self.since)}"
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "since": iso(self.since),
            "until": iso(self.until),
            "step_seconds": self.step,
            "series": self.series,
            "occurrences": self.occurrences,
            "rules": [self._rule_json(r) for r in self.rules],
            "unmatched": self.unmatched,
            "busiest_hour": None
            if self.busiest is None
            else {
                "start": iso(self.busiest.start),
                "occurrences": self.busiest.occurrences,
                "timeline": [
                    {
                        "start": iso(row.start),
                        "occurrences": row.occurrences,
                        "runs": row.runs,
                        "blocked": row.blocked,
                    }
                    for row in self.busiest.timeline
                ],
            },
            "pagers": {
                name: {
                    "severities": list(t.severities),
                    "paged": t.paged,
                    "folded": t.folded,
                    "summaries": t.summaries,
                }
                for name, t in self.pagers.items()
            },
            "max_pages_per_hour": self.max_pages_per_hour,
            "fail_rate": self.fail_rate,
            "retention_seconds": self.retention,
            "warnings": self.notes(),
            "assumptions": list(ASSUMPTIONS),
        }

    def _rule_json(self, r: RuleStats) -> dict[str, Any]:
        return {
            "rule": r.rule,
            "runbook": r.runbook,
            "occurrences": r.occurrences,
            "runs": r.runs,
            "blocked": dict(r.blocked),
            "approvals": r.approvals,
            "pages": dict(sorted(r.pages.items())),
            "pagers": {
                name: dict(zip(("paged", "folded"), t.by_rule.get(r.rule, [0, 0]), strict=True))
                for name, t in self.pagers.items()
            },
            "failed": r.failed,
            "escalated": r.escalated,
            "max_duration_undos": r.max_duration_undos,
            "circuit_opened": r.circuit_opened,
        }


def busiest_hour(
    occurrences: Sequence[PastOccurrence], runs: Sequence[RunMark]
) -> BusiestHour | None:
    """The clock hour in which most occurrences started (the earliest of equals)."""
    if not occurrences:
        return None
    per_hour = Counter(int(o.start // HOUR) for o in occurrences)
    hour, count = min(per_hour.items(), key=lambda item: (-item[1], item[0]))
    start = hour * HOUR
    rows = []
    for k in range(int(HOUR // BUCKET)):
        lo, hi = start + k * BUCKET, start + (k + 1) * BUCKET
        rows.append(
            TimelineRow(
                lo,
                sum(1 for o in occurrences if lo <= o.start < hi),
                sum(1 for r in runs if lo <= r.time < hi and r.acted),
                sum(1 for r in runs if lo <= r.time < hi and not r.acted),
            )
        )
    return BusiestHour(start, count, tuple(rows))


def _counts(values: Mapping[str, int]) -> str:
    shown = [f"{k} {v}" for k, v in values.items() if v]
    return ", ".join(shown) if shown else "none"


def text(report: Report) -> str:
    """The report for a human: per rule and runbook, the pagers, the busiest hour."""
    days = (report.until - report.since) / 86400
    lines = [
        f"Backtest of {iso(report.since)} .. {iso(report.until)} ({days:.1f} days),"
        f" step {report.step:g} s",
        f"{report.series} alert series, {report.occurrences} occurrences,"
        f" {report.unmatched} matched no rule",
        *(f"Warning: {note}" for note in report.notes()),
        "",
    ]
    for r in report.rules:
        lines.append(f"rule {r.rule} -> {r.runbook} ({r.severity})")
        lines.append(f"  occurrences   {r.occurrences}")
        lines.append(f"  runs          {r.runs} would have acted")
        blocked = {g: r.blocked[g] for g in SIMULATED}
        lines.append(f"  blocked       {sum(blocked.values())} ({_counts(blocked)})")
        lines.append(f"  approvals     {r.approvals} would be asked")
        lines.append(f"  pages         {_counts(dict(sorted(r.pages.items())))}")
        for name, t in report.pagers.items():
            paged, folded = t.by_rule.get(r.rule, [0, 0])
            if paged or folded:
                lines.append(f"    {name:<10}  {paged} paged, {folded} folded")
        extra = {
            "failed": r.failed,
            "escalated to P1": r.escalated,
            "undone at max_duration": r.max_duration_undos,
            "circuit opened": r.circuit_opened,
        }
        if any(extra.values()):
            lines.append(f"  also          {_counts(extra)}")
    lines.append("")
    if report.pagers:
        lines.append(f"Pagers (pagers.max_pages_per_hour {report.max_pages_per_hour}):")
        for name, t in report.pagers.items():
            lines.append(
                f"  {name:<10} takes {','.join(t.severities)}: {t.paged} incidents paged,"
                f" {t.folded} folded into {t.summaries} summary incident(s)"
            )
    else:
        lines.append("Pagers: none configured (give --config): pages counted by severity only")
    lines.append("")
    lines += _timeline(report.busiest)
    lines.append("")
    lines.append("What a backtest cannot know:")
    lines += [f"  - {a}" for a in ASSUMPTIONS]
    return "\n".join(lines)


def _timeline(busiest: BusiestHour | None) -> list[str]:
    if busiest is None:
        return ["Busiest hour: no alert fired in the range"]
    lines = [f"Busiest hour: {iso(busiest.start)}, {busiest.occurrences} occurrences started"]
    top = max((row.occurrences for row in busiest.timeline), default=0) or 1
    for row in busiest.timeline:
        bar = "#" * max(1 if row.occurrences else 0, round(BAR_WIDTH * row.occurrences / top))
        clock = datetime.fromtimestamp(row.start, UTC).strftime("%H:%M")
        lines.append(
            f"  {clock} {bar:<{BAR_WIDTH}} {row.occurrences:>5} occ"
            f" {row.runs:>5} runs {row.blocked:>5} blocked"
        )
    return lines
