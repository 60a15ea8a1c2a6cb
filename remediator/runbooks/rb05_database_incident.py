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

Its parts: rb05_params (params), rb05_rds (the RDS instance: status, failover, scale
up, restore), rb05_diagnose (statements, sessions, the corroboration), rb05_terminate
(the bounded terminate); the declaration lives here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from remediator.runbook_api.steps import Runbook, Step
from remediator.runbooks.rb05_diagnose import (
    blocking_sessions,
    confirm_incident,
    long_queries,
    render_blocking_sessions,
    render_confirm_incident,
    render_long_queries,
    render_top_statements,
    top_statements,
)
from remediator.runbooks.rb05_params import Params
from remediator.runbooks.rb05_rds import (
    failover,
    point_in_time_restore,
    rds_status,
    render_failover,
    render_point_in_time_restore,
    render_rds_status,
    render_scale_up,
    scale_up,
)
from remediator.runbooks.rb05_terminate import render_terminate_blockers, terminate_blockers


def _target(labels: Mapping[str, str], params: Any) -> str:
    return str(params.db_instance_identifier)


STEPS: Sequence[Step] = (
    Step(
        "rds_status",
        "diagnose",
        "RDS instance status and pending modifications",
        rds_status,
        render_rds_status,
        timeout=20.0,
    ),
    Step(
        "failover",
        "mitigate",
        "Fail over to the standby (if the primary is down)",
        failover,
        render_failover,
        mutates=True,
        approval="approve",
        needs=("aws",),
        timeout=60.0,
        attempts=1,
    ),
    Step(
        "top_statements",
        "diagnose",
        "Top statements from pg_stat_statements",
        top_statements,
        render_top_statements,
        timeout=15.0,
    ),
    Step(
        "long_queries",
        "diagnose",
        "Queries running longer than the threshold",
        long_queries,
        render_long_queries,
        timeout=15.0,
    ),
    Step(
        "blocking_sessions",
        "diagnose",
        "Who blocks whom",
        blocking_sessions,
        render_blocking_sessions,
        timeout=15.0,
    ),
    Step(
        "confirm_incident",
        "diagnose",
        "Confirm a database-down claim against the database",
        confirm_incident,
        render_confirm_incident,
        # A claim that could not be checked is not confirmed.
        stop_on_failure=True,
        timeout=15.0,
        attempts=1,
    ),
    Step(
        "terminate_blockers",
        "mitigate",
        "Terminate sessions that block others",
        terminate_blockers,
        render_terminate_blockers,
        mutates=True,
        idempotent=True,
        timeout=20.0,
    ),
    Step(
        "scale_up",
        "mitigate",
        "Scale the instance up",
        scale_up,
        render_scale_up,
        mutates=True,
        approval="approve",
        needs=("aws",),
        timeout=60.0,
        attempts=1,
    ),
    Step(
        "point_in_time_restore",
        "mitigate",
        "Point-in-time restore into a new instance (only if data is corrupt)",
        point_in_time_restore,
        render_point_in_time_restore,
        mutates=True,
        approval="approve",
        needs=("aws",),
        timeout=60.0,
        attempts=1,
    ),
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
__all__ = [
    "RUNBOOK",
    "STEPS",
    "Params",
    "render_point_in_time_restore",
]
