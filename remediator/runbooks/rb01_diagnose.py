"""RB-01 steps 1 to 3, as actions: scheduler logs, provider health, the last packs (which
corroborate the alert: D's pack must be late) and long-running queries. All read-only.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import date
from typing import ClassVar

from pydantic import BaseModel

from remediator.errors import InputRejected, NotCorroborated
from remediator.runbook_api.action_steps import step
from remediator.runbook_api.actions import Hint, render_sql
from remediator.runbook_api.client_protocols import HttpProbes
from remediator.runbook_api.context import Clients, StepContext
from remediator.runbook_api.steps import Done, Need, StepFailed
from remediator.runbooks import packs, plan
from remediator.runbooks.rb01_params import Params, corroborate_date, pack_date

_ERROR_WORDS = ("error", "exception", "traceback", "timeout", "timed out", "failed")
_MAX_LOG_LINES = 50
_LINE_CHARS = 300


# ------------------------------------------------------------- 1 scheduler logs


@dataclass(frozen=True)
class SchedulerLogs:
    selector: str
    tail_lines: int
    namespace: str

    needs: ClassVar[Need] = "kubernetes"
    mutates: ClassVar[bool] = False

    def render(self) -> str:
        return (
            f"kubectl logs -l {self.selector} -n {self.namespace}"
            f" --tail={self.tail_lines} --prefix | grep build_pack"
        )

    async def execute(self, clients: Clients) -> Done:
        kube = clients.need_kubernetes()
        lines = await kube.pod_logs(self.selector, tail_lines=self.tail_lines, grep="build_pack")
        texts = [f"{ln.pod}: {ln.text[:_LINE_CHARS]}" for ln in lines]
        errors = [t for t in texts if any(w in t.lower() for w in _ERROR_WORDS)]
        pods = sorted({ln.pod for ln in lines})
        if not texts:
            summary = (
                f"no build_pack lines in the last {self.tail_lines} lines of"
                f" {self.selector} pods (scheduler not running the build?)"
            )
        else:
            summary = (
                f"{len(texts)} build_pack lines from {len(pods)} pod(s), {len(errors)}"
                f" with errors; last: {texts[-1][:160]}"
            )
        return Done(
            summary,
            data={
                "lines": texts[-_MAX_LOG_LINES:],
                "errors": errors[-_MAX_LOG_LINES:],
                "pods": pods,
            },
        )


@step(
    "scheduler_logs",
    "diagnose",
    "Read the scheduler's build_pack log lines",
    mutates=False,
    timeout=30.0,
)
def scheduler_logs(ctx: StepContext[Params]) -> SchedulerLogs:
    p = ctx.params
    return SchedulerLogs(p.scheduler_selector, p.log_tail_lines, plan.namespace(ctx))


# ------------------------------------------------------------ 2 provider health


class Probed(BaseModel):
    healthy: bool
    status_code: int | None
    detail: str


class Health(BaseModel):
    """What provider_health found, for rerun_build (None: not checked)."""

    healthy: bool | None = None
    unhealthy: list[str] = []


async def _probe(http: HttpProbes, name: str) -> Probed:
    # An unreachable status page is an unhealthy provider, not a failed check.
    health = await http.probe(name)
    return Probed(
        healthy=bool(health.healthy),
        status_code=health.status_code,
        detail=str(health.detail)[:200],
    )


@dataclass(frozen=True)
class ProviderHealth:
    """The status URLs of the build providers that are configured (of ``providers``;
    ``configured`` None: the plan cannot tell, the run asks the client)."""

    providers: tuple[str, ...]
    configured: tuple[str, ...] | None

    needs: ClassVar[Need] = "http"
    mutates: ClassVar[bool] = False

    def render(self) -> str:
        # The plan names only the providers the run will probe, so it never shows a
        # GET that does not happen.
        return "\n".join(
            f"GET <targets.http.providers.{n}>  # expect 2xx and status ok"
            if self.configured is None or n in self.configured
            else f"# {n}: not in targets.http.providers, not probed"
            for n in self.providers
        )

    async def execute(self, clients: Clients) -> Done:
        http = clients.need_http()
        configured = set(http.providers)
        names = [n for n in self.providers if n in configured]
        if not names:
            raise StepFailed(
                f"none of the build providers {list(self.providers)} is configured"
                " in targets.http.providers"
            )
        found = await asyncio.gather(*(_probe(http, n) for n in names))
        by_name = dict(zip(names, found, strict=True))
        unhealthy = [n for n, r in by_name.items() if not r.healthy]
        parts = [f"{n} {'ok' if r.healthy else 'DOWN'} ({r.detail})" for n, r in by_name.items()]
        return Done(
            "; ".join(parts),
            data={
                "healthy": not unhealthy,
                "unhealthy": unhealthy,
                "providers": {n: r.model_dump() for n, r in by_name.items()},
            },
        )


def _configured_providers(clients: Clients) -> tuple[str, ...] | None:
    """The providers the run's HTTP client knows: the client's own list, else (a plan,
    which has no client) the one in the settings it would be opened from."""
    if clients.http is not None:
        return tuple(clients.http.providers)
    if clients.settings is not None and clients.settings.targets.http.providers:
        return tuple(clients.settings.targets.http.providers)
    return None


@step(
    "provider_health",
    "diagnose",
    "Check the price providers' health",
    mutates=False,
    timeout=20.0,
    attempts=1,
)
def provider_health(ctx: StepContext[Params]) -> ProviderHealth:
    return ProviderHealth(ctx.params.build_providers, _configured_providers(ctx.clients))


# ---------------------------------------------------------------- 3 diagnosis


@dataclass(frozen=True)
class RecentPacks:
    """Lists the last packs and corroborates the alert: D's pack is late (``day``
    None: the alert's date was refused; the steps that use it refuse it themselves,
    and the page says why)."""

    day: date | None
    params: Params

    needs: ClassVar[Need] = "database"
    mutates: ClassVar[bool] = False

    def render(self) -> str:
        day = self.day.isoformat() if self.day else Hint("<the alert's date: refused>")
        return (
            f"{packs.recent(packs.FULL)};\n{render_sql(packs.FRESH_FROM, (day,))}\n"
            "-- no row: the pack is late (and the date is today's, or yesterday's just after"
            f" midnight)\n{packs.FULL_NOTE}"
        )

    async def execute(self, clients: Clients) -> Done:
        db = clients.need_database()
        cols = await packs.columns(db)
        listed = [packs.listed(r) for r in await db.fetch(packs.recent(cols))]
        fresh = [r["id"] for r in listed if r["is_fresh"]]
        listing = "; ".join(
            " ".join(filter(None, (r["id"], r["status"], "fresh" if r["is_fresh"] else "")))
            for r in listed
        )
        note = ""
        if listed and not listed[0]["is_fresh"]:
            note = f" (latest {listed[0]['id']} is not fresh)"
        if not cols.knows_built:
            note += "; pricing_pack has no status or hash column: a pack exists when its row does"
        data = {"packs": listed, "fresh": fresh, "late": None}
        if self.day is None:
            return Done(f"{listing or 'no packs'}{note}", data=data)
        day = self.day
        corroborate_date(day, self.params)
        newer = await db.fetchval(packs.FRESH_FROM, day)
        if newer is not None:
            raise NotCorroborated(
                f"{newer} is fresh already: the pack for {day} is not late; nothing built or marked"
            )
        return Done(
            f"{listing or 'no packs'}{note}; no pack dated {day} or later is fresh: late",
            data={**data, "late": day.isoformat()},
        )


@step(
    "recent_packs",
    "diagnose",
    "List the last 5 pricing packs; confirm the alert's pack is late",
    mutates=False,
)
def recent_packs(ctx: StepContext[Params]) -> RecentPacks:
    p = ctx.params
    try:
        day: date | None = pack_date(ctx.labels, p)
    except InputRejected:
        day = None
    return RecentPacks(day, p)


LONG_QUERIES = """
SELECT pid, backend_start, usename, application_name,
       extract(epoch FROM now() - query_start)::float8 AS seconds,
       left(query, 200) AS query
FROM pg_stat_activity
WHERE state = 'active' AND datname = current_database()
  AND pid <> pg_backend_pid() AND query NOT LIKE '%pg_stat_activity%'
ORDER BY seconds DESC NULLS LAST
LIMIT 10
"""


class LongQuery(BaseModel):
    pid: int
    backend_start: str | None
    user: str | None
    application: str | None
    seconds: float
    query: str | None


class LongQueries(BaseModel):
    """What long_running_queries listed, for kill_stuck (stuck.py)."""

    queries: list[LongQuery] = []


@dataclass(frozen=True)
class LongRunningQueries:
    slow_seconds: float

    needs: ClassVar[Need] = "database"
    mutates: ClassVar[bool] = False

    def render(self) -> str:
        return render_sql(LONG_QUERIES, ())

    async def execute(self, clients: Clients) -> Done:
        rows = await clients.need_database().fetch(LONG_QUERIES)
        queries = [
            LongQuery(
                pid=r["pid"],
                backend_start=r["backend_start"].isoformat() if r["backend_start"] else None,
                user=r["usename"],
                application=r["application_name"],
                seconds=round(float(r["seconds"] or 0.0), 1),
                query=r["query"],
            )
            for r in rows
        ]
        slow = [q for q in queries if q.seconds >= self.slow_seconds]
        if not slow:
            summary = f"{len(queries)} active queries, none over {self.slow_seconds:g} s"
        else:
            top = slow[0]
            summary = (
                f"{len(slow)} active queries over {self.slow_seconds:g} s; longest"
                f" {top.seconds:g} s (pid {top.pid}): {str(top.query)[:80]}"
            )
        return Done(
            summary,
            data={
                "queries": [q.model_dump() for q in queries],
                "slow": [q.pid for q in slow],
            },
        )


@step("long_running_queries", "diagnose", "List long-running queries (read-only)", mutates=False)
def long_running_queries(ctx: StepContext[Params]) -> LongRunningQueries:
    return LongRunningQueries(ctx.params.slow_query_seconds)
