"""RB-01 step 4: serve the last-good pack while no pack is fresh, and its undo.

The undo puts the flip back only when that is safe: never while no newer pack is fresh
(unmarking the last-good pack would bring the 503s back).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from remediator.runbook_api.context import StepContext
from remediator.runbook_api.steps import Done, Skip, StepFailed
from remediator.runbooks import packs, plan
from remediator.runbooks.rb01_params import Params, is_late, pack_date, unconfirmed

# ------------------------------------------------------- 4 serve last-good pack


async def serve_last_good(*, ctx: StepContext, **_: Any) -> Done | Skip:
    day = pack_date(ctx.labels, ctx.params_as(Params))
    if not is_late(ctx, day):
        return unconfirmed(day)
    db = ctx.clients.need_database()
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
    db = ctx.clients.need_database()
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
    day = pack_date(ctx.labels, ctx.params_as(Params))
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
