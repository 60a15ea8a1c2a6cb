"""The pages the simulated runs would send, and the folding each pager would do.

Which pages (as the engine sends them):
- a run that acts: its page, at the runbook's severity (a P0 runbook's first page and
  its trigger share one incident: one page);
- a notify-level run (RB-02) still firing after ``escalate_after``: its escalation,
  as P1, on the run's incident (a new incident on pagers that did not take the first);
- runs a guard stopped: one page per rule, guard and clock hour (an open circuit
  stops runs without a page of its own, except for a P0 runbook);
- a circuit that opens: one P1 page per runbook, an incident that stays open.

Which pager gets a severity: the daemon's own pagers say (``build_pagers``). Folding follows
``state/folds.py``: a pager opens at most ``pagers.max_pages_per_hour`` new incidents
in any rolling hour; past that, new incidents fold into one summary incident per
pager and window (an hour from its first fold). A trigger on an incident the pager
already has is an update: it neither counts nor folds. A P0 whose runbook acted is
never folded, and counts toward the budget like any other.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from remediator.state.folds import WINDOW


@dataclass(frozen=True, slots=True)
class PageEvent:
    """A trigger the engine would queue at ``time`` for incident ``key``."""

    time: float
    seq: int  # order of creation, to break ties in time
    rule: str
    severity: str
    key: str
    never_fold: bool = False


@dataclass
class PagerTally:
    severities: tuple[str, ...]
    paged: int = 0  # new incidents of its own
    folded: int = 0  # new incidents folded into a summary
    summaries: int = 0  # summary incidents opened
    updates: int = 0  # triggers on incidents it already had
    by_rule: dict[str, list[int]] = field(default_factory=dict)  # rule -> [paged, folded]


class _PagerState:
    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.opened: deque[float] = deque()  # times of new incidents, last hour
        self.keys: set[str] = set()
        self.summary_start: float | None = None


def fold(
    events: Sequence[PageEvent], routes: Mapping[str, Sequence[str]], budget: int
) -> dict[str, PagerTally]:
    """Each pager's tally for ``events`` (in any order), as the outbox would fold them."""
    tallies = {name: PagerTally(tuple(sev)) for name, sev in routes.items()}
    states = {name: _PagerState(budget) for name in routes}
    for ev in sorted(events, key=lambda e: (e.time, e.seq)):
        for name, tally in tallies.items():
            if ev.severity not in tally.severities:
                continue
            state = states[name]
            per_rule = tally.by_rule.setdefault(ev.rule, [0, 0])
            if ev.key in state.keys:
                tally.updates += 1
                continue
            state.keys.add(ev.key)
            while state.opened and state.opened[0] <= ev.time - WINDOW:
                state.opened.popleft()
            if ev.never_fold or len(state.opened) < state.budget:
                state.opened.append(ev.time)
                tally.paged += 1
                per_rule[0] += 1
                continue
            if state.summary_start is None or state.summary_start <= ev.time - WINDOW:
                state.summary_start = ev.time
                tally.summaries += 1
            tally.folded += 1
            per_rule[1] += 1
    return tallies
