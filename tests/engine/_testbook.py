"""A small runbook used only by the engine tests: it acts on a real Postgres table.

It is a real plugin of the engine (declared steps, real target client), so the
tests exercise the engine exactly as the DawsOS runbooks do.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from pydantic import BaseModel, ConfigDict

from remediator.errors import TargetUnavailable
from remediator.runbook_api.context import StepContext
from remediator.runbook_api.registry import Registry
from remediator.runbook_api.steps import Done, Runbook, Step, StepFailed, Wait, describe

SCHEMA = """
CREATE TABLE knobs (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT INTO knobs VALUES ('throttle', 0), ('replicas', 3), ('other', 7);
CREATE TABLE calls (id SERIAL PRIMARY KEY, step TEXT NOT NULL);
"""

GATE: dict[str, asyncio.Event] = {}
# Set when a held step has got as far as its hold (see ``hold``).
REACHED: dict[str, asyncio.Event] = {}
ATTEMPTS: dict[str, int] = {}
REACHED_SECOND: set[str] = set()  # runs holding in `second` (hang_second)


async def hold(key: str) -> None:
    """Stop here until the test sets ``GATE[key]``; ``REACHED[key]`` says we got here."""
    REACHED.setdefault(key, asyncio.Event()).set()
    await GATE.setdefault(key, asyncio.Event()).wait()


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    throttle_to: int = 1
    fail: bool = False
    hang_second: bool = False
    hang_look: bool = False
    flaky_throttle: bool = False  # first attempt holds, then fails as temporary
    hang_scale_back: bool = False
    wait_second: float = 0.0  # `second` answers Wait for this long (a build Job running)


async def _count(ctx: StepContext, step: str) -> None:
    await ctx.clients.need_database().execute("INSERT INTO calls (step) VALUES ($1)", step)


async def look(*, ctx: StepContext, **_: Any) -> Done:
    if ctx.params.hang_look:
        await hold(f"{ctx.run_id}:look")
    await _count(ctx, "look")
    rows = await ctx.clients.need_database().fetch("SELECT name, value FROM knobs ORDER BY name")
    return Done(f"{len(rows)} knobs", data={"knobs": {r["name"]: r["value"] for r in rows}})


async def throttle(*, ctx: StepContext, **_: Any) -> Done:
    if ctx.params.flaky_throttle:
        ATTEMPTS[ctx.run_id] = ATTEMPTS.get(ctx.run_id, 0) + 1
        if ATTEMPTS[ctx.run_id] == 1:
            await hold(f"{ctx.run_id}:throttle")
            raise TargetUnavailable("knobs", "busy, try again")
    await _count(ctx, "throttle")
    if ctx.params.fail:
        raise StepFailed("the throttle refused")
    db = ctx.clients.need_database()
    async with db.transaction() as tx:
        prev = await tx.fetchval("SELECT value FROM knobs WHERE name = 'throttle' FOR UPDATE")
        await tx.execute(
            "UPDATE knobs SET value = $1 WHERE name = 'throttle'", ctx.params.throttle_to
        )
    return Done(f"throttle {prev} -> {ctx.params.throttle_to}", changes={"throttle": prev})


async def unthrottle(*, ctx: StepContext, changes: Any, **_: Any) -> Done:
    await _count(ctx, "unthrottle")
    await ctx.clients.need_database().execute(
        "UPDATE knobs SET value = $1 WHERE name = 'throttle'", changes["throttle"]
    )
    return Done(f"throttle back to {changes['throttle']}")


async def second(*, ctx: StepContext, **_: Any) -> Done | Wait:
    if ctx.params.wait_second:
        first_asked = ctx.results.get("second", {}).get("since")
        if first_asked is None or time.time() - first_asked < ctx.params.wait_second:
            since = first_asked if first_asked is not None else time.time()
            return Wait("the build is still running", ctx.params.wait_second, {"since": since})
    if ctx.params.hang_second:
        REACHED_SECOND.add(ctx.run_id)
        await GATE.setdefault(ctx.run_id, asyncio.Event()).wait()
    await _count(ctx, "second")
    return Done("second ran")


async def scale_down(*, ctx: StepContext, **_: Any) -> Done:
    await _count(ctx, "scale_down")
    db = ctx.clients.need_database()
    async with db.transaction() as tx:
        prev = await tx.fetchval("SELECT value FROM knobs WHERE name = 'replicas' FOR UPDATE")
        await tx.execute("UPDATE knobs SET value = 0 WHERE name = 'replicas'")
    return Done(f"replicas {prev} -> 0", changes={"replicas": prev})


async def scale_back(*, ctx: StepContext, changes: Any, **_: Any) -> Done:
    if ctx.params.hang_scale_back:
        await hold(f"{ctx.run_id}:scale_back")
    await ctx.clients.need_database().execute(
        "UPDATE knobs SET value = $1 WHERE name = 'replicas'", changes["replicas"]
    )
    return Done(f"replicas back to {changes['replicas']}")


def render_throttle(*, ctx: StepContext, **_: Any) -> str:
    return f"UPDATE knobs SET value = {ctx.params.throttle_to} WHERE name = 'throttle'"


RUNBOOK = Runbook(
    id="RB-T",
    title="Test incident",
    severity="P1",
    params=Params,
    target=lambda labels, params: labels.get("service", "none"),
    steps=(
        Step("look", "diagnose", "Read the knobs", look, describe("SELECT name, value FROM knobs")),
        Step(
            "throttle",
            "mitigate",
            "Throttle",
            throttle,
            render_throttle,
            mutates=True,
            undo=unthrottle,
            stop_on_failure=True,
        ),
        Step(
            "second",
            "verify",
            "Second step",
            second,
            describe("INSERT INTO calls"),
            idempotent=True,
            attempts=1,
        ),
        Step(
            "scale_down",
            "mitigate",
            "Scale to zero",
            scale_down,
            describe("UPDATE knobs SET value = 0 WHERE name = 'replicas'"),
            mutates=True,
            approval="approve",
            undo=scale_back,
        ),
    ),
)


def registry() -> Registry:
    r = Registry()
    r.register(RUNBOOK)
    return r


def rules(**extra: str) -> str:
    lines = [
        "rules:",
        "  - name: test-rule",
        "    matchers: ['alertname=\"TestAlert\"']",
        "    runbook: RB-T",
    ]
    lines += [f"    {k}: {v}" for k, v in extra.items()]
    return "\n".join(lines) + "\n"
