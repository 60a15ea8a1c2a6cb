"""RB-01 step 4, as actions: serve the last-good pack while no pack is fresh, and its undo.

The undo puts the flip back only when that is safe: never while no newer pack is fresh
(unmarking the last-good pack would bring the 503s back).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import ClassVar

from pydantic import BaseModel, ValidationError

from remediator.runbook_api.action_steps import step
from remediator.runbook_api.actions import Hint, render_sql
from remediator.runbook_api.context import Clients, StepContext
from remediator.runbook_api.steps import Done, Need, Skip, StepFailed
from remediator.runbooks import packs
from remediator.runbooks.rb01_params import PacksFound, Params, is_late, pack_date, unconfirmed

# ------------------------------------------------------- 4 serve last-good pack

_FRESH = "SELECT id FROM pricing_pack WHERE is_fresh ORDER BY date DESC FOR UPDATE"


@dataclass(frozen=True)
class ServeLastGood:
    """Mark the newest built pack before D fresh, only while no pack is fresh.
    ``guess``: the pack recent_packs' listing points to, for the plan's words."""

    day: date
    late: bool  # recent_packs confirmed D's pack late
    guess: str | None

    needs: ClassVar[Need] = "database"
    mutates: ClassVar[bool] = True

    def render(self) -> str:
        candidate = Hint(
            f"{self.guess!r} (newest ready pack before {self.day})"
            if self.guess
            else f"<newest ready pack before {self.day}>"
        )
        return "\n".join(
            [
                "-- only if no pack is fresh (SELECT id FROM pricing_pack WHERE is_fresh FOR"
                " UPDATE)",
                "-- status/hash conditions only where the catalog has those columns",
                render_sql(packs.last_good(packs.FULL), (self.day.isoformat(),)),
                render_sql(packs.SERVE, (candidate,)),
            ]
        )

    async def execute(self, clients: Clients) -> Done | Skip:
        day = self.day
        if not self.late:
            return unconfirmed(day)
        db = clients.need_database()
        cols = await packs.columns(db)
        # Serializable: "no pack is fresh" must still hold when we flip one.
        async with db.transaction(isolation="serializable") as tx:
            fresh = await tx.fetch(_FRESH)
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


# ------------------------------------------------------------------ its undo

_LOCK = "SELECT id, date, is_fresh FROM pricing_pack WHERE id = $1 FOR UPDATE"
_NEWER = "SELECT id FROM pricing_pack WHERE is_fresh AND date > $1 ORDER BY date DESC LIMIT 1"
_UNSERVE = "UPDATE pricing_pack SET is_fresh = $2 WHERE id = $1 AND is_fresh"


class Flipped(BaseModel):
    id: str
    previous_is_fresh: bool


class Served(BaseModel):
    """serve_last_good's undo record."""

    flipped: list[Flipped] = []


class Marked(BaseModel):
    """What mark_fresh marked (None: it marked nothing)."""

    marked: str | None = None


@dataclass(frozen=True)
class UnserveLastGood:
    """Unmark the packs serve_last_good flipped, only those still fresh and only while
    a newer pack is fresh (``flipped`` None: a plan, before anything was recorded)."""

    flipped: tuple[Flipped, ...] | None
    replaced_by: str | None  # the pack our verified build marked fresh, if any

    needs: ClassVar[Need] = "database"
    mutates: ClassVar[bool] = True

    def render(self) -> str:
        items = (
            [(Hint("<the pack served>"), False)]
            if self.flipped is None
            else [(f.id, f.previous_is_fresh) for f in self.flipped]
        )
        blocks = [
            f"{render_sql(_LOCK, (pid,))}\n"
            f"{render_sql(_NEWER, (Hint('<its date>'),))}\n"
            f"{render_sql(_UNSERVE, (pid, previous))}\n"
            "-- only while it is still fresh and a newer pack is fresh (else it stays fresh:"
            " unmarking it would bring the 503s back)"
            for pid, previous in items
        ]
        return "\n".join(["BEGIN ISOLATION LEVEL SERIALIZABLE;", *blocks, "COMMIT;"])

    async def execute(self, clients: Clients) -> Done | Skip:
        db = clients.need_database()
        restored: list[str] = []
        left: list[str] = []
        async with db.transaction(isolation="serializable") as tx:
            for item in self.flipped or ():
                pid = item.id
                row = await tx.fetchrow(_LOCK, pid)
                if row is None:
                    left.append(f"{pid} no longer exists")
                    continue
                if not row["is_fresh"]:
                    by = f"our verified build {self.replaced_by}" if self.replaced_by else None
                    left.append(
                        f"{pid} was already unmarked (replaced by {by or 'someone else'});"
                        " nothing to restore"
                    )
                    continue
                newer = await tx.fetchval(_NEWER, row["date"])
                if newer is None:
                    left.append(
                        f"kept {pid} fresh: no newer pack is fresh, and unmarking it would"
                        " bring the 503s back; unmark it by hand once a new pack is fresh"
                    )
                    continue
                await tx.execute(_UNSERVE, pid, item.previous_is_fresh)
                restored.append(f"{pid} unmarked (newer {newer} is fresh)")
        if not restored:
            return Skip("; ".join(left) or "nothing recorded")
        return Done("; ".join(restored + left))


def unserve_last_good(ctx: StepContext, changes: Mapping[str, object]) -> UnserveLastGood:
    marked = ctx.found("mark_fresh", Marked)
    replaced_by = marked.marked if marked is not None else None
    if not changes:  # a plan: nothing recorded yet
        return UnserveLastGood(None, replaced_by)
    try:
        served = Served.model_validate(changes)
    except ValidationError as exc:
        raise StepFailed("the undo record has no flipped packs") from exc
    return UnserveLastGood(tuple(served.flipped), replaced_by)


@step(
    "serve_last_good",
    "mitigate",
    "Serve the last-good pricing pack",
    mutates=True,
    temporary=True,  # put back on resolve only where that is safe (UnserveLastGood)
    undo=unserve_last_good,
)
def serve_last_good(ctx: StepContext[Params]) -> ServeLastGood:
    day = pack_date(ctx.labels, ctx.params)
    found = ctx.found("recent_packs", PacksFound)
    listed = found.packs if found is not None else []
    guess = next(
        (p.id for p in listed if p.status in ("ready", None) and p.date < day.isoformat()),
        None,
    )
    return ServeLastGood(day, is_late(ctx, day), guess)
