from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from remediator.clients.database import TargetDatabase
from remediator.runbook_api.context import Clients
from tests.engine import _testbook


@pytest.fixture
async def target_db(pg_schema_dsn: str) -> AsyncIterator[TargetDatabase]:
    """A real Postgres target with the test runbook's tables."""
    conn = await asyncpg.connect(pg_schema_dsn)
    await conn.execute(_testbook.SCHEMA)
    await conn.close()
    db = await TargetDatabase.connect(pg_schema_dsn)
    yield db
    await db.aclose()


@pytest.fixture
def clients(target_db: TargetDatabase) -> Clients:
    return Clients(database=target_db)


async def knobs(db: TargetDatabase) -> dict[str, int]:
    return {r["name"]: r["value"] for r in await db.fetch("SELECT name, value FROM knobs")}


async def calls(db: TargetDatabase) -> list[str]:
    return [r["step"] for r in await db.fetch("SELECT step FROM calls ORDER BY id")]
