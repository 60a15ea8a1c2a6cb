"""RB-01 Pricing pack build failure, as declared steps (P1).

Runbook order, automated:

    1 scheduler logs (build_pack lines)      diagnose
    2 provider health                        diagnose
    3 last 5 packs; long-running queries     diagnose (read-only); corroborates the
                                             alert: D's pack must be late (below)
    3 kill if stuck                          approve; RB-05's guarded terminate
    4 serve the last-good pack               mitigate, only if no pack is fresh; undo
    5 rerun the build as a Kubernetes Job    mitigate, bounded attempts per date, only
                                             if the providers are healthy
    6 wait for the new pack, mark it fresh   verify + mitigate (one transaction)
      and unmark older packs
    7 freshness gate (POST /execute = 200)   verify

The pack date D comes from the alert's ``date`` label when it has one (checked:
ISO date within ``date_window_days`` of today) and is otherwise today in
``timezone``. D is the lock/cooldown target. ``timezone`` defaults to
America/New_York: the runbook's SLO is "ready by 00:15 local time" without naming the
zone, and the pack holds US listings' closes (Polygon, FMP) and FRED's series, whose
trading day is New York's. Set it to the zone your scheduler's midnight is in.

A payload is a claim. The run acts only for a pack that is late: D is today (in
``timezone``), or yesterday until ``late_grace_minutes`` after midnight (an alert
raised just before midnight), never a future or an older date; and no pack dated D or
later is fresh. Otherwise step 3 stops the run as "not corroborated" before anything
changes. That read uses only the columns the runbook's own SQL names (id, date,
is_fresh), and the mitigations act only when it confirmed exactly D.

On resolve: the "serve last-good" flip is put back only when that is safe. If our
verified build marked a newer pack, it already unmarked the old one (nothing to
restore). If no newer pack is fresh, unmarking the last-good pack would bring the 503s
back, so it is kept fresh and the page says so. Marking the verified pack fresh is
never undone: it is the fix, not a temporary mitigation.

A stuck query is terminated only on approval, through RB-05's guards (``stuck``).
This module must never start a second build while one runs, never exceed the attempts per
date, and never put an unchecked label into SQL or a Job.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator

from remediator import validation
from remediator.errors import (
    ConfigError,
    InputRejected,
    NotCorroborated,
    TargetError,
    TargetRejected,
)
from remediator.runbook_api.context import StepContext
from remediator.runbook_api.steps import Done, Runbook, Skip, Step, StepFailed, Wait
from remediator.runbooks import jobs, packs, plan, sessions, stuck

_ERROR_WORDS = ("error", "exception", "traceback", "timeout", "timed out", "failed")
_MAX_LOG_LINES = 50
_LINE_CHARS = 300


class Params(sessions.SessionGuard):
    rerun_max_attempts: int = Field(2, ge=1, le=5)
    # The build runs as `kubectl exec deployment/scheduler` would: a Job copied from
    # this Deployment's pod template (one container: the default one, or this one).
    build_deployment: str = "scheduler"
    build_container: str | None = None
    build_image: str | None = None  # overrides the template's image (None: keep it)
    # Job records are how attempts are counted: keep them for the whole day.
    job_ttl_seconds: int = Field(172_800, ge=86_400, le=604_800)
    build_providers: tuple[str, ...] = ("polygon", "fmp", "fred")
    # The wait ends well before the engine's 15-minute target lock would expire.
    build_wait_seconds: float = Field(600.0, gt=0, le=840)
    build_poll_seconds: float = Field(15.0, gt=0, le=120)
    # The SLO is "pack ready by 00:15 local time"; the runbook names no zone. DawsOS
    # prices US listings (Polygon, FMP; FRED's series), so its day is New York's.
    timezone: str = "America/New_York"
    date_window_days: int = Field(7, ge=0, le=31)
    # Yesterday's pack still counts as late this long after midnight (in `timezone`):
    # an alert raised at 23:55 is delivered and handled after 00:00.
    late_grace_minutes: int = Field(120, ge=0, le=720)
    scheduler_selector: str = "app=scheduler"
    log_tail_lines: int = Field(200, ge=1, le=5000)
    slow_query_seconds: float = Field(30.0, gt=0)
    # Step 3's "kill if stuck" (approve): a listed statement running this long, through
    # RB-05's guards (protected roles and applications; at most max_terminations).
    stuck_query_seconds: float = Field(600.0, gt=0, le=86_400)
    max_terminations: int = Field(1, ge=0, le=20)

    @field_validator("build_image")
    @classmethod
    def _image(cls, v: str | None) -> str | None:
        return jobs.check_image(v)

    @field_validator("build_deployment", "build_container")
    @classmethod
    def _workload(cls, v: str | None) -> str | None:
        return jobs.check_name(v)

    @field_validator("build_providers")
    @classmethod
    def _providers(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v or any(not validation.is_provider_name(p) for p in v):
            raise ValueError("a non-empty list of provider names")
        return v

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {v!r}") from exc
        return v

    @model_validator(mode="after")
    def _poll_below_wait(self) -> Params:
        if self.build_poll_seconds > self.build_wait_seconds:
            raise ValueError("build_poll_seconds must not exceed build_wait_seconds")
        return self


# ------------------------------------------------------------------ helpers


def pack_date(labels: Mapping[str, str], params: Params, now: datetime | None = None) -> date:
    """The pack date D: the ``date`` label (validated) or today in ``timezone``."""
    zone = ZoneInfo(params.timezone)
    today = (now.astimezone(zone) if now is not None else datetime.now(zone)).date()
    raw = labels.get("date")
    if raw is None:
        return today
    return validation.pack_date(raw, today=today, window_days=params.date_window_days, field="date")


def corroborate_date(day: date, params: Params, now: datetime | None = None) -> None:
    """NotCorroborated unless ``day``'s pack can be late ``now``.

    Today's can; yesterday's only within ``late_grace_minutes`` after midnight; a
    future date's is not due yet, and an older date's is history, not an incident.
    """
    now = now if now is not None else datetime.now(ZoneInfo(params.timezone))
    today = now.date()
    if day == today:
        return
    if day > today:
        raise NotCorroborated(
            f"{day} is in the future (today is {today} in {params.timezone}): its pack is"
            " not due yet; nothing built or marked"
        )
    since_midnight = now - datetime.combine(today, datetime.min.time(), now.tzinfo)
    grace = timedelta(minutes=params.late_grace_minutes)
    if day == today - timedelta(days=1) and since_midnight < grace:
        return
    until = f"; yesterday's until {grace} after midnight" if grace else ""
    raise NotCorroborated(
        f"{day} is past: only today's pack ({today} in {params.timezone}) can be late"
        f"{until}; nothing built or marked"
    )


def _late(ctx: StepContext, day: date) -> bool:
    """Whether this run's corroboration (step 3) confirmed that D's pack is late."""
    return (ctx.results.get("recent_packs") or {}).get("late") == day.isoformat()


def _unconfirmed(day: date) -> Skip:
    return Skip(
        f"the pack for {day} was not confirmed late (the pack listing did not run or"
        " failed): not acting blind"
    )


def job_name(day: date, attempt: int) -> str:
    return validation.k8s_name(f"build-pack-{day.isoformat()}-{attempt}", field="job")


def _target(labels: Mapping[str, str], params: Any) -> str:
    return pack_date(labels, params).isoformat()


def _command(day: date) -> list[str]:
    return ["python", "-m", "jobs.build_pack", "--date", day.isoformat(), "--force"]


async def _job_state(kube: Any, name: str) -> str | None:
    """The Job's state, or None when no such Job exists (404)."""
    try:
        return str(await kube.job_status(name))
    except TargetRejected as exc:
        # The client maps every other 4xx to TargetRejected as well; only 404 is absence.
        if "HTTP 404" in str(exc):
            return None
        raise


# ------------------------------------------------------------- 1 scheduler logs


async def scheduler_logs(*, ctx: StepContext, **_: Any) -> Done:
    p: Params = ctx.params
    kube = ctx.clients.need("kubernetes")
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
    p: Params = ctx.params
    return (
        f"kubectl logs -l {p.scheduler_selector} -n {plan.namespace(ctx)}"
        f" --tail={p.log_tail_lines} --prefix | grep build_pack"
    )


# ------------------------------------------------------------ 2 provider health


async def _probe(http: Any, name: str) -> dict[str, Any]:
    # An unreachable status page is an unhealthy provider, not a failed check.
    health = await http.probe(name)
    return {
        "healthy": bool(health.healthy),
        "status_code": health.status_code,
        "detail": str(health.detail)[:200],
    }


async def provider_health(*, ctx: StepContext, **_: Any) -> Done:
    p: Params = ctx.params
    http = ctx.clients.need("http")
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
    p: Params = ctx.params
    return "\n".join(
        f"GET <targets.http.providers.{n}>  # expect 2xx and status ok" for n in p.build_providers
    )


# ---------------------------------------------------------------- 3 diagnosis

_LONG_QUERIES = """
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
    db = ctx.clients.need("database")
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
        day = pack_date(ctx.labels, ctx.params)
    except InputRejected:
        # The steps that use the date refuse it themselves, and the page says why.
        return Done(f"{listing or 'no packs'}{note}", data=data)
    corroborate_date(day, ctx.params)
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
        day: object = pack_date(ctx.labels, ctx.params).isoformat()
    except InputRejected:
        day = plan.Hint("<the alert's date: refused>")
    return (
        f"{packs.recent(packs.FULL)};\n{plan.sql(packs.FRESH_FROM, day)}\n"
        "-- no row: the pack is late (and the date is today's, or yesterday's just after"
        " midnight)"
    )


async def long_running_queries(*, ctx: StepContext, **_: Any) -> Done:
    p: Params = ctx.params
    rows = await ctx.clients.need("database").fetch(_LONG_QUERIES)
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


# ------------------------------------------------------- 4 serve last-good pack


async def serve_last_good(*, ctx: StepContext, **_: Any) -> Done | Skip:
    day = pack_date(ctx.labels, ctx.params)
    if not _late(ctx, day):
        return _unconfirmed(day)
    db = ctx.clients.need("database")
    cols = await packs.columns(db)
    # Serializable: "no pack is fresh" must still hold when we flip one.
    async with db.transaction(isolation="serializable") as tx:
        fresh = await tx.fetch(
            "SELECT id FROM pricing_pack WHERE is_fresh ORDER BY date DESC FOR UPDATE"
        )
        if fresh:
            ids = ", ".join(r["id"] for r in fresh)
            return Skip(f"{ids} is fresh already: users are served; nothing to flip")
        last_good = await tx.fetchrow(packs.last_good(cols), day)
        if last_good is None:
            raise StepFailed(
                f"no {'built ' if cols.knows_built else ''}pack before {day} to serve;"
                " users get 503 until a pack is built and marked fresh by hand"
            )
        await tx.execute(packs.SERVE, last_good["id"])
    pid = last_good["id"]
    return Done(
        f"marked last-good pack {pid} fresh (temporary; no pack was fresh)",
        data={"served": pid},
        changes={
            "pack_date": day.isoformat(),
            "flipped": [{"id": pid, "previous_is_fresh": False}],
        },
    )


async def unserve_last_good(
    *, ctx: StepContext, changes: Mapping[str, Any], **_: Any
) -> Done | Skip:
    db = ctx.clients.need("database")
    replaced_by = (ctx.results.get("mark_fresh") or {}).get("marked")
    restored: list[str] = []
    left: list[str] = []
    async with db.transaction(isolation="serializable") as tx:
        for item in changes.get("flipped", []):
            pid = item["id"]
            row = await tx.fetchrow(
                "SELECT id, date, is_fresh FROM pricing_pack WHERE id = $1 FOR UPDATE", pid
            )
            if row is None:
                left.append(f"{pid} no longer exists")
                continue
            if not row["is_fresh"]:
                by = f"our verified build {replaced_by}" if replaced_by else "someone else"
                left.append(f"{pid} was already unmarked (replaced by {by}); nothing to restore")
                continue
            newer = await tx.fetchval(
                "SELECT id FROM pricing_pack WHERE is_fresh AND date > $1"
                " ORDER BY date DESC LIMIT 1",
                row["date"],
            )
            if newer is None:
                left.append(
                    f"kept {pid} fresh: no newer pack is fresh, and unmarking it would"
                    " bring the 503s back; unmark it by hand once a new pack is fresh"
                )
                continue
            await tx.execute(
                "UPDATE pricing_pack SET is_fresh = $2 WHERE id = $1 AND is_fresh",
                pid,
                bool(item["previous_is_fresh"]),
            )
            restored.append(f"{pid} unmarked (newer {newer} is fresh)")
    if not restored:
        return Skip("; ".join(left) or "nothing recorded")
    return Done("; ".join(restored + left))


def render_serve_last_good(*, ctx: StepContext, **_: Any) -> str:
    day = pack_date(ctx.labels, ctx.params)
    listed = (ctx.results.get("recent_packs") or {}).get("packs", [])
    guess = next(
        (p["id"] for p in listed if p["status"] in ("ready", None) and p["date"] < day.isoformat()),
        None,
    )
    candidate = plan.Hint(
        f"{guess!r} (newest ready pack before {day})"
        if guess
        else f"<newest ready pack before {day}>"
    )
    return "\n".join(
        [
            "-- only if no pack is fresh (SELECT id FROM pricing_pack WHERE is_fresh FOR UPDATE)",
            "-- status/hash conditions only where the catalog has those columns",
            plan.sql(packs.last_good(packs.FULL), day.isoformat()),
            plan.sql(packs.SERVE, candidate),
        ]
    )


# ------------------------------------------------------------ 5 rerun the build


async def rerun_build(*, ctx: StepContext, **_: Any) -> Done | Skip:
    p: Params = ctx.params
    day = pack_date(ctx.labels, p)
    if not _late(ctx, day):
        return _unconfirmed(day)
    db = ctx.clients.need("database")
    cols = await packs.columns(db)
    pack = await db.fetchrow(packs.of_day(cols), day)
    # Without a status or hash column a row is no finished build: rerun (--force).
    if pack is not None and packs.ready(pack, cols):
        return Skip(f"{pack['id']} is already built (ready); no rerun needed")
    health = ctx.results.get("provider_health")
    if not health:
        return Skip("provider health is unknown (its check failed); not rerunning blind")
    if not health.get("healthy"):
        down = ", ".join(health.get("unhealthy", []))
        return Skip(f"providers unhealthy ({down}): a rerun would fail again; see RB-02")
    kube = ctx.clients.need("kubernetes")
    existing: dict[int, str] = {}
    for attempt in range(1, p.rerun_max_attempts + 1):
        state = await _job_state(kube, job_name(day, attempt))
        if state is not None:
            existing[attempt] = state
    running = [job_name(day, a) for a, s in existing.items() if s == "running"]
    if running:
        return Skip(f"build job {running[0]} is still running; not starting another")
    if len(existing) >= p.rerun_max_attempts:
        used = ", ".join(f"{job_name(day, a)} {s}" for a, s in sorted(existing.items()))
        return Skip(
            f"rerun limit reached for {day}: {len(existing)} of {p.rerun_max_attempts}"
            f" attempts used ({used}); left to a human (symbol mappings, DB health)"
        )
    attempt = next(a for a in range(1, p.rerun_max_attempts + 1) if a not in existing)
    name = job_name(day, attempt)
    await jobs.start(
        ctx,
        name,
        _command(day),
        deployment=p.build_deployment,
        container=p.build_container,
        image=p.build_image,
        labels={
            "app.kubernetes.io/managed-by": "remediator",
            "remediator/runbook": "RB-01",
            "remediator/pack-date": day.isoformat(),
            "remediator/run": ctx.run_id,
        },
        ttl_seconds=p.job_ttl_seconds,
    )
    return Done(
        f"started build job {name} (attempt {attempt} of {p.rerun_max_attempts})",
        data={"job": name, "attempt": attempt, "date": day.isoformat()},
    )


def render_rerun_build(*, ctx: StepContext, **_: Any) -> str:
    p: Params = ctx.params
    day = pack_date(ctx.labels, p)
    name = f"build-pack-{day.isoformat()}-<attempt 1..{p.rerun_max_attempts}>"
    return (
        jobs.render(ctx, name, _command(day), deployment=p.build_deployment, image=p.build_image)
        + "\n# only if providers are healthy, no build job runs and attempts remain"
    )


# -------------------------------------------------------- 6a wait for the pack


async def await_build(*, ctx: StepContext, **_: Any) -> Done | Skip | Wait:
    p: Params = ctx.params
    day = pack_date(ctx.labels, p)
    db = ctx.clients.need("database")
    cols = await packs.columns(db)
    job = (ctx.results.get("rerun_build") or {}).get("job")
    if job is None:
        pack = await db.fetchrow(packs.of_day(cols), day)
        built = packs.ready(pack, cols)
        if built and pack is not None:
            return Done(
                f"{pack['id']} is built (ready)", data={"ready": True, "pack_id": pack["id"]}
            )
        if built is None:
            return Skip(
                f"the pack for {day} has a row, but pricing_pack has no status or hash"
                " column to show a finished build, and no rerun was started"
            )
        return Skip(f"pack for {day} is {packs.state(pack)} and no rerun was started")
    kube = ctx.clients.need("kubernetes")
    # The run is parked between polls (Wait), so no worker is held while the Job
    # builds; when the wait began is kept in this step's own data across wake-ups.
    since = float((ctx.results.get("await_build") or {}).get("since") or time.time())
    try:
        pack = await db.fetchrow(packs.of_day(cols), day)
        if packs.ready(pack, cols) and pack is not None:
            return _built(pack, job)
        state = await kube.job_status(job)
        if state == "succeeded":
            # The job writes the pack before it exits: look once more. Without a status
            # column, the row our succeeded Job leaves is the new pack.
            pack = await db.fetchrow(packs.of_day(cols), day)
            if packs.ready(pack, cols) is not False and pack is not None:
                return _built(pack, job)
            raise StepFailed(f"job {job} succeeded but the pack for {day} is {packs.state(pack)}")
        if state == "failed":
            raise StepFailed(f"build job {job} failed; see kubectl logs job/{job}")
    except TargetError as exc:
        if not exc.temporary:
            raise
    if time.time() - since + p.build_poll_seconds > p.build_wait_seconds:
        raise StepFailed(
            f"pack for {day} not ready after {p.build_wait_seconds:g} s; job {job} still running"
        )
    return Wait(
        f"job {job} still building the pack for {day}",
        p.build_poll_seconds,
        data={"since": since, "job": job},
    )


def _built(pack: Mapping[str, Any], job: str) -> Done:
    return Done(
        f"{pack['id']} built by job {job}",
        data={"ready": True, "pack_id": pack["id"], "job": job},
    )


def render_await_build(*, ctx: StepContext, **_: Any) -> str:
    p: Params = ctx.params
    day = pack_date(ctx.labels, p)
    job = (ctx.results.get("rerun_build") or {}).get("job") or f"build-pack-{day}-<attempt>"
    return (
        plan.sql(packs.of_day(packs.FULL), day.isoformat())
        + f"\nkubectl get job {job} -n {plan.namespace(ctx)}"
        f"  # every {p.build_poll_seconds:g} s, up to {p.build_wait_seconds:g} s"
    )


# --------------------------------------------------------- 6b mark pack fresh


async def mark_fresh(*, ctx: StepContext, **_: Any) -> Done | Skip:
    day = pack_date(ctx.labels, ctx.params)
    if not _late(ctx, day):
        return _unconfirmed(day)
    verified = ctx.results.get("await_build") or {}
    if not verified.get("ready"):
        return Skip(f"the pack for {day} was not verified as built; nothing marked fresh")
    db = ctx.clients.need("database")
    cols = await packs.columns(db)
    async with db.transaction(isolation="serializable") as tx:
        rows = await tx.fetch(packs.lock_for_mark(cols), day)
        target = next((r for r in rows if r["date"] == day), None)
        # await_build verified the build; this re-checks what the catalog can show.
        if target is None or packs.ready(target, cols) is False:
            raise StepFailed(f"the pack for {day} is no longer ready; not marking it fresh")
        newer = [r["id"] for r in rows if r["date"] > day and r["is_fresh"]]
        if newer:
            return Skip(f"newer pack {newer[0]} is fresh; not marking older {target['id']}")
        touched = [
            r
            for r in rows
            if (r["date"] == day and not r["is_fresh"]) or (r["date"] < day and r["is_fresh"])
        ]
        if not touched:
            return Skip(f"{target['id']} is already the only fresh pack")
        await tx.execute(packs.MARK, day, [r["id"] for r in touched])
    unmarked = [r["id"] for r in touched if r["date"] < day]
    summary = f"marked {target['id']} fresh"
    if unmarked:
        summary += f"; unmarked {', '.join(unmarked)}"
    return Done(
        summary,
        data={"marked": target["id"], "unmarked": unmarked},
        changes={
            "rows": [
                {"id": r["id"], "previous_is_fresh": r["is_fresh"], "is_fresh": r["date"] == day}
                for r in touched
            ]
        },
    )


def render_mark_fresh(*, ctx: StepContext, **_: Any) -> str:
    day = pack_date(ctx.labels, ctx.params)
    return (
        "BEGIN ISOLATION LEVEL SERIALIZABLE;\n"
        f"{plan.sql(packs.lock_for_mark(packs.FULL), day.isoformat())}\n"
        + plan.sql(
            packs.MARK,
            day.isoformat(),
            plan.Hint(f"<{validation.pack_id_for(day)} and older fresh packs>"),
        )
        + "\nCOMMIT;"
    )


# ----------------------------------------------------------- 7 freshness gate


async def freshness_gate(*, ctx: StepContext, **_: Any) -> Done:
    http = ctx.clients.need("http")
    try:
        result = await http.freshness_gate()
    except ConfigError as exc:
        raise StepFailed(str(exc)) from exc
    if result.ok:
        return Done(
            "POST /execute answered 200: valuations are served",
            data={"status_code": result.status_code},
        )
    why = " (pack warming: no fresh pack)" if result.warming else ""
    if result.auth_failed:
        why = " (the app refused targets.http.app_token: set or renew it)"
    raise StepFailed(f"POST /execute answered {result.status_code}{why}: {result.detail}")


def render_freshness_gate(*, ctx: StepContext, **_: Any) -> str:
    settings = ctx.clients.settings
    app = getattr(getattr(getattr(settings, "targets", None), "http", None), "app_url", None)
    return (
        f"POST {app or '<targets.http.app_url>'}/execute"
        ' {"pattern_id": "portfolio_overview", "portfolio_id": "test-portfolio-uuid",'
        ' "inputs": {}}  # expect 200, not 503'
    )


def _literal(text: str) -> Any:
    def render(*, ctx: StepContext, **_: Any) -> str:
        return text.strip()

    return render


STEPS: Sequence[Step] = (
    Step(
        "scheduler_logs",
        "diagnose",
        "Read the scheduler's build_pack log lines",
        scheduler_logs,
        render_scheduler_logs,
        timeout=30.0,
    ),
    Step(
        "provider_health",
        "diagnose",
        "Check the price providers' health",
        provider_health,
        render_provider_health,
        timeout=20.0,
        attempts=1,
    ),
    Step(
        "recent_packs",
        "diagnose",
        "List the last 5 pricing packs; confirm the alert's pack is late",
        recent_packs,
        render_recent_packs,
    ),
    Step(
        "long_running_queries",
        "diagnose",
        "List long-running queries (read-only)",
        long_running_queries,
        _literal(_LONG_QUERIES),
    ),
    Step(
        "kill_stuck",
        "mitigate",
        "Terminate a query stuck past the threshold (RB-05's guards)",
        stuck.kill_stuck,
        stuck.render_kill_stuck,
        mutates=True,
        approval="approve",
        needs=("database",),
        idempotent=True,
        timeout=20.0,
        withhold=stuck.withhold,
    ),
    Step(
        "serve_last_good",
        "mitigate",
        "Serve the last-good pricing pack",
        serve_last_good,
        render_serve_last_good,
        mutates=True,
        undo=unserve_last_good,
    ),
    Step(
        "rerun_build",
        "mitigate",
        "Rerun the pack build as a Kubernetes Job",
        rerun_build,
        render_rerun_build,
        mutates=True,
    ),
    Step(
        "await_build",
        "verify",
        "Wait for the new pack to be built",
        await_build,
        render_await_build,
        timeout=60.0,  # one poll; the wait between polls parks the run
        attempts=1,
    ),
    Step(
        "mark_fresh",
        "mitigate",
        "Mark the new pack fresh, unmark older packs",
        mark_fresh,
        render_mark_fresh,
        mutates=True,
    ),
    Step(
        "freshness_gate",
        "verify",
        "Verify the freshness gate (POST /execute)",
        freshness_gate,
        render_freshness_gate,
        timeout=20.0,
    ),
)

RUNBOOK = Runbook(
    id="RB-01",
    title="Pricing pack build failure",
    severity="P1",
    steps=tuple(STEPS),
    params=Params,
    target=_target,
    anchor="rb-01-pricing-pack-build-failure",
)
