# ruff: noqa: F811 - the RB-01 fixtures, imported, are then asked for by name
"""RB-01's pack date is today in the rule's `timezone`, on real state.

The unit test (test_rb01.py) checks the date function; this one runs the runbook with
a zone whose date differs from New York's right now (UTC+14 or UTC-12: at any
instant one of them does), on the real DawsOS database of both schemas, and checks
what a human sees: the run's target, the pack RB-01 finds late, and which row it
marks fresh.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from remediator.testing import make_alert
from tests.runbooks import _rb0103_fixtures as fx
from tests.runbooks.test_rb01 import (  # noqa: F401 - fixtures
    FAST,
    fake,
    harness,
    http,
    kube,
    schema,
    steps_by_name,
    target,
)

ZONES = ("Pacific/Kiritimati", "Etc/GMT+12")  # UTC+14, UTC-12


def zone_off_new_york() -> tuple[str, date]:
    new_york = fx.today()
    for zone in ZONES:
        day = datetime.now(ZoneInfo(zone)).date()
        if day != new_york:
            return zone, day
    raise AssertionError("UTC+14 and UTC-12 cannot both be on New York's date")


async def test_the_pack_date_is_today_in_the_configured_zone(target, fake, kube, http) -> None:
    zone, day = zone_off_new_york()
    dsn, db = target
    checks, router = http
    fx.providers_answer(router, down={"fmp": 503})  # no rebuild: only the date matters
    fx.gate_answers(router, 200)
    # Packs up to two days before the zone's today; none fresh.
    await db.execute("DELETE FROM pricing_pack WHERE date >= $1", day - timedelta(days=1))
    await db.execute("UPDATE pricing_pack SET is_fresh = FALSE")
    last_good = f"PP-{day - timedelta(days=2)}"
    before = await fx.snapshot(dsn)
    rules = fx.rules_yaml("RB-01", ["PricingPackNotReady"], {**FAST, "timezone": zone})
    alert = make_alert("PricingPackNotReady", {"service": "dawsos", "severity": "critical"})
    async with harness(target, kube, checks, rules=rules) as h:
        await h.deliver(alert)
        steps = await steps_by_name(h)
        [run] = await h.runs()
    assert run["target"] == f"RB-01:{day}", (zone, run["target"])
    assert run["blocked_by"] is None
    assert steps["recent_packs"]["result"]["data"]["late"] == str(day)
    assert steps["serve_last_good"]["changes"] == {
        "pack_date": str(day),
        "flipped": [{"id": last_good, "previous_is_fresh": False}],
    }
    assert await fx.snapshot(dsn) == fx.changed(
        before, "pricing_pack", "id", {last_good: {"is_fresh": True}}
    )
