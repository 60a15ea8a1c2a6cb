"""RB-01 step 3's "kill if stuck": terminate a statement stuck past a threshold.

An approve step: the page lists the long-running queries the diagnosis saw, a human
approves, and then only those sessions (the same pid *and* ``backend_start``) may go,
and only if, at that moment, they still run a statement that started at least
``stuck_query_seconds`` ago, through RB-05's guarded terminate (``sessions``):
never our own session, a superuser or replication role, a protected role or
application, another database; at most ``max_terminations`` per run.

This module must never terminate a session the diagnosis did not list: a label
cannot name one, and a session that appeared after the look is not a candidate.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from remediator.runbook_api.context import StepContext
from remediator.runbook_api.steps import Done, Skip
from remediator.runbooks import plan, sessions
from remediator.runbooks.rb01_params import Params

# The sessions the diagnosis listed, as they are now: $1 roles, $2 applications,
# $3 pids, $4 their backend_start.
_SEEN_NOW = f"""
SELECT b.pid, b.backend_start, b.usename, b.application_name,
       left(b.query, 300) AS query,
       extract(epoch FROM now() - b.query_start)::float8 AS seconds,
       {sessions.PROTECTED_REASON} AS protected
FROM pg_stat_activity AS b
JOIN unnest($3::int[], $4::timestamptz[]) AS v(pid, backend_start)
  ON v.pid = b.pid AND v.backend_start = b.backend_start
LEFT JOIN pg_roles AS r ON r.rolname = b.usename
WHERE b.state = 'active'
ORDER BY seconds DESC, b.pid
"""
# Still running a statement past the threshold ($5) when the terminate acts.
TERMINATE = sessions.terminate_sql(
    "b.state = 'active' AND now() - b.query_start >= make_interval(secs => $5)"
)


def _seen(ctx: StepContext) -> list[Mapping[str, Any]]:
    listed = (ctx.results.get("long_running_queries") or {}).get("queries") or []
    return [q for q in listed if q.get("backend_start")]


def withhold(ctx: StepContext) -> str | None:
    """Offered for approval only when the diagnosis saw a statement past the threshold."""
    if "long_running_queries" not in ctx.results:
        return "the long-running query listing did not run"
    limit = float(ctx.params_as(Params).stuck_query_seconds)
    if not any(float(q.get("seconds") or 0.0) >= limit for q in _seen(ctx)):
        return f"no query has run for {limit:g} s or more: nothing is stuck"
    return None


async def kill_stuck(*, ctx: StepContext, **_: Any) -> Done | Skip:
    p = ctx.params_as(Params)
    seen = _seen(ctx)
    if not seen:
        return Skip("the diagnosis listed no active query: nothing to terminate")
    db = ctx.clients.need_database()
    found = await db.fetch(
        _SEEN_NOW,
        list(p.protected_roles),
        list(p.protected_applications),
        [int(q["pid"]) for q in seen],
        [datetime.fromisoformat(str(q["backend_start"])) for q in seen],
    )
    rows = [{**r, "user": r["usename"], "application": r["application_name"]} for r in found]
    threshold = float(p.stuck_query_seconds)
    spared = [r for r in rows if r["protected"] is not None]
    stuck = [r for r in rows if r["protected"] is None and float(r["seconds"]) >= threshold]
    if not stuck:
        why = f"no query the diagnosis listed still runs past {threshold:g} s"
        extra = sessions.notes(spared=spared, over=[], gone=[], limit=p.max_terminations)
        return Skip("; ".join([why, *extra]))
    chosen, over = stuck[: p.max_terminations], stuck[p.max_terminations :]
    hit = await sessions.terminate(db, TERMINATE, chosen, p, threshold)
    terminated = [
        {
            "pid": int(c["pid"]),
            "user": c["user"],
            "application": c["application"],
            "seconds": round(float(c["seconds"]), 1),
            "query": c["query"],
        }
        for c in chosen
        if int(c["pid"]) in hit
    ]
    notes = sessions.notes(
        spared=spared,
        over=over,
        gone=[c for c in chosen if int(c["pid"]) not in hit],
        limit=p.max_terminations,
        gone_words="finished or no longer stuck",
    )
    if not terminated:
        return Skip("; ".join(["terminated nothing", *notes]))
    head = "terminated " + ", ".join(
        f"{sessions.who(c)} running {c['seconds']:g} s" for c in terminated
    )
    # A terminated session cannot be brought back: recorded for the audit, no undo.
    return Done(
        "; ".join([head, *notes]),
        data={"terminated": terminated},
        changes={"terminated": terminated},
    )


def render_kill_stuck(*, ctx: StepContext, **_: Any) -> str:
    p = ctx.params_as(Params)
    seen = [f"{q['pid']}" for q in _seen(ctx)]
    pids = plan.Hint(f"<the sessions listed above: {', '.join(seen) or 'none'}>")
    return (
        "-- only sessions the diagnosis listed, still running a statement for"
        f" >= {p.stuck_query_seconds:g} s; at most {p.max_terminations}; never protected"
        " roles/applications (RB-05's guards)\n"
        + plan.sql(
            TERMINATE,
            pids,
            plan.Hint("<their backend_start>"),
            list(p.protected_roles),
            list(p.protected_applications),
            p.stuck_query_seconds,
        )
    )
