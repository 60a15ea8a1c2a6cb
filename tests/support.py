"""Small helpers shared by the test folders (kept free of daemon imports)."""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import ModuleType

import httpx
import pytest
import redis.asyncio as aioredis

_ROOT_CONFTEST = (Path(__file__).parent / "conftest.py").resolve()


def root_conftest(config: pytest.Config) -> ModuleType:
    """tests/conftest.py as pytest loaded it (PG_DSN, REDIS_URL, service_missing).

    Looked up among the loaded plugins rather than imported by name: with several
    conftest.py files, the module name ``conftest`` is rebound to the last one.
    """
    for plugin in config.pluginmanager.get_plugins():
        path = getattr(plugin, "__file__", None)
        if isinstance(plugin, ModuleType) and path and Path(path).resolve() == _ROOT_CONFTEST:
            return plugin
    raise RuntimeError(f"{_ROOT_CONFTEST} is not loaded as a pytest plugin")


@asynccontextmanager
async def redis_with_prefix(config: pytest.Config) -> AsyncIterator[tuple[aioredis.Redis, str]]:
    """A raw client on the shared test Redis and a key prefix unique to this test.

    Never FLUSHDB: tests share the database. Only this test's keys are deleted.
    """
    shared = root_conftest(config)
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


async def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """Until the daemon at ``url`` answers /readyz 200; fails if it exits or never does."""
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as c:
        while time.monotonic() < deadline:
            assert proc.poll() is None, "daemon exited"
            try:
                if (await c.get(url + "/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.05)
    raise AssertionError("daemon never became ready")
