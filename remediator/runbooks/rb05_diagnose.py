"""RB-05 steps 3 and 4, read-only: top statements, long-running queries, who blocks whom;
and the corroboration of a "database down" alert (it must be true of the database).
"""

from __future__ import annotations

from typing import Any

from remediator.errors import NotCorroborated, QueryRejected, TargetTimeout, TargetUnavailable
from remediator.runbook_api.context import StepContext
from remediator.runbook_api.steps import Done, Skip
from remediator.runbooks import plan
from remediator.runbooks.rb05_params import Params, rounded_seconds

# ------------------------------------------------------- 3 top statements

_HAS_PGSS = "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements')"
_TOP = """
SELECT left(query, 300) AS query, calls, mean_exec_time, total_exec_time, rows
FROM pg_stat_statements
ORDER BY total_exec_time DESC
LIMIT $1
"""


async def top_statements(*, ctx: StepContext, **_: Any) -> Done | Skip:
    p = ctx.params_as(Params)
    db = ctx.clients.need_database()
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
    p = ctx.params_as(Params)
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
    p = ctx.params_as(Params)
    db = ctx.clients.need_database()
    rows = await db.fetch(_LONG, p.long_query_seconds)
    found = [
        {
            "pid": int(r["pid"]),
            "user": r["usename"],
            "application": r["application_name"],
            "seconds": rounded_seconds(r["seconds"]),
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
    p = ctx.params_as(Params)
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
    db = ctx.clients.need_database()
    rows = await db.fetch(_BLOCKING)
    pairs = [
        {
            "blocked_pid": int(r["blocked_pid"]),
            "blocked_user": r["blocked_user"],
            "waited": rounded_seconds(r["waited"]),
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
    p = ctx.params_as(Params)
    name = ctx.alert.alertname
    if name not in p.down_alerts:
        return Skip(
            f"{name} claims no outage to check here: the terminate step acts only on"
            f" sessions it sees blocking others for {p.block_threshold_seconds:g} s or more"
        )
    try:
        row = await ctx.clients.need_database().fetchrow(_CONNECTIONS)
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
    p = ctx.params_as(Params)
    if ctx.alert.alertname not in p.down_alerts:
        return f"-- {ctx.alert.alertname} is not in down_alerts: nothing to check"
    return (
        f"{_CONNECTIONS.strip()}\n-- down only if this does not answer, or fewer than"
        f" {p.connection_headroom} client connections are free"
    )
