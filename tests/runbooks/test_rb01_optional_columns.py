# ruff: noqa: F811 - the RB-01 fixtures, imported, are then asked for by name
"""RB-01 uses `pricing_pack.status` where the catalog has it, and does its job without.

With the column, the last good pack is the newest *ready* one before D: a failed
build is never served. On the runbook's own columns alone, it is the newest pack
before D. Real parts: the DawsOS database of both schemas, the official Kubernetes
client against the fake, the real engine; checked: the rows, and the doctor's note.
"""

from __future__ import annotations

from datetime import timedelta

from tests.runbooks import _rb0103_fixtures as fx
from tests.runbooks.test_rb01 import (  # noqa: F401 - fixtures
    ALERT,
    YESTERDAY,
    D,
    fake,
    harness,
    http,
    kube,
    no_pack_fresh,
    schema,
    steps_by_name,
    target,
)

BEFORE_YESTERDAY = f"PP-{D - timedelta(days=2)}"


async def test_a_failed_build_is_never_the_last_good_pack_where_status_exists(
    target, fake, kube, http, schema
) -> None:
    dsn, db = target
    checks, router = http
    fx.providers_answer(router, down={"fmp": 503})  # no rebuild: only serving matters
    fx.gate_answers(router, 200)
    await no_pack_fresh(db)
    if schema == "full":
        await db.execute("UPDATE pricing_pack SET status = 'failed' WHERE id = $1", YESTERDAY)
    before = await fx.snapshot(dsn)
    async with harness(target, kube, checks) as h:
        await h.deliver(ALERT)
        steps = await steps_by_name(h)
    served = BEFORE_YESTERDAY if schema == "full" else YESTERDAY
    assert steps["serve_last_good"]["changes"]["flipped"] == [
        {"id": served, "previous_is_fresh": False}
    ]
    assert await fx.snapshot(dsn) == fx.changed(
        before, "pricing_pack", "id", {served: {"is_fresh": True}}
    )
    listed = steps["recent_packs"]["result"]["summary"]
    if schema == "minimal":
        assert "pricing_pack has no status or hash column: a pack exists when its row does" in (
            listed
        )
    else:
        assert f"{YESTERDAY} failed" in listed, listed
