"""RB-05 steps 3 and 4, read-only, as actions: top statements, long-running queries,
who blocks whom; and the corroboration of a "database down" alert (it must be true of
the database).

Each action renders the statements it runs, so the plan, the page and the audit trail
show the call that was made.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from pydantic import BaseModel

from remediator.errors import NotCorroborated, QueryRejected, TargetTimeout, TargetUnavailable
from remediator.runbook_api.action_steps import step
from remediator.runbook_api.actions import render_sql
from remediator.runbook_api.context import Clients, StepContext
from remediator.runbook_api.steps import Done, Need, Skip, StepOutcome
from remediator.runbooks.rb05_params import Params, rounded_seconds

# ------------------------------------------------------- 3 top statements

_HAS_PGSS = "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements')"
_TOP = """
SELECT left(query, 300) AS query, calls, mean_exec_time, total_exec_time, rows
FROM pg_stat_statements
ORDER BY total_exec_time DESC
LIMIT $1
"""


class TopStatement(BaseModel):
    query: str | None
    calls: int
    mean_ms: float
    total_ms: float
    rows: int


class TopStatementsFound(BaseModel):
    top: list[TopStatement]


@dataclass(frozen=True)
class TopStatements:
    """The statements with the most total time; skipped, with the reason, when the
    extension is not installed or cannot be read (installed but not preloaded)."""

    limit: int

    needs: ClassVar[Need] = "database"
    mutates: ClassVar[bool] = False

    def render(self) -> str:
        return (
            f"{_HAS_PGSS};\n{render_sql(_TOP, (self.limit,))}\n-- only if the extension"
            " is installed and loaded (shared_preload_libraries); else skipped, saying which"
        )

    async def execute(self, clients: Clients) -> StepOutcome:
        db = clients.need_database()
        if not await db.fetchval(_HAS_PGSS):
            return Skip(
                "pg_stat_statements is not installed in this database (CREATE EXTENSION"
                " pg_stat_statements; it needs shared_preload_libraries)"
            )
        try:
            rows = await db.fetch(_TOP, self.limit)
        except QueryRejected as exc:
            # Installed but not preloaded (55000), or an old version's column names.
            return Skip(f"pg_stat_statements cannot be read: {str(exc)[:200]}")
        found = TopStatementsFound(
            top=[
                TopStatement(
                    query=r["query"],
                    calls=int(r["calls"]),
                    mean_ms=round(float(r["mean_exec_time"]), 1),
                    total_ms=round(float(r["total_exec_time"]), 1),
                    rows=int(r["rows"]),
                )
                for r in rows
            ]
        )
        data = found.model_dump(mode="json")
        if not found.top:
            return Done("pg_stat_statements has no statements yet", data=data)
        head = found.top[0]
        return Done(
            f"top {len(found.top)} statements by total time; #1: {head.total_ms} ms total,"
            f" {head.calls} calls: {' '.join((head.query or '').split())[:120]}",
            data=data,
        )


@step(
    "top_statements",
    "diagnose",
    "Top statements from pg_stat_statements",
    mutates=False,
    timeout=15.0,
)
def top_statements(ctx: StepContext[Params]) -> TopStatements:
    return TopStatements(ctx.params.top_statements)


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


class LongQuery(BaseModel):
    pid: int
    user: str | None
    application: str | None
    seconds: float
    query: str | None


class LongQueriesFound(BaseModel):
    queries: list[LongQuery]


@dataclass(frozen=True)
class LongQueries:
    seconds: float

    needs: ClassVar[Need] = "database"
    mutates: ClassVar[bool] = False

    def render(self) -> str:
        return render_sql(_LONG, (self.seconds,))

    async def execute(self, clients: Clients) -> StepOutcome:
        rows = await clients.need_database().fetch(_LONG, self.seconds)
        found = LongQueriesFound(
            queries=[
                LongQuery(
                    pid=int(r["pid"]),
                    user=r["usename"],
                    application=r["application_name"],
                    seconds=rounded_seconds(r["seconds"]),
                    query=r["query"],
                )
                for r in rows
            ]
        )
        data = found.model_dump(mode="json")
        if not found.queries:
            return Done(f"no query has run longer than {self.seconds:g} s", data=data)
        desc = ", ".join(f"pid {q.pid} ({q.user}, {q.seconds} s)" for q in found.queries[:5])
        return Done(
            f"{len(found.queries)} queries running longer than {self.seconds:g} s: {desc}",
            data=data,
        )


@step(
    "long_queries",
    "diagnose",
    "Queries running longer than the threshold",
    mutates=False,
    timeout=15.0,
)
def long_queries(ctx: StepContext[Params]) -> LongQueries:
    return LongQueries(ctx.params.long_query_seconds)


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


class LockWait(BaseModel):
    blocked_pid: int
    blocked_user: str | None
    waited: float
    blocked_query: str | None
    blocker_pid: int
    blocker_user: str | None
    blocker_application: str | None
    blocker_state: str | None
    blocker_query: str | None


class LockWaits(BaseModel):
    pairs: list[LockWait]


@dataclass(frozen=True)
class BlockingSessions:
    needs: ClassVar[Need] = "database"
    mutates: ClassVar[bool] = False

    def render(self) -> str:
        return render_sql(_BLOCKING, ())

    async def execute(self, clients: Clients) -> StepOutcome:
        rows = await clients.need_database().fetch(_BLOCKING)
        found = LockWaits(
            pairs=[
                LockWait(
                    blocked_pid=int(r["blocked_pid"]),
                    blocked_user=r["blocked_user"],
                    waited=rounded_seconds(r["waited"]),
                    blocked_query=r["blocked_query"],
                    blocker_pid=int(r["blocker_pid"]),
                    blocker_user=r["blocker_user"],
                    blocker_application=r["blocker_application"],
                    blocker_state=r["blocker_state"],
                    blocker_query=r["blocker_query"],
                )
                for r in rows
            ]
        )
        data = found.model_dump(mode="json")
        if not found.pairs:
            return Done("no session is waiting on another", data=data)
        desc = ", ".join(
            f"{x.blocker_pid} ({x.blocker_user}) blocks {x.blocked_pid} for {x.waited} s"
            for x in found.pairs[:5]
        )
        return Done(f"{len(found.pairs)} lock waits: {desc}", data=data)


@step("blocking_sessions", "diagnose", "Who blocks whom", mutates=False, timeout=15.0)
def blocking_sessions(ctx: StepContext) -> BlockingSessions:
    return BlockingSessions()


# --------------------------------------------------------- confirm the incident

# Client connections in use, and how many clients may have (the superuser reserve is
# not theirs).
_CONNECTIONS = """
SELECT count(*) FILTER (WHERE backend_type = 'client backend') AS used,
       current_setting('max_connections')::int
         - current_setting('superuser_reserved_connections')::int AS usable
FROM pg_stat_activity
"""


@dataclass(frozen=True)
class ConfirmIncident:
    """Corroborates a "database down" alert before any session is terminated: it
    holds only if the database does not answer us, or has fewer than ``headroom``
    client connections free. Other alerts claim no outage: nothing to check."""

    alertname: str
    claims_down: bool  # the alert is one of the params' down_alerts
    headroom: int
    block_threshold: float

    needs: ClassVar[Need] = "database"
    mutates: ClassVar[bool] = False

    def render(self) -> str:
        if not self.claims_down:
            return f"-- {self.alertname} is not in down_alerts: nothing to check"
        return (
            f"{_CONNECTIONS.strip()}\n-- down only if this does not answer, or fewer than"
            f" {self.headroom} client connections are free"
        )

    async def execute(self, clients: Clients) -> StepOutcome:
        name = self.alertname
        if not self.claims_down:
            return Skip(
                f"{name} claims no outage to check here: the terminate step acts only on"
                f" sessions it sees blocking others for {self.block_threshold:g} s or more"
            )
        try:
            row = await clients.need_database().fetchrow(_CONNECTIONS)
        except (TargetUnavailable, TargetTimeout) as exc:
            return Done(
                f"the database does not answer us either ({str(exc)[:160]}): {name} confirmed",
                data={"down": True},
            )
        assert row is not None
        used, usable = int(row["used"]), int(row["usable"])
        free = usable - used
        if free < self.headroom:
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


@step(
    "confirm_incident",
    "diagnose",
    "Confirm a database-down claim against the database",
    mutates=False,
    # A claim that could not be checked is not confirmed.
    stop_on_failure=True,
    timeout=15.0,
    attempts=1,
)
def confirm_incident(ctx: StepContext[Params]) -> ConfirmIncident:
    p = ctx.params
    name = ctx.alert.alertname
    return ConfirmIncident(
        name, name in p.down_alerts, p.connection_headroom, p.block_threshold_seconds
    )
