"""How a run ended, from its fire-phase step outcomes (a pure function).

``runbook_runs_total{outcome}`` and the run row carry one of:

- ``planned``: dry-run (or the kill switch held every mutation): the plan was shown,
  nothing was executed, so nothing can have failed to mitigate;
- ``mitigated``: live, nothing failed and nothing waits for a human;
- ``partial``: live, something was done but a step failed or an approval is pending;
- ``failed``: live, a step failed and no mitigation was applied;
- ``blocked``: a guard stopped the run before it changed anything (decided by the
  runner, which never asks this function).

A step skipped because its optional target is not configured is neither a failure nor
pending: the operator chose that config. This module must never read the store.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

RunOutcome = Literal["mitigated", "partial", "failed", "planned", "blocked"]
RUN_OUTCOMES: tuple[RunOutcome, ...] = ("mitigated", "partial", "failed", "planned", "blocked")


@dataclass(frozen=True, slots=True)
class StepResult:
    outcome: str  # applied | skipped | failed | dry_run | awaiting_approval | ...
    mutates: bool


def run_outcome(mode: str, steps: Iterable[StepResult]) -> RunOutcome:
    results = list(steps)
    if mode != "live":
        return "planned"
    applied = any(s.outcome == "applied" and s.mutates for s in results)
    failed = any(s.outcome == "failed" for s in results)
    pending = any(s.outcome == "awaiting_approval" for s in results)
    if failed:
        return "partial" if applied else "failed"
    if pending:
        return "partial"
    return "mitigated"
