"""RB-01 Pricing pack build failure, as declared steps (P1).

Runbook order, automated:

    1 scheduler logs (build_pack lines)      diagnose
    2 provider health                        diagnose
    3 last 5 packs; long-running queries     diagnose (read-only); corroborates the
                                             alert: D's pack must be late (below)
    3 kill if stuck                          approve; RB-05's guarded terminate
    4 serve the last-good pack               mitigate, only if no pack is fresh; undo
    5 rerun the build as a Kubernetes Job    mitigate, bounded attempts per date, only
                                             if the providers are healthy
    6 wait for the new pack, mark it fresh   verify + mitigate (one transaction)
      and unmark older packs
    7 freshness gate (POST /execute = 200)   verify

The pack date D comes from the alert's ``date`` label when it has one (checked:
ISO date within ``date_window_days`` of today) and is otherwise today in
``timezone``. D is the lock/cooldown target. ``timezone`` defaults to
America/New_York: the runbook's SLO is "ready by 00:15 local time" without naming the
zone, and the pack holds US listings' closes (Polygon, FMP) and FRED's series, whose
trading day is New York's. Set it to the zone your scheduler's midnight is in.

A payload is a claim. The run acts only for a pack that is late: D is today (in
``timezone``), or yesterday until ``late_grace_minutes`` after midnight (an alert
raised just before midnight), never a future or an older date; and no pack dated D or
later is fresh. Otherwise step 3 stops the run as "not corroborated" before anything
changes. That read uses only the columns the runbook's own SQL names (id, date,
is_fresh), and the mitigations act only when it confirmed exactly D.

On resolve: the "serve last-good" flip is put back only when that is safe. If our
verified build marked a newer pack, it already unmarked the old one (nothing to
restore). If no newer pack is fresh, unmarking the last-good pack would bring the 503s
back, so it is kept fresh and the page says so. Marking the verified pack fresh is
never undone: it is the fix, not a temporary mitigation.

A stuck query is terminated only on approval, through RB-05's guards (``stuck``).
This module must never start a second build while one runs, never exceed the attempts per
date, and never put an unchecked label into SQL or a Job.

Each step is an action declared with ``@step`` at the function that builds it: the
plan, the page, the audit row and the run are that one object. Its parts: rb01_params
(params, D, lateness), rb01_diagnose (steps 1-3), stuck (step 3's kill), rb01_serve
(step 4 and its undo), rb01_build (steps 5-6); step 7 and the declaration live here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from remediator.errors import ConfigError
from remediator.runbook_api.action_steps import step
from remediator.runbook_api.context import Clients, StepContext
from remediator.runbook_api.steps import Done, Need, Runbook, Step, StepFailed
from remediator.runbooks.rb01_build import await_build, mark_fresh, rerun_build
from remediator.runbooks.rb01_diagnose import (
    long_running_queries,
    provider_health,
    recent_packs,
    scheduler_logs,
)
from remediator.runbooks.rb01_params import Params, corroborate_date, job_name, pack_date
from remediator.runbooks.rb01_serve import serve_last_good
from remediator.runbooks.stuck import kill_stuck


def _target(labels: Mapping[str, str], params: Any) -> str:
    return pack_date(labels, params).isoformat()


# ----------------------------------------------------------- 7 freshness gate


@dataclass(frozen=True)
class FreshnessGate:
    """The app's own freshness gate: POST /execute must answer 200, not 503."""

    app_url: str | None  # targets.http.app_url (None: not configured)

    needs: ClassVar[Need] = "http"
    mutates: ClassVar[bool] = False

    def render(self) -> str:
        return (
            f"POST {self.app_url or '<targets.http.app_url>'}/execute"
            ' {"pattern_id": "portfolio_overview", "portfolio_id": "test-portfolio-uuid",'
            ' "inputs": {}}  # expect 200, not 503'
        )

    async def execute(self, clients: Clients) -> Done:
        http = clients.need_http()
        try:
            result = await http.freshness_gate()
        except ConfigError as exc:
            raise StepFailed(str(exc)) from exc
        if result.ok:
            return Done(
                "POST /execute answered 200: valuations are served",
                data={"status_code": result.status_code},
            )
        why = " (pack warming: no fresh pack)" if result.warming else ""
        if result.auth_failed:
            why = " (the app refused targets.http.app_token: set or renew it)"
        raise StepFailed(f"POST /execute answered {result.status_code}{why}: {result.detail}")


@step(
    "freshness_gate",
    "verify",
    "Verify the freshness gate (POST /execute)",
    mutates=False,
    timeout=20.0,
)
def freshness_gate(ctx: StepContext) -> FreshnessGate:
    settings = ctx.clients.settings
    return FreshnessGate(settings.targets.http.app_url if settings is not None else None)


STEPS: Sequence[Step] = (
    scheduler_logs,
    provider_health,
    recent_packs,
    long_running_queries,
    kill_stuck,
    serve_last_good,
    rerun_build,
    await_build,
    mark_fresh,
    freshness_gate,
)

RUNBOOK = Runbook(
    id="RB-01",
    title="Pricing pack build failure",
    severity="P1",
    steps=tuple(STEPS),
    params=Params,
    target=_target,
    anchor="rb-01-pricing-pack-build-failure",
)

# Tests and callers reach these through the runbook module.
__all__ = [
    "RUNBOOK",
    "STEPS",
    "Params",
    "corroborate_date",
    "freshness_gate",
    "job_name",
    "pack_date",
]
