"""RB-05 Database incident, as declared steps (P0: paged before diagnosis).

Runbook order, automated:

    1 RDS instance status and pending modifications   diagnose (AWS)
    2 fail over to the standby                        approve
    3 top statements from pg_stat_statements          diagnose; skipped with the reason
                                                      when the extension is absent or
                                                      not loaded
    4 queries running longer than 30 s                diagnose
    4 who blocks whom (pg_blocking_pids)              diagnose
    - confirm the incident                            diagnose; a "database down" alert
                                                      must be true of the database
    4 terminate sessions that block others            mitigate, auto; bounded (see below)
    5 scale the instance up                           approve; records the old class
    6 point-in-time restore to a new instance         approve; never touches the source
    on resolve: nothing to undo (a terminated session, a failover and a restore cannot
    be taken back; scaling down again costs another outage, so it is left to a human
    with the recorded previous class).

The runbook says "kill if blocking critical operations". Here a session is terminated
only if it blocks another session of this database that has waited at least
``block_threshold_seconds``; never our own session, a non-client backend, a superuser
or replication role, a role in ``protected_roles`` or an application in
``protected_applications``; at most ``max_terminations`` per run. The terminate
statement re-checks all of that itself (and the session's start time, so a recycled
pid is never hit), because sessions change between the look and the act.

A payload is a claim. The terminate step is its own corroboration: it acts only on
sessions it sees blocking others past the threshold, and no label can name a session
(nothing here reads labels). A "database down" alert (``down_alerts``) must also be true
of the database: if it answers us with client connections to spare, it is not down,
and the run stops as "not corroborated" before terminating anything. (Failover was
offered for approval before that check, and stays a human's call.)

This module must never terminate a session of another database, and never build SQL
from a label: nothing here reads labels at all; the instance comes from params.

Each step is an action declared with ``@step`` at the function that builds it, so the
plan, the page, the audit trail and the run are one object. Its parts: rb05_params
(params), rb05_rds (the RDS instance: status, failover, scale up, restore),
rb05_diagnose (statements, sessions, the corroboration), rb05_terminate (the bounded
terminate); the step order lives here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from remediator.runbook_api.steps import Runbook, Step
from remediator.runbooks.rb05_diagnose import (
    blocking_sessions,
    confirm_incident,
    long_queries,
    top_statements,
)
from remediator.runbooks.rb05_params import Params
from remediator.runbooks.rb05_rds import failover, point_in_time_restore, rds_status, scale_up
from remediator.runbooks.rb05_terminate import terminate_blockers


def _target(labels: Mapping[str, str], params: object) -> str:
    # The instance comes from the params (validated with Params), never from a label.
    return Params.model_validate(params).db_instance_identifier


STEPS: Sequence[Step] = (
    rds_status,
    failover,
    top_statements,
    long_queries,
    blocking_sessions,
    confirm_incident,
    terminate_blockers,
    scale_up,
    point_in_time_restore,
)

RUNBOOK = Runbook(
    id="RB-05",
    title="Database incident",
    severity="P0",
    steps=tuple(STEPS),
    params=Params,
    target=_target,
    page_first=True,
    anchor="rb-05-database-incident",
)

# Tests and callers reach these through the runbook module.
__all__ = ["RUNBOOK", "STEPS", "Params"]
