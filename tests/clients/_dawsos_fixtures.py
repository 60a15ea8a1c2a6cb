"""Test-side helpers for the DawsOS target: fresh databases and Redis key prefixes.

Import as ``from clients._dawsos_fixtures import ...`` (tests/ is on sys.path). The
shared settings and the missing-service policy come from tests/conftest.py; it is
looked up among pytest's loaded plugins, not by ``import conftest``, because pytest
rebinds that module name to whichever directory's conftest it loaded last.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import ModuleType

import pytest
import redis.asyncio as aioredis

from remediator import testing_dawsos
from remediator.errors import TargetTimeout, TargetUnavailable

_ROOT_CONFTEST = (Path(__file__).parent.parent / "conftest.py").resolve()


def shared_conftest(config: pytest.Config) -> ModuleType:
    """The module object of tests/conftest.py (PG_DSN, REDIS_URL, service_missing)."""
    for plugin in config.pluginmanager.get_plugins():
        path = getattr(plugin, "__file__", None)
        if isinstance(plugin, ModuleType) and path and Path(path).resolve() == _ROOT_CONFTEST:
            return plugin
    raise RuntimeError(f"{_ROOT_CONFTEST} is not loaded as a pytest plugin")


def admin_dsn(config: pytest.Config) -> str:
    return str(shared_conftest(config).PG_DSN)


@asynccontextmanager
async def fresh_dawsos_database(config: pytest.Config, *, seed: bool = True) -> AsyncIterator[str]:
    """A new seeded DawsOS database for one test; dropped afterwards."""
    shared = shared_conftest(config)
    try:
        dsn = await testing_dawsos.create_dawsos_database(shared.PG_DSN, seed=seed)
    except (TargetUnavailable, TargetTimeout) as exc:
        shared.service_missing("PostgreSQL", exc)
        raise
    try:
        yield dsn
    finally:
        await testing_dawsos.drop_database(shared.PG_DSN, dsn)


@asynccontextmanager
async def redis_with_prefix(config: pytest.Config) -> AsyncIterator[tuple[aioredis.Redis, str]]:
    """A raw client on the shared test Redis and a key prefix unique to this test.

    Never FLUSHDB: other engineers' tests share the database. Only this test's keys
    are deleted afterwards.
    """
    shared = shared_conftest(config)
    client = aioredis.from_url(shared.REDIS_URL)
    try:
        await client.ping()
    except (OSError, aioredis.RedisError) as exc:
        await client.aclose()
        shared.service_missing("Redis", exc)
        raise
    prefix = f"remediator-test:{uuid.uuid4().hex}:"
    try:
        yield client, prefix
    finally:
        keys = [key async for key in client.scan_iter(match=prefix + "*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()
