"""Fixtures for the pagers: respx standing in for the peers, pagers closed after use,
and both real state stores for the outbox."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import respx
from paging_samples import OG_KEY, PD_KEY, SLACK_URL

from remediator.paging import OpsgeniePager, PagerDutyPager, SlackPager
from tests.conftest import PG_DSN, service_missing


@pytest.fixture
def router() -> Iterator[respx.MockRouter]:
    # Every request must hit a declared route: nothing ever leaves the machine.
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as r:
        yield r


@pytest.fixture
async def pagers() -> AsyncIterator[list[Any]]:
    """Pagers created by a test are closed afterwards (each owns its client)."""
    made: list[Any] = []
    yield made
    for p in made:
        await p.aclose()


@pytest.fixture
def pagerduty(pagers: list[Any]) -> PagerDutyPager:
    p = PagerDutyPager(PD_KEY)
    pagers.append(p)
    return p


@pytest.fixture
def opsgenie(pagers: list[Any]) -> OpsgeniePager:
    p = OpsgeniePager(OG_KEY)
    pagers.append(p)
    return p


@pytest.fixture
def slack(pagers: list[Any]) -> SlackPager:
    p = SlackPager(SLACK_URL)
    pagers.append(p)
    return p


@pytest.fixture(params=["sqlite", "postgres"])
async def state_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """The same outbox tests run against both state backends."""
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
    sep = "&" if "?" in PG_DSN else "?"
    yield f"{PG_DSN}{sep}search_path={schema}"
    conn = await asyncpg.connect(PG_DSN, timeout=5)
    await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
    await conn.close()
