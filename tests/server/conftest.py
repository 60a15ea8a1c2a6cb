from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import PG_DSN, service_missing


@pytest.fixture(params=["sqlite", "postgres"])
async def state_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """The same tests run against both state backends."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/state.db"
        return
    schema = "t_" + uuid.uuid4().hex[:12]
    try:
        conn = await asyncpg.connect(PG_DSN, timeout=5)
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        service_missing("PostgreSQL", exc)
        raise
    await conn.execute(f'CREATE SCHEMA "{schema}"')
    await conn.close()
    yield f"{PG_DSN}?search_path={schema}"
    conn = await asyncpg.connect(PG_DSN, timeout=5)
    await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
    await conn.close()
