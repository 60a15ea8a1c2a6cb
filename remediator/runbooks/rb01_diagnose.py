"""RB-01 steps 1 to 3: scheduler logs, provider health, the last packs (which
corroborate the alert: D's pack must be late) and long-running queries. All read-only.
"""

from __future__ import annotations

import asyncio
from typing import Any

from remediator.errors import (
    InputRejected,
    NotCorroborated,
)
from remediator.runbook_api.client_protocols import HttpProbes
from remediator.runbook_api.context import StepContext
from remediator.runbook_api.steps import Done, StepFailed
from remediator.runbooks import packs, plan
from remediator.runbooks.rb01_params import Params, corroborate_date, pack_date

_ERROR_WORDS = ("error", "exception", "traceback", "timeout", "timed out", "failed")
_MAX_LOG_LINES = 50
_LINE_CHARS = 300


# ------------------------------------------------------------- 1 scheduler logs


async def scheduler_logs(*, ctx: StepContext, **_: Any) -> Done:
    p = ctx.params_as(Params)
    kube = ctx.clients.need_kubernetes()
    lines = await kube.pod_logs(
        p.scheduler_selector, tail_lines=p.log_tail_lines, grep="build_pack"
    )
    texts = [f"{ln.pod}: {ln.text[:_LINE_CHARS]}" for ln in lines]
    errors = [t for t in texts if any(w in t.lower() for w in _ERROR_WORDS)]
    pods = sorted({ln.pod for ln in lines})
    if not texts:
        summary = (
            f"no build_pack lines in the last {p.log_tail_lines} lines of"
            f" {p.scheduler_selector} pods (scheduler not running the build?)"
        )
    else:
        summary = (
            f"{len(texts)} build_pack lines from {len(pods)} pod(s), {len(errors)}"
            f" with errors; last: {texts[-1][:160]}"
        )
    return Done(
        summary,
        data={"lines": texts[-_MAX_LOG_LINES:], "errors": errors[-_MAX_LOG_LINES:], "pods": pods},
    )


def render_scheduler_logs(*, ctx: StepContext, **_: Any) -> str:
    p = ctx.params_as(Params)
    return (
        f"kubectl logs -l {p.scheduler_selector} -n {plan.namespace(ctx)}"
        f" --tail={p.log_tail_lines} --prefix | grep build_pack"
    )


# ------------------------------------------------------------ 2 provider health


async def _probe(http: HttpProbes, name: str) -> dict[str, Any]:
    # An unreachable status page is an unhealthy provider, not a failed check.
    health = await http.probe(name)
    return {
        "healthy": bool(health.healthy),
        "status_code": health.status_code,
        "detail": str(health.detail)[:200],
    }


async def provider_health(*, ctx: StepContext, **_: Any) -> Done:
    p = ctx.params_as(Params)
    http = ctx.clients.need_http()
    configured = set(http.providers)
    names = [n for n in p.build_providers if n in configured]
    if not names:
        raise StepFailed(
            f"none of the build providers {list(p.build_providers)} is configured"
            " in targets.http.providers"
        )
    found = await asyncio.gather(*(_probe(http, n) for n in names))
    by_name = dict(zip(names, found, strict=True))
    unhealthy = [n for n, r in by_name.items() if not r["healthy"]]
    parts = [f"{n} {'ok' if r['healthy'] else 'DOWN'} ({r['detail']})" for n, r in by_name.items()]
    return Done(
        "; ".join(parts),
        data={"healthy": not unhealthy, "unhealthy": unhealthy, "providers": by_name},
    )


def render_provider_health(*, ctx: StepContext, **_: Any) -> str:
    p = ctx.params_as(Params)
    return "\n".join(
        f"GET <targets.http.providers.{n}>  # expect 2xx and status ok" for n in p.build_providers
    )


# ---------------------------------------------------------------- 3 diagnosis

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


async def recent_packs(*, ctx: StepContext, **_: Any) -> Done:
    """Lists the last packs and corroborates the alert: D's pack is late."""
    db = ctx.clients.need_database()
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
    data: dict[str, Any] = {"packs": listed, "fresh": fresh, "late": None}
    try:
        day = pack_date(ctx.labels, ctx.params_as(Params))
    except InputRejected:
        # The steps that use the date refuse it themselves, and the page says why.
        return Done(f"{listing or 'no packs'}{note}", data=data)
    corroborate_date(day, ctx.params_as(Params))
    newer = await db.fetchval(packs.FRESH_FROM, day)
    if newer is not None:
        raise NotCorroborated(
            f"{newer} is fresh already: the pack for {day} is not late; nothing built or marked"
        )
    return Done(
        f"{listing or 'no packs'}{note}; no pack dated {day} or later is fresh: late",
        data={**data, "late": day.isoformat()},
    )


def render_recent_packs(*, ctx: StepContext, **_: Any) -> str:
    try:
        day: object = pack_date(ctx.labels, ctx.params_as(Params)).isoformat()
    except InputRejected:
        day = plan.Hint("<the alert's date: refused>")
    return (
        f"{packs.recent(packs.FULL)};\n{plan.sql(packs.FRESH_FROM, day)}\n"
        "-- no row: the pack is late (and the date is today's, or yesterday's just after"
        " midnight)"
    )


async def long_running_queries(*, ctx: StepContext, **_: Any) -> Done:
    p = ctx.params_as(Params)
    rows = await ctx.clients.need_database().fetch(LONG_QUERIES)
    queries = [
        {
            "pid": r["pid"],
            "backend_start": r["backend_start"].isoformat() if r["backend_start"] else None,
            "user": r["usename"],
            "application": r["application_name"],
            "seconds": round(float(r["seconds"] or 0.0), 1),
            "query": r["query"],
        }
        for r in rows
    ]
    slow = [q for q in queries if q["seconds"] >= p.slow_query_seconds]
    if not slow:
        summary = f"{len(queries)} active queries, none over {p.slow_query_seconds:g} s"
    else:
        top = slow[0]
        summary = (
            f"{len(slow)} active queries over {p.slow_query_seconds:g} s; longest"
            f" {top['seconds']:g} s (pid {top['pid']}): {str(top['query'])[:80]}"
        )
    return Done(summary, data={"queries": queries, "slow": [q["pid"] for q in slow]})
