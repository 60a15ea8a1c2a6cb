"""RB-01 steps 5 and 6: rerun the build as a Kubernetes Job, wait for the pack, mark it fresh.

Never starts a second build while one runs, never exceeds the attempts per date, and
marks only a pack this run verified as built (in one serializable transaction).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import date
from typing import Any

from remediator import validation
from remediator.errors import (
    TargetError,
    TargetNotFound,
)
from remediator.runbook_api.client_protocols import Kubernetes
from remediator.runbook_api.context import StepContext
from remediator.runbook_api.steps import Done, Skip, StepFailed, Wait
from remediator.runbooks import jobs, packs, plan
from remediator.runbooks.rb01_params import Params, is_late, job_name, pack_date, unconfirmed


def _command(day: date) -> list[str]:
    return ["python", "-m", "jobs.build_pack", "--date", day.isoformat(), "--force"]


async def _job_state(kube: Kubernetes, name: str) -> str | None:
    """The Job's state, or None when no such Job exists (404)."""
    try:
        return str(await kube.job_status(name))
    except TargetNotFound:
        return None


# ------------------------------------------------------------ 5 rerun the build


async def rerun_build(*, ctx: StepContext, **_: Any) -> Done | Skip:
    p = ctx.params_as(Params)
    day = pack_date(ctx.labels, p)
    if not is_late(ctx, day):
        return unconfirmed(day)
    db = ctx.clients.need_database()
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
    kube = ctx.clients.need_kubernetes()
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
    p = ctx.params_as(Params)
    day = pack_date(ctx.labels, p)
    name = f"build-pack-{day.isoformat()}-<attempt 1..{p.rerun_max_attempts}>"
    return (
        jobs.render(ctx, name, _command(day), deployment=p.build_deployment, image=p.build_image)
        + "\n# only if providers are healthy, no build job runs and attempts remain"
    )


# -------------------------------------------------------- 6a wait for the pack


async def await_build(*, ctx: StepContext, **_: Any) -> Done | Skip | Wait:
    p = ctx.params_as(Params)
    day = pack_date(ctx.labels, p)
    db = ctx.clients.need_database()
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
    kube = ctx.clients.need_kubernetes()
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
    p = ctx.params_as(Params)
    day = pack_date(ctx.labels, p)
    job = (ctx.results.get("rerun_build") or {}).get("job") or f"build-pack-{day}-<attempt>"
    return (
        plan.sql(packs.of_day(packs.FULL), day.isoformat())
        + f"\nkubectl get job {job} -n {plan.namespace(ctx)}"
        f"  # every {p.build_poll_seconds:g} s, up to {p.build_wait_seconds:g} s"
    )


# --------------------------------------------------------- 6b mark pack fresh


async def mark_fresh(*, ctx: StepContext, **_: Any) -> Done | Skip:
    day = pack_date(ctx.labels, ctx.params_as(Params))
    if not is_late(ctx, day):
        return unconfirmed(day)
    verified = ctx.results.get("await_build") or {}
    if not verified.get("ready"):
        return Skip(f"the pack for {day} was not verified as built; nothing marked fresh")
    db = ctx.clients.need_database()
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
    day = pack_date(ctx.labels, ctx.params_as(Params))
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
