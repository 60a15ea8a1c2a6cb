"""RB-05 step 4: terminate the sessions that block others, bounded.

Never a session of another database, our own, a non-client backend, a superuser or
replication role, or a protected role or application; at most ``max_terminations``.
The terminate statement re-checks all of that itself, because sessions change between
the look and the act.
"""

from __future__ import annotations

from typing import Any

from remediator.runbook_api.context import StepContext
from remediator.runbook_api.steps import Done, Skip
from remediator.runbooks import plan, sessions
from remediator.runbooks.rb05_params import Params, rounded_seconds

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
    p = ctx.params_as(Params)
    db = ctx.clients.need_database()
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
            "max_wait": rounded_seconds(r["max_wait"]),
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
    p = ctx.params_as(Params)
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
