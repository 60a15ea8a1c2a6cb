"""RB-03 Alert storm, as declared steps (P1).

Runbook order, automated:

    0 confirm the storm                diagnose; notifications in the last window_minutes
                                       must average storm_per_minute, or the run is "not
                                       corroborated" and changes nothing
    1 global cooldown to 60 min        mitigate; records each alert's old cooldown; undo;
                                       never an exempt alert
    2 top offenders (last 5 min)       diagnose
    3 disable the top N offenders      mitigate; only those above the threshold, never
                                       an exempt alert; they stay disabled on resolve and
                                       are listed for review
    4 dedupe: duplicate query and      diagnose
      unique index present
    4 delete duplicate notifications   approve; deleted rows recorded (not undone)
    5 scale the evaluator to 0         approve; previous replicas recorded; undo

On resolve: each alert's own previous cooldown comes back (only where it still holds
the value we set), the evaluator gets its replicas back (only if still at 0), and
the disabled offenders are listed for a human to fix and re-enable. Step 6 of the
runbook (rewriting faulty rules) is left to a human.

Duplicates are grouped by UTC day, as the unique index uq_notify_user_alert_day does;
the runbook's ``date_trunc('day', created_at)`` would follow the session time zone
and disagree with the index. This runbook reads no alert label at all, so no label
can reach its SQL or the cluster. It must never delete a group's first notification,
and never cool down or disable an alert listed in ``exempt_alerts`` (security and
compliance notices must reach users during a storm too).

Its parts: rb03_params (params), rb03_alerts (steps 0-3 and the resolve review),
rb03_dedupe (step 4); step 5 (the evaluator) and the declaration live here.
"""

from __future__ import annotations

from collections.abc import Sequence

from remediator.runbook_api.action_steps import step
from remediator.runbook_api.actions import KubeScale
from remediator.runbook_api.context import StepContext
from remediator.runbook_api.steps import Runbook, Step
from remediator.runbooks import plan
from remediator.runbooks.rb03_alerts import (
    TOP_OFFENDERS,
    confirm_storm,
    disable_offenders,
    global_cooldown,
    review_offenders,
    top_offenders,
)
from remediator.runbooks.rb03_dedupe import UNIQUE_INDEX, check_dedupe, delete_duplicates
from remediator.runbooks.rb03_params import Params

# ------------------------------------------------ 5 scale evaluator (approve)


@step(
    "scale_evaluator_down",
    "mitigate",
    "Scale the alert evaluator (scheduler) to 0",
    mutates=True,
    approval="approve",
    needs=("kubernetes",),
    temporary=True,  # the recorded replicas come back, only if still at 0
)
def scale_evaluator_down(ctx: StepContext[Params]) -> KubeScale:
    return KubeScale(ctx.params.evaluator_deployment, 0, plan.namespace(ctx))


STEPS: Sequence[Step] = (
    confirm_storm,
    global_cooldown,
    top_offenders,
    disable_offenders,
    check_dedupe,
    delete_duplicates,
    scale_evaluator_down,
)
RESOLVE_STEPS: Sequence[Step] = (review_offenders,)

RUNBOOK = Runbook(
    id="RB-03",
    title="Alert storm",
    severity="P1",
    steps=tuple(STEPS),
    resolve_steps=tuple(RESOLVE_STEPS),
    params=Params,
    target=lambda labels, params: "global",
    anchor="rb-03-alert-storm",
)

# Tests and callers reach these through the runbook module.
__all__ = [
    "RESOLVE_STEPS",
    "RUNBOOK",
    "STEPS",
    "TOP_OFFENDERS",
    "UNIQUE_INDEX",
    "Params",
]
