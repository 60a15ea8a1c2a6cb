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

from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from remediator.runbook_api.action_steps import step
from remediator.runbook_api.actions import Hint, render_sql
from remediator.runbook_api.context import Clients, StepContext
from remediator.runbook_api.steps import Done, Need, Skip
from remediator.runbooks import sessions
from remediator.runbooks.rb01_diagnose import LongQueries, LongQuery
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


def _seen(ctx: StepContext) -> tuple[LongQuery, ...] | None:
    """The sessions the diagnosis listed (None: the listing did not run)."""
    found = ctx.found("long_running_queries", LongQueries)
    if found is None:
        return None
    return tuple(q for q in found.queries if q.backend_start)


def withhold(ctx: StepContext[Params]) -> str | None:
    """Offered for approval only when the diagnosis saw a statement past the threshold."""
    seen = _seen(ctx)
    if seen is None:
        return "the long-running query listing did not run"
    limit = float(ctx.params.stuck_query_seconds)
    if not any(q.seconds >= limit for q in seen):
        return f"no query has run for {limit:g} s or more: nothing is stuck"
    return None


@dataclass(frozen=True)
class KillStuck:
    """Terminate the listed sessions still stuck, through RB-05's guards. A terminated
    session cannot be brought back: what went is recorded for the audit, no undo."""

    seen: tuple[LongQuery, ...]
    params: Params

    needs: ClassVar[Need] = "database"
    mutates: ClassVar[bool] = True

    def render(self) -> str:
        p = self.params
        pids = Hint(
            f"<the sessions listed above: {', '.join(str(q.pid) for q in self.seen) or 'none'}>"
        )
        return (
            "-- only sessions the diagnosis listed, still running a statement for"
            f" >= {p.stuck_query_seconds:g} s; at most {p.max_terminations}; never protected"
            " roles/applications (RB-05's guards)\n"
            + render_sql(
                TERMINATE,
                (
                    pids,
                    Hint("<their backend_start>"),
                    list(p.protected_roles),
                    list(p.protected_applications),
                    p.stuck_query_seconds,
                ),
            )
        )

    async def execute(self, clients: Clients) -> Done | Skip:
        p = self.params
        if not self.seen:
            return Skip("the diagnosis listed no active query: nothing to terminate")
        db = clients.need_database()
        found = await db.fetch(
            _SEEN_NOW,
            list(p.protected_roles),
            list(p.protected_applications),
            [q.pid for q in self.seen],
            [datetime.fromisoformat(str(q.backend_start)) for q in self.seen],
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
        return Done(
            "; ".join([head, *notes]),
            data={"terminated": terminated},
            changes={"terminated": terminated},
        )


@step(
    "kill_stuck",
    "mitigate",
    "Terminate a query stuck past the threshold (RB-05's guards)",
    mutates=True,
    approval="approve",
    needs=("database",),
    idempotent=True,
    timeout=20.0,
    withhold=withhold,
)
def kill_stuck(ctx: StepContext[Params]) -> KillStuck:
    return KillStuck(_seen(ctx) or (), ctx.params)
