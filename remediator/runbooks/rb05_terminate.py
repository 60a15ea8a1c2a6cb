"""RB-05 step 4, as an action: terminate the sessions that block others, bounded.

Never a session of another database, our own, a non-client backend, a superuser or
replication role, or a protected role or application; at most ``max_terminations``.
The terminate statement re-checks all of that itself, because sessions change between
the look and the act.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from pydantic import BaseModel

from remediator.runbook_api.action_steps import step
from remediator.runbook_api.actions import Hint, render_sql
from remediator.runbook_api.context import Clients, StepContext
from remediator.runbook_api.steps import Done, Need, Skip, StepOutcome
from remediator.runbooks import sessions
from remediator.runbooks.rb05_params import Params, rounded_seconds

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


class Blocker(sessions.Seen):
    """A session that blocks others, as the look saw it."""

    state: str | None = None
    query: str | None = None
    blocking: int  # how many sessions wait on it
    max_wait: float  # the longest of their waits, in seconds


class Spared(BaseModel):
    pid: int
    user: str | None
    reason: str | None


class Terminated(BaseModel):
    """What the record keeps of a terminated session (it cannot be brought back)."""

    pid: int
    user: str | None
    application: str | None
    query: str | None


@dataclass(frozen=True)
class TerminateBlockers:
    """Terminate at most ``guard.max_terminations`` unprotected blockers that made
    someone wait at least ``threshold`` seconds, most blocking first."""

    guard: sessions.SessionGuard
    threshold: float

    needs: ClassVar[Need] = "database"
    mutates: ClassVar[bool] = True

    def render(self) -> str:
        roles, apps = list(self.guard.protected_roles), list(self.guard.protected_applications)
        return (
            f"{render_sql(_BLOCKERS, (roles, apps))}\n"
            f"-- then, for at most {self.guard.max_terminations} unprotected blockers that"
            f" made someone wait >= {self.threshold:g} s:\n"
            + render_sql(
                _TERMINATE,
                (Hint("<chosen pids>"), Hint("<their backend_start>"), roles, apps, self.threshold),
            )
        )

    async def execute(self, clients: Clients) -> StepOutcome:
        g, db = self.guard, clients.need_database()
        rows = await db.fetch(_BLOCKERS, list(g.protected_roles), list(g.protected_applications))
        cands = [
            Blocker(
                pid=int(r["pid"]),
                backend_start=r["backend_start"],
                user=r["usename"],
                application=r["application_name"],
                state=r["state"],
                query=r["query"],
                blocking=int(r["blocking"]),
                max_wait=rounded_seconds(r["max_wait"]),
                protected=r["protected"],
            )
            for r in rows
        ]
        if not cands:
            return Skip("no session blocks another")
        spared = [c for c in cands if c.protected is not None]
        free = [c for c in cands if c.protected is None]
        young = [c for c in free if c.max_wait < self.threshold]
        eligible = [c for c in free if c.max_wait >= self.threshold]
        chosen, over = eligible[: g.max_terminations], eligible[g.max_terminations :]
        hit = await sessions.terminate_seen(db, _TERMINATE, chosen, g, self.threshold)
        terminated = [c for c in chosen if c.pid in hit]
        notes = sessions.notes_on(
            spared=spared,
            over=over,
            gone=[c for c in chosen if c.pid not in hit],
            limit=g.max_terminations,
            gone_words="no longer blocking",
        )
        if young:
            notes.insert(
                1 if spared else 0,
                f"below the {self.threshold:g} s threshold: " + ", ".join(c.who for c in young),
            )
        record = {
            "spared": [
                Spared(pid=c.pid, user=c.user, reason=c.protected).model_dump() for c in spared
            ],
            "terminated": [
                c.model_dump(mode="json", exclude={"backend_start"}) for c in terminated
            ],
        }
        if not terminated:
            return Skip("terminated nothing; " + "; ".join(notes), data=record)
        head = "terminated " + ", ".join(
            f"{c.who} blocking {c.blocking} for {c.max_wait} s" for c in terminated
        )
        # A terminated session cannot be brought back: recorded for the audit, no undo.
        kept = [Terminated.model_validate(c, from_attributes=True) for c in terminated]
        return Done(
            "; ".join([head, *notes]),
            data=record,
            changes={"terminated": [t.model_dump() for t in kept]},
        )


@step(
    "terminate_blockers",
    "mitigate",
    "Terminate sessions that block others",
    mutates=True,
    idempotent=True,
    timeout=20.0,
)
def terminate_blockers(ctx: StepContext[Params]) -> TerminateBlockers:
    p = ctx.params
    return TerminateBlockers(p, p.block_threshold_seconds)
