"""RB-01 steps 5 and 6, as actions: rerun the build as a Kubernetes Job, wait for the
pack, mark it fresh.

Never starts a second build while one runs, never exceeds the attempts per date, and
marks only a pack this run verified as built (in one serializable transaction).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any, ClassVar

from pydantic import BaseModel

from remediator import validation
from remediator.errors import TargetError, TargetNotFound
from remediator.runbook_api.action_steps import step
from remediator.runbook_api.actions import Hint, render_sql
from remediator.runbook_api.client_protocols import Kubernetes
from remediator.runbook_api.context import Clients, StepContext
from remediator.runbook_api.steps import Done, Need, Skip, StepFailed, Wait
from remediator.runbooks import jobs, packs, plan
from remediator.runbooks.rb01_diagnose import Health
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


@dataclass(frozen=True)
class RerunBuild:
    """Start the next build attempt for D, only if D's pack is late and not built,
    the providers are healthy (``health`` None: their check failed), no build Job
    runs and attempts remain."""

    day: date
    late: bool
    health: Health | None
    params: Params
    run_id: str
    namespace: str

    needs: ClassVar[Need] = "kubernetes"
    mutates: ClassVar[bool] = True

    def render(self) -> str:
        p = self.params
        name = f"build-pack-{self.day.isoformat()}-<attempt 1..{p.rerun_max_attempts}>"
        return (
            jobs.render(
                self.namespace,
                name,
                _command(self.day),
                deployment=p.build_deployment,
                image=p.build_image,
            )
            + "\n# only if providers are healthy, no build job runs and attempts remain"
        )

    async def execute(self, clients: Clients) -> Done | Skip:
        p, day = self.params, self.day
        if not self.late:
            return unconfirmed(day)
        db = clients.need_database()
        cols = await packs.columns(db)
        pack = await db.fetchrow(packs.of_day(cols), day)
        # Without a status or hash column a row is no finished build: rerun (--force).
        if pack is not None and packs.ready(pack, cols):
            return Skip(f"{pack['id']} is already built (ready); no rerun needed")
        if self.health is None or self.health.healthy is None:
            return Skip(
                "provider health is unknown (its check failed, or targets.http is not"
                " configured); not rerunning blind"
            )
        if not self.health.healthy:
            down = ", ".join(self.health.unhealthy)
            return Skip(f"providers unhealthy ({down}): a rerun would fail again; see RB-02")
        kube = clients.need_kubernetes()
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
            kube,
            name,
            _command(day),
            deployment=p.build_deployment,
            container=p.build_container,
            image=p.build_image,
            labels={
                "app.kubernetes.io/managed-by": "remediator",
                "remediator/runbook": "RB-01",
                "remediator/pack-date": day.isoformat(),
                "remediator/run": self.run_id,
            },
            ttl_seconds=p.job_ttl_seconds,
        )
        return Done(
            f"started build job {name} (attempt {attempt} of {p.rerun_max_attempts})",
            data={"job": name, "attempt": attempt, "date": day.isoformat()},
        )


@step("rerun_build", "mitigate", "Rerun the pack build as a Kubernetes Job", mutates=True)
def rerun_build(ctx: StepContext[Params]) -> RerunBuild:
    p = ctx.params
    day = pack_date(ctx.labels, p)
    health = ctx.found("provider_health", Health)
    return RerunBuild(day, is_late(ctx, day), health, p, ctx.run_id, plan.namespace(ctx))


# -------------------------------------------------------- 6a wait for the pack


class Started(BaseModel):
    """The Job rerun_build started (None: it started none)."""

    job: str | None = None


class Awaited(BaseModel):
    """await_build's own data: when its wait began (kept across wake-ups), and whether
    it verified the pack as built (for mark_fresh)."""

    since: float | None = None
    ready: bool = False


@dataclass(frozen=True)
class AwaitBuild:
    """Poll D's pack and the build Job; between polls the run is parked (Wait), so no
    worker is held while the Job builds (``job`` None: no rerun was started)."""

    day: date
    job: str | None
    since: float | None  # when the wait began (None: it begins now)
    params: Params
    namespace: str

    needs: ClassVar[Need] = "database"
    mutates: ClassVar[bool] = False

    def render(self) -> str:
        p = self.params
        job = self.job or f"build-pack-{self.day}-<attempt>"
        return (
            render_sql(packs.of_day(packs.FULL), (self.day.isoformat(),))
            + f"\n{packs.FULL_NOTE}\nkubectl get job {job} -n {self.namespace}"
            f"  # every {p.build_poll_seconds:g} s, up to {p.build_wait_seconds:g} s"
        )

    async def execute(self, clients: Clients) -> Done | Skip | Wait:
        p, day, job = self.params, self.day, self.job
        db = clients.need_database()
        cols = await packs.columns(db)
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
        kube = clients.need_kubernetes()
        since = self.since or time.time()
        try:
            pack = await db.fetchrow(packs.of_day(cols), day)
            if packs.ready(pack, cols) and pack is not None:
                return _built(pack, job)
            state = await kube.job_status(job)
            if state == "succeeded":
                # The job writes the pack before it exits: look once more. Without a
                # status column, the row our succeeded Job leaves is the new pack.
                pack = await db.fetchrow(packs.of_day(cols), day)
                if packs.ready(pack, cols) is not False and pack is not None:
                    return _built(pack, job)
                raise StepFailed(
                    f"job {job} succeeded but the pack for {day} is {packs.state(pack)}"
                )
            if state == "failed":
                raise StepFailed(f"build job {job} failed; see kubectl logs job/{job}")
        except TargetError as exc:
            if not exc.temporary:
                raise
        if time.time() - since + p.build_poll_seconds > p.build_wait_seconds:
            raise StepFailed(
                f"pack for {day} not ready after {p.build_wait_seconds:g} s; job {job} still"
                " running"
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


@step(
    "await_build",
    "verify",
    "Wait for the new pack to be built",
    mutates=False,
    timeout=60.0,  # one poll; the wait between polls parks the run
    attempts=1,
)
def await_build(ctx: StepContext[Params]) -> AwaitBuild:
    p = ctx.params
    started = ctx.found("rerun_build", Started)
    waited = ctx.found("await_build", Awaited)
    return AwaitBuild(
        pack_date(ctx.labels, p),
        started.job if started is not None else None,
        waited.since if waited is not None else None,
        p,
        plan.namespace(ctx),
    )


# --------------------------------------------------------- 6b mark pack fresh


@dataclass(frozen=True)
class MarkFresh:
    """Mark D's pack fresh and unmark older fresh ones, in one serializable
    transaction, only when this run confirmed it late and verified it built."""

    day: date
    late: bool
    verified: bool  # await_build verified D's pack as built

    needs: ClassVar[Need] = "database"
    mutates: ClassVar[bool] = True

    def render(self) -> str:
        day = self.day.isoformat()
        return (
            "BEGIN ISOLATION LEVEL SERIALIZABLE;\n"
            f"{render_sql(packs.lock_for_mark(packs.FULL), (day,))}\n"
            + render_sql(
                packs.MARK,
                (day, Hint(f"<{validation.pack_id_for(self.day)} and older fresh packs>")),
            )
            + f"\n{packs.FULL_NOTE}\nCOMMIT;"
        )

    async def execute(self, clients: Clients) -> Done | Skip:
        day = self.day
        if not self.late:
            return unconfirmed(day)
        if not self.verified:
            return Skip(f"the pack for {day} was not verified as built; nothing marked fresh")
        db = clients.need_database()
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
                    {
                        "id": r["id"],
                        "previous_is_fresh": r["is_fresh"],
                        "is_fresh": r["date"] == day,
                    }
                    for r in touched
                ]
            },
        )


@step("mark_fresh", "mitigate", "Mark the new pack fresh, unmark older packs", mutates=True)
def mark_fresh(ctx: StepContext[Params]) -> MarkFresh:
    day = pack_date(ctx.labels, ctx.params)
    waited = ctx.found("await_build", Awaited)
    return MarkFresh(day, is_late(ctx, day), waited is not None and waited.ready)
