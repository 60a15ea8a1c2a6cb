"""Shared fixtures: real Postgres and Redis, never mocks.

With REMEDIATOR_REQUIRE_SERVICES=1 (CI sets it) a missing service fails the test
instead of skipping it: a skipped test proves nothing.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest
import redis.asyncio as aioredis

PG_DSN = os.environ.get("REMEDIATOR_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("REMEDIATOR_TEST_REDIS", "redis://127.0.0.1:6379/15")
REQUIRE = os.environ.get("REMEDIATOR_REQUIRE_SERVICES") == "1"


def service_missing(name: str, exc: BaseException) -> None:
    msg = f"{name} is not reachable: {exc!r}"
    if REQUIRE:
        pytest.fail(f"{msg} (REMEDIATOR_REQUIRE_SERVICES=1)", pytrace=False)
    pytest.skip(msg)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def unused_port() -> int:
    return free_port()


@pytest.fixture
async def pg_schema_dsn() -> AsyncIterator[str]:
    """A DSN whose search_path is a fresh, empty schema; dropped afterwards.

    Schemas keep parallel test runs (and several helpers on one machine) apart
    without the cost of CREATE DATABASE.
    """
    schema = "t_" + uuid.uuid4().hex[:12]
    try:
        conn = await asyncpg.connect(PG_DSN, timeout=5)
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        service_missing("PostgreSQL", exc)
        raise
    try:
        await conn.execute(f'CREATE SCHEMA "{schema}"')
    finally:
        await conn.close()
    sep = "&" if "?" in PG_DSN else "?"
    yield f"{PG_DSN}{sep}search_path={schema}"
    conn = await asyncpg.connect(PG_DSN, timeout=5)
    try:
        await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
    finally:
        await conn.close()


@pytest.fixture
async def redis_client() -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(REDIS_URL)
    try:
        await client.ping()
    except (OSError, aioredis.RedisError) as exc:
        await client.aclose()
        service_missing("Redis", exc)
        raise
    await client.flushdb()
    yield client
    await client.flushdb()
    await client.aclose()


@pytest.fixture
def tmp_cwd(tmp_path: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.chdir(tmp_path)  # type: ignore[arg-type]
    yield
