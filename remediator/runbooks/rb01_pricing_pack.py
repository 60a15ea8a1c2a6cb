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

Its parts: rb01_params (params, D, lateness), rb01_diagnose (steps 1-3), rb01_serve
(step 4 and its undo), rb01_build (steps 5-6); step 7 and the declaration live here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from remediator.errors import ConfigError
from remediator.runbook_api.context import StepContext
from remediator.runbook_api.steps import Done, Runbook, Step, StepFailed
from remediator.runbooks import stuck
from remediator.runbooks.rb01_build import (
    await_build,
    mark_fresh,
    render_await_build,
    render_mark_fresh,
    render_rerun_build,
    rerun_build,
)
from remediator.runbooks.rb01_diagnose import (
    LONG_QUERIES,
    long_running_queries,
    provider_health,
    recent_packs,
    render_provider_health,
    render_recent_packs,
    render_scheduler_logs,
    scheduler_logs,
)
from remediator.runbooks.rb01_params import Params, corroborate_date, job_name, pack_date
from remediator.runbooks.rb01_serve import (
    render_serve_last_good,
    serve_last_good,
    unserve_last_good,
)


def _target(labels: Mapping[str, str], params: Any) -> str:
    return pack_date(labels, params).isoformat()


# ----------------------------------------------------------- 7 freshness gate


async def freshness_gate(*, ctx: StepContext, **_: Any) -> Done:
    http = ctx.clients.need_http()
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


def render_freshness_gate(*, ctx: StepContext, **_: Any) -> str:
    settings = ctx.clients.settings
    app = settings.targets.http.app_url if settings is not None else None
    return (
        f"POST {app or '<targets.http.app_url>'}/execute"
        ' {"pattern_id": "portfolio_overview", "portfolio_id": "test-portfolio-uuid",'
        ' "inputs": {}}  # expect 200, not 503'
    )


def _literal(text: str) -> Any:
    def render(*, ctx: StepContext, **_: Any) -> str:
        return text.strip()

    return render


STEPS: Sequence[Step] = (
    Step(
        "scheduler_logs",
        "diagnose",
        "Read the scheduler's build_pack log lines",
        scheduler_logs,
        render_scheduler_logs,
        timeout=30.0,
    ),
    Step(
        "provider_health",
        "diagnose",
        "Check the price providers' health",
        provider_health,
        render_provider_health,
        timeout=20.0,
        attempts=1,
    ),
    Step(
        "recent_packs",
        "diagnose",
        "List the last 5 pricing packs; confirm the alert's pack is late",
        recent_packs,
        render_recent_packs,
    ),
    Step(
        "long_running_queries",
        "diagnose",
        "List long-running queries (read-only)",
        long_running_queries,
        _literal(LONG_QUERIES),
    ),
    Step(
        "kill_stuck",
        "mitigate",
        "Terminate a query stuck past the threshold (RB-05's guards)",
        stuck.kill_stuck,
        stuck.render_kill_stuck,
        mutates=True,
        approval="approve",
        needs=("database",),
        idempotent=True,
        timeout=20.0,
        withhold=stuck.withhold,
    ),
    Step(
        "serve_last_good",
        "mitigate",
        "Serve the last-good pricing pack",
        serve_last_good,
        render_serve_last_good,
        mutates=True,
        undo=unserve_last_good,
    ),
    Step(
        "rerun_build",
        "mitigate",
        "Rerun the pack build as a Kubernetes Job",
        rerun_build,
        render_rerun_build,
        mutates=True,
    ),
    Step(
        "await_build",
        "verify",
        "Wait for the new pack to be built",
        await_build,
        render_await_build,
        timeout=60.0,  # one poll; the wait between polls parks the run
        attempts=1,
    ),
    Step(
        "mark_fresh",
        "mitigate",
        "Mark the new pack fresh, unmark older packs",
        mark_fresh,
        render_mark_fresh,
        mutates=True,
    ),
    Step(
        "freshness_gate",
        "verify",
        "Verify the freshness gate (POST /execute)",
        freshness_gate,
        render_freshness_gate,
        timeout=20.0,
    ),
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
