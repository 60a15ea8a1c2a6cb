"""deploy/dawsos/README.md's table "What each runbook does with only the database
configured" holds for RB-01 and RB-04, on deploy/dawsos/schema.sql and seed.sql.

The table said RB-01 and RB-04 failed on that schema; they no longer do, and the
seed counted pack dates in UTC while RB-01 counts them in its `timezone`
(America/New_York by default), so between 00:00 and 05:00 UTC the seed's newest pack
was already "today's". Real parts: the deploy files loaded into PostgreSQL as a user
loads them, the shipped rules and example payloads, the real engine through the
Harness with only targets.database, and the rows of the target tables.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest
import yaml

from remediator.clients.database import TargetDatabase
from remediator.paging import text
from remediator.runbook_api.context import Clients
from remediator.runbook_api.registry import load_entry_points
from remediator.testing import Harness

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "dawsos"
EXAMPLES = ROOT / "remediator" / "examples"
TABLES = ("pricing_pack", "alerts", "provider_rights", "user_licenses", "notifications")


def example(name: str) -> dict[str, Any]:
    [alert] = json.loads((EXAMPLES / f"{name}.json").read_text())["alerts"]
    return dict(alert)


def shipped_rules() -> str:
    rules: list[Any] = []
    for path in sorted((ROOT / "rules").glob("*.yaml")):
        rules += yaml.safe_load(path.read_text())["rules"]
    return yaml.safe_dump({"rules": rules})


def table_row(readme: str, alertname: str) -> str:
    [line] = [x for x in readme.splitlines() if x.startswith(f"| `{alertname}` ")]
    return line


@pytest.fixture
async def deploy_db(pg_schema_dsn: str) -> AsyncIterator[TargetDatabase]:
    """schema.sql then seed.sql, as the README loads them (psql -f, one after the other)."""
    conn = await asyncpg.connect(pg_schema_dsn)
    try:
        for name in ("schema.sql", "seed.sql"):
            await conn.execute((DEPLOY / name).read_text())
    finally:
        await conn.close()
    db = await TargetDatabase.connect(pg_schema_dsn)
    yield db
    await db.aclose()


async def rows(db: TargetDatabase) -> dict[str, list[dict[str, Any]]]:
    out = {}
    for table in TABLES:
        out[table] = [dict(r) for r in await db.fetch(f"SELECT * FROM {table} ORDER BY 1, 2")]
    return out


def harness(db: TargetDatabase) -> Harness:
    return Harness(load_entry_points(), shipped_rules(), clients=Clients(database=db))


async def test_the_seed_counts_pack_days_where_rb01_does(deploy_db: TargetDatabase) -> None:
    today = datetime.now(ZoneInfo("America/New_York")).date()
    dates = [r["date"] for r in await deploy_db.fetch("SELECT date FROM pricing_pack")]
    assert sorted(dates) == [today - timedelta(days=k) for k in (4, 3, 2, 1)]


async def test_rb01_serves_yesterdays_pack_and_leaves_it_for_a_human_at_resolve(
    deploy_db: TargetDatabase,
) -> None:
    readme = (DEPLOY / "README.md").read_text()
    assert "marks yesterday's pack fresh" in table_row(readme, "PricingPackNotReady")
    yesterday = datetime.now(ZoneInfo("America/New_York")).date() - timedelta(days=1)
    before = await rows(deploy_db)
    async with harness(deploy_db) as h:
        await h.deliver(example("PricingPackNotReady-firing"))
        [run] = await h.runs()
        fired = await rows(deploy_db)
        await h.deliver(example("PricingPackNotReady-resolved"))
        resolved = await rows(deploy_db)
        pages = list(h.pager.delivered)
    assert run.target == f"RB-01:{yesterday + timedelta(days=1)}"
    fresh = [r["id"] for r in fired["pricing_pack"] if r["is_fresh"]]
    assert fresh == [f"PP-{yesterday}"]
    # Nothing else changed, and the resolve keeps it fresh (no newer pack is).
    assert {k: v for k, v in fired.items() if k != "pricing_pack"} == {
        k: v for k, v in before.items() if k != "pricing_pack"
    }
    assert resolved == fired
    [resolve] = [p for p in pages if p.action == "resolve"]
    left = resolve.content.left_for_human
    assert any("unmark it by hand" in item for item in left), text.body(resolve.content)


async def test_rb04_reads_the_rights_and_changes_nothing_without_a_violation(
    deploy_db: TargetDatabase,
) -> None:
    readme = (DEPLOY / "README.md").read_text()
    assert "not corroborated" in table_row(readme, "RightsExportViolation")
    before = await rows(deploy_db)
    async with harness(deploy_db) as h:
        await h.deliver(example("RightsExportViolation-firing"))
        [run] = await h.runs()
        steps = {s.name: s for s in await h.steps(run.id)}
    assert await rows(deploy_db) == before
    assert run.blocked_by == "not_corroborated"
    assert steps["inspect_registry"].outcome == "applied"
    assert "export=restricted" in (steps["inspect_registry"].summary or "")
    assert steps["confirm_violation"].outcome == "skipped"
