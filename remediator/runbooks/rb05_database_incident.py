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
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import Field, field_validator

from remediator.clients.database import QueryRejected
from remediator.errors import InputRejected, NotCorroborated, TargetTimeout, TargetUnavailable
from remediator.runbook_api.context import StepContext
from remediator.runbook_api.steps import Done, Runbook, Skip, Step, StepFailed
from remediator.runbooks import plan, sessions
from remediator.validation import aws as aws_checks

_QUERY_CHARS = 300
_BUSY = frozenset(
    {
        "rebooting",
        "failing-over",
        "modifying",
        "upgrading",
        "maintenance",
        "creating",
        "deleting",
        "backtracking",
    }
)


def _rds(field: str, value: str) -> str:
    try:
        return aws_checks.check_rds_identifier(field, value)
    except InputRejected as exc:
        raise ValueError(exc.reason) from None


class Params(sessions.SessionGuard):
    db_instance_identifier: str = "dawsos-prod"
    # Set for Aurora: failover then uses failover-db-cluster.
    db_cluster_identifier: str | None = None
    top_statements: int = Field(10, ge=1, le=50)
    long_query_seconds: float = Field(30.0, ge=0, le=86_400)
    # A blocker is terminated only once someone has waited this long behind it.
    block_threshold_seconds: float = Field(60.0, ge=0, le=86_400)
    # Alerts that claim the database is down. Such a claim holds only if the database
    # does not answer us, or has fewer than `connection_headroom` client connections
    # left (clients like the exporter are refused); otherwise nothing is terminated.
    down_alerts: tuple[str, ...] = ("DatabaseDown",)
    connection_headroom: int = Field(3, ge=0, le=100_000)
    scale_up_class: str = "db.r6g.2xlarge"
    # Restore to this long before the alert started (the last moment known good).
    pitr_minutes_before_alert: int = Field(15, ge=0, le=7 * 24 * 60)

    @field_validator("db_instance_identifier")
    @classmethod
    def _instance(cls, v: str) -> str:
        return _rds("db_instance_identifier", v)

    @field_validator("db_cluster_identifier")
    @classmethod
    def _cluster(cls, v: str | None) -> str | None:
        return None if v is None else _rds("db_cluster_identifier", v)

    @field_validator("scale_up_class")
    @classmethod
    def _class(cls, v: str) -> str:
        try:
            return aws_checks.check_instance_class("scale_up_class", v)
        except InputRejected as exc:
            raise ValueError(exc.reason) from None

    @field_validator("down_alerts")
    @classmethod
    def _names(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if len(v) > 100 or any(not 0 < len(n) <= 63 for n in v):
            raise ValueError("at most 100 names of 1..63 characters")
        return v


def _target(labels: Mapping[str, str], params: Any) -> str:
    return str(params.db_instance_identifier)


def _seconds(value: Any) -> float:
    return round(float(value or 0.0), 1)


# ------------------------------------------------------------ 1 RDS status


async def rds_status(*, ctx: StepContext, **_: Any) -> Done:
    p: Params = ctx.params
    aws = ctx.clients.need("aws")
    st = await aws.describe_db_instance(p.db_instance_identifier)
    pending = dict(st.pending_modified)
    words = (
        f"{st.identifier} is {st.status} ({st.instance_class}, "
        f"{'Multi-AZ' if st.multi_az else 'Single-AZ'})"
    )
    words += f"; pending modifications: {pending}" if pending else "; no pending modifications"
    return Done(
        words,
        data={
            "status": st.status,
            "instance_class": st.instance_class,
            "multi_az": st.multi_az,
            "pending_modified": pending,
        },
    )


def render_rds_status(*, ctx: StepContext, **_: Any) -> str:
    p: Params = ctx.params
    return f"aws rds describe-db-instances --db-instance-identifier {p.db_instance_identifier}"


# -------------------------------------------------------------- 2 failover


async def failover(*, ctx: StepContext, **_: Any) -> Done | Skip:
    p: Params = ctx.params
    aws = ctx.clients.need("aws")
    st = await aws.describe_db_instance(p.db_instance_identifier)
    if st.status in _BUSY:
        return Skip(f"{st.identifier} is {st.status}: a failover or change is already under way")
    if p.db_cluster_identifier is not None:
        await aws.failover_db_cluster(p.db_cluster_identifier)
        what = f"failed over cluster {p.db_cluster_identifier}"
    else:
        await aws.reboot_db_instance_with_failover(p.db_instance_identifier)
        what = f"rebooted {p.db_instance_identifier} with failover to its standby"
    return Done(
        f"{what} (status was {st.status}); expect 1-3 minutes",
        data={"previous_status": st.status},
        changes={"failover": p.db_cluster_identifier or p.db_instance_identifier},
    )


def render_failover(*, ctx: StepContext, **_: Any) -> str:
    p: Params = ctx.params
    if p.db_cluster_identifier is not None:
        return f"aws rds failover-db-cluster --db-cluster-identifier {p.db_cluster_identifier}"
    return (
        f"aws rds reboot-db-instance --db-instance-identifier {p.db_instance_identifier}"
        " --force-failover"
    )


# ------------------------------------------------------- 3 top statements

_HAS_PGSS = "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements')"
_TOP = """
SELECT left(query, 300) AS query, calls, mean_exec_time, total_exec_time, rows
FROM pg_stat_statements
ORDER BY total_exec_time DESC
LIMIT $1
"""


async def top_statements(*, ctx: StepContext, **_: Any) -> Done | Skip:
    p: Params = ctx.params
    db = ctx.clients.need("database")
    if not await db.fetchval(_HAS_PGSS):
        return Skip(
            "pg_stat_statements is not installed in this database (CREATE EXTENSION"
            " pg_stat_statements; it needs shared_preload_libraries)"
        )
    try:
        rows = await db.fetch(_TOP, p.top_statements)
    except QueryRejected as exc:
        # Installed but not preloaded (55000), or an old version's column names.
        return Skip(f"pg_stat_statements cannot be read: {str(exc)[:200]}")
    top = [
        {
            "query": r["query"],
            "calls": int(r["calls"]),
            "mean_ms": round(float(r["mean_exec_time"]), 1),
            "total_ms": round(float(r["total_exec_time"]), 1),
            "rows": int(r["rows"]),
        }
        for r in rows
    ]
    if not top:
        return Done("pg_stat_statements has no statements yet", data={"top": []})
    head = top[0]
    return Done(
        f"top {len(top)} statements by total time; #1: {head['total_ms']} ms total,"
        f" {head['calls']} calls: {' '.join(head['query'].split())[:120]}",
        data={"top": top},
    )


def render_top_statements(*, ctx: StepContext, **_: Any) -> str:
    p: Params = ctx.params
    return f"{_HAS_PGSS};\n{plan.sql(_TOP, p.top_statements)}"


# ------------------------------------------------------- 4 long-running queries

_LONG = """
SELECT pid, usename, application_name,
       extract(epoch FROM now() - query_start) AS seconds, left(query, 300) AS query
FROM pg_stat_activity
WHERE state = 'active'
  AND datname = current_database()
  AND pid <> pg_backend_pid()
  AND query NOT LIKE '%pg_stat_activity%'
  AND now() - query_start > make_interval(secs => $1)
ORDER BY seconds DESC
LIMIT 50
"""


async def long_queries(*, ctx: StepContext, **_: Any) -> Done:
    p: Params = ctx.params
    db = ctx.clients.need("database")
    rows = await db.fetch(_LONG, p.long_query_seconds)
    found = [
        {
            "pid": int(r["pid"]),
            "user": r["usename"],
            "application": r["application_name"],
            "seconds": _seconds(r["seconds"]),
            "query": r["query"],
        }
        for r in rows
    ]
    if not found:
        return Done(
            f"no query has run longer than {p.long_query_seconds:g} s", data={"queries": []}
        )
    desc = ", ".join(f"pid {q['pid']} ({q['user']}, {q['seconds']} s)" for q in found[:5])
    return Done(
        f"{len(found)} queries running longer than {p.long_query_seconds:g} s: {desc}",
        data={"queries": found},
    )


def render_long_queries(*, ctx: StepContext, **_: Any) -> str:
    p: Params = ctx.params
    return plan.sql(_LONG, p.long_query_seconds)


# ------------------------------------------------------------ 4 who blocks whom

_BLOCKING = """
SELECT w.pid AS blocked_pid, w.usename AS blocked_user,
       extract(epoch FROM now() - w.query_start) AS waited,
       left(w.query, 300) AS blocked_query,
       b.pid AS blocker_pid, b.usename AS blocker_user,
       b.application_name AS blocker_application, b.state AS blocker_state,
       left(b.query, 300) AS blocker_query
FROM pg_stat_activity AS w
CROSS JOIN LATERAL unnest(pg_blocking_pids(w.pid)) AS bp(pid)
JOIN pg_stat_activity AS b ON b.pid = bp.pid
WHERE w.datname = current_database()
ORDER BY waited DESC, w.pid, b.pid
LIMIT 100
"""


async def blocking_sessions(*, ctx: StepContext, **_: Any) -> Done:
    db = ctx.clients.need("database")
    rows = await db.fetch(_BLOCKING)
    pairs = [
        {
            "blocked_pid": int(r["blocked_pid"]),
            "blocked_user": r["blocked_user"],
            "waited": _seconds(r["waited"]),
            "blocked_query": r["blocked_query"],
            "blocker_pid": int(r["blocker_pid"]),
            "blocker_user": r["blocker_user"],
            "blocker_application": r["blocker_application"],
            "blocker_state": r["blocker_state"],
            "blocker_query": r["blocker_query"],
        }
        for r in rows
    ]
    if not pairs:
        return Done("no session is waiting on another", data={"pairs": []})
    desc = ", ".join(
        f"{x['blocker_pid']} ({x['blocker_user']}) blocks {x['blocked_pid']} for {x['waited']} s"
        for x in pairs[:5]
    )
    return Done(f"{len(pairs)} lock waits: {desc}", data={"pairs": pairs})


def render_blocking_sessions(*, ctx: StepContext, **_: Any) -> str:
    return plan.sql(_BLOCKING)


# --------------------------------------------------------- confirm the incident

# Client connections in use, and how many clients may have (the superuser reserve is
# not theirs).
_CONNECTIONS = """
SELECT count(*) FILTER (WHERE backend_type = 'client backend') AS used,
       current_setting('max_connections')::int
         - current_setting('superuser_reserved_connections')::int AS usable
FROM pg_stat_activity
"""


async def confirm_incident(*, ctx: StepContext, **_: Any) -> Done | Skip:
    """Corroborates a "database down" alert before any session is terminated."""
    p: Params = ctx.params
    name = ctx.alert.alertname
    if name not in p.down_alerts:
        return Skip(
            f"{name} claims no outage to check here: the terminate step acts only on"
            f" sessions it sees blocking others for {p.block_threshold_seconds:g} s or more"
        )
    try:
        row = await ctx.clients.need("database").fetchrow(_CONNECTIONS)
    except (TargetUnavailable, TargetTimeout) as exc:
        return Done(
            f"the database does not answer us either ({str(exc)[:160]}): {name} confirmed",
            data={"down": True},
        )
    assert row is not None
    used, usable = int(row["used"]), int(row["usable"])
    free = usable - used
    if free < p.connection_headroom:
        return Done(
            f"the database answers us, but {used} of {usable} client connections are in"
            f" use: clients are refused; {name} confirmed",
            data={"down": True, "used": used, "usable": usable},
        )
    raise NotCorroborated(
        f"{name} claims the database is down, but it answers with {free} of {usable}"
        " client connections free: nothing terminated (fail over only after checking"
        " by hand)"
    )


def render_confirm_incident(*, ctx: StepContext, **_: Any) -> str:
    p: Params = ctx.params
    if ctx.alert.alertname not in p.down_alerts:
        return f"-- {ctx.alert.alertname} is not in down_alerts: nothing to check"
    return (
        f"{_CONNECTIONS.strip()}\n-- down only if this does not answer, or fewer than"
        f" {p.connection_headroom} client connections are free"
    )


# --------------------------------------------------------- 4 terminate blockers

# Every blocker of this database, with the reason it must be spared (NULL: it may go).
_BLOCKERS = f"""
WITH waits AS (
    SELECT bp.pid AS blocker, w.pid AS waiter, now() - w.query_start AS waited
    FROM pg_stat_activity AS w
    CROSS JOIN LATERAL unnest(pg_blocking_pids(w.pid)) AS bp(pid)
    WHERE w.datname = current_database()
)
SELECT b.pid, b.backend_start, b.usename, b.application_name, b.state,
       left(b.query, 300) AS query,
       count(*) AS blocking,
       extract(epoch FROM max(waits.waited)) AS max_wait,
       {sessions.PROTECTED_REASON} AS protected
FROM waits
JOIN pg_stat_activity AS b ON b.pid = waits.blocker
LEFT JOIN pg_roles AS r ON r.rolname = b.usename
GROUP BY b.pid, b.backend_start, b.usename, b.application_name, b.state, b.query,
         b.datname, b.backend_type, r.rolsuper, r.rolreplication
ORDER BY blocking DESC, max_wait DESC, b.pid
"""

# Re-checked at the moment of acting (sessions.terminate_sql): still blocking someone
# who has waited past the threshold ($5).
_TERMINATE = sessions.terminate_sql("""EXISTS (
      SELECT 1 FROM pg_stat_activity AS w
      WHERE w.datname = current_database()
        AND b.pid = ANY(pg_blocking_pids(w.pid))
        AND now() - w.query_start >= make_interval(secs => $5))""")


async def terminate_blockers(*, ctx: StepContext, **_: Any) -> Done | Skip:
    p: Params = ctx.params
    db = ctx.clients.need("database")
    roles, apps = list(p.protected_roles), list(p.protected_applications)
    rows = await db.fetch(_BLOCKERS, roles, apps)
    cands = [
        {
            "pid": int(r["pid"]),
            "backend_start": r["backend_start"],
            "user": r["usename"],
            "application": r["application_name"],
            "state": r["state"],
            "query": r["query"],
            "blocking": int(r["blocking"]),
            "max_wait": _seconds(r["max_wait"]),
            "protected": r["protected"],
        }
        for r in rows
    ]
    if not cands:
        return Skip("no session blocks another")
    spared = [c for c in cands if c["protected"] is not None]
    young = [
        c
        for c in cands
        if c["protected"] is None and float(c["max_wait"]) < p.block_threshold_seconds
    ]
    eligible = [
        c
        for c in cands
        if c["protected"] is None and float(c["max_wait"]) >= p.block_threshold_seconds
    ]
    chosen, over = eligible[: p.max_terminations], eligible[p.max_terminations :]
    hit = await sessions.terminate(db, _TERMINATE, chosen, p, p.block_threshold_seconds)
    terminated = [
        {k: v for k, v in c.items() if k != "backend_start"} for c in chosen if c["pid"] in hit
    ]
    notes = sessions.notes(
        spared=spared,
        over=over,
        gone=[c for c in chosen if c["pid"] not in hit],
        limit=p.max_terminations,
        gone_words="no longer blocking",
    )
    if young:
        notes.insert(
            1 if spared else 0,
            f"below the {p.block_threshold_seconds:g} s threshold: "
            + ", ".join(sessions.who(c) for c in young),
        )
    record = {
        "spared": [{"pid": c["pid"], "user": c["user"], "reason": c["protected"]} for c in spared],
        "terminated": terminated,
    }
    if not terminated:
        return Skip("terminated nothing; " + "; ".join(notes), data=record)
    head = "terminated " + ", ".join(
        f"{sessions.who(c)} blocking {c['blocking']} for {c['max_wait']} s" for c in terminated
    )
    # A terminated session cannot be brought back: recorded for the audit, no undo.
    return Done(
        "; ".join([head, *notes]),
        data=record,
        changes={
            "terminated": [
                {
                    "pid": c["pid"],
                    "user": c["user"],
                    "application": c["application"],
                    "query": c["query"],
                }
                for c in terminated
            ]
        },
    )


def render_terminate_blockers(*, ctx: StepContext, **_: Any) -> str:
    p: Params = ctx.params
    return (
        f"{plan.sql(_BLOCKERS, list(p.protected_roles), list(p.protected_applications))};\n"
        f"-- then, for at most {p.max_terminations} unprotected blockers that made someone"
        f" wait >= {p.block_threshold_seconds:g} s:\n"
        + plan.sql(
            _TERMINATE,
            "<chosen pids>",
            "<their backend_start>",
            list(p.protected_roles),
            list(p.protected_applications),
            p.block_threshold_seconds,
        )
    )


# --------------------------------------------------------------- 5 scale up


async def scale_up(*, ctx: StepContext, **_: Any) -> Done | Skip:
    p: Params = ctx.params
    aws = ctx.clients.need("aws")
    st = await aws.describe_db_instance(p.db_instance_identifier)
    if st.instance_class == p.scale_up_class:
        return Skip(f"{st.identifier} already runs as {p.scale_up_class}")
    if st.status in _BUSY:
        return Skip(f"{st.identifier} is {st.status}: wait for it to be available")
    previous = await aws.modify_db_instance_class(p.db_instance_identifier, p.scale_up_class)
    # Kept after resolve (scaling back costs another outage); the record says how.
    return Done(
        f"scaling {p.db_instance_identifier} from {previous} to {p.scale_up_class}"
        f" (5-15 min; Multi-AZ reduces downtime); to go back later: aws rds"
        f" modify-db-instance --db-instance-identifier {p.db_instance_identifier}"
        f" --db-instance-class {previous} --apply-immediately",
        data={"previous_class": previous, "new_class": p.scale_up_class},
        changes={
            "instance": p.db_instance_identifier,
            "previous_class": previous,
            "new_class": p.scale_up_class,
        },
    )


def render_scale_up(*, ctx: StepContext, **_: Any) -> str:
    p: Params = ctx.params
    return (
        f"aws rds modify-db-instance --db-instance-identifier {p.db_instance_identifier}"
        f" --db-instance-class {p.scale_up_class} --apply-immediately"
    )


# ------------------------------------------------------ 6 point-in-time restore


def _restore_plan(ctx: StepContext) -> tuple[datetime, str]:
    p: Params = ctx.params
    try:
        started = datetime.fromisoformat(ctx.alert.starts_at.replace("Z", "+00:00"))
    except ValueError:
        raise StepFailed(f"alert startsAt {ctx.alert.starts_at[:40]!r} is not a time") from None
    if started.tzinfo is None:
        started = started.replace(tzinfo=UTC)
    when = (started - timedelta(minutes=p.pitr_minutes_before_alert)).astimezone(UTC)
    when = when.replace(microsecond=0)
    target = f"{p.db_instance_identifier[:45]}-restore-{when:%Y%m%d%H%M}"
    return when, aws_checks.check_rds_identifier("target", target)


async def point_in_time_restore(*, ctx: StepContext, **_: Any) -> Done:
    p: Params = ctx.params
    when, target = _restore_plan(ctx)
    aws = ctx.clients.need("aws")
    await aws.restore_db_instance_to_point_in_time(p.db_instance_identifier, target, when)
    return Done(
        f"restoring {p.db_instance_identifier} as of {when:%Y-%m-%dT%H:%M:%SZ} into new"
        f" instance {target}; verify it (SELECT count(*) FROM portfolios) before"
        " switching DATABASE_URL by hand",
        data={"target": target, "restore_time": when.isoformat()},
        changes={"created_instance": target},
    )


def render_point_in_time_restore(*, ctx: StepContext, **_: Any) -> str:
    p: Params = ctx.params
    when, target = _restore_plan(ctx)
    return (
        f"aws rds restore-db-instance-to-point-in-time --source-db-instance-identifier"
        f" {p.db_instance_identifier} --target-db-instance-identifier {target}"
        f" --restore-time {when:%Y-%m-%dT%H:%M:%SZ}"
        "  # only if data corruption is confirmed; the switch-over stays manual"
    )


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
