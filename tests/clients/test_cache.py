"""Cache against the real test Redis (keys under a per-test prefix; never FLUSHDB)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from clients._dawsos_fixtures import redis_with_prefix, shared_conftest

from remediator.clients.cache import NO_EXPIRY, Cache
from remediator.errors import InputRejected, TargetTimeout, TargetUnavailable


@pytest.fixture
async def seeded(
    request: pytest.FixtureRequest,
) -> AsyncIterator[tuple[aioredis.Redis, str]]:
    async with redis_with_prefix(request.config) as (client, prefix):
        yield client, prefix


@pytest.fixture
async def cache(request: pytest.FixtureRequest) -> AsyncIterator[Cache]:
    c = Cache(shared_conftest(request.config).REDIS_URL, timeout=2.0)
    yield c
    await c.aclose()


async def test_get_many_returns_values_and_none_for_missing(
    seeded: tuple[aioredis.Redis, str], cache: Cache
) -> None:
    raw, p = seeded
    await raw.set(f"{p}fundamentals:AAPL", b'{"pe": 35.2}')
    await raw.set(f"{p}fundamentals:MSFT", b'{"pe": 36.9}')
    keys = [f"{p}fundamentals:AAPL", f"{p}fundamentals:MSFT", f"{p}fundamentals:RDDT"]
    assert await cache.get_many(keys) == {
        keys[0]: b'{"pe": 35.2}',
        keys[1]: b'{"pe": 36.9}',
        keys[2]: None,
    }


async def test_get_many_of_nothing_is_empty(cache: Cache) -> None:
    assert await cache.get_many([]) == {}


async def test_ttl_reports_seconds_no_expiry_and_absence(
    seeded: tuple[aioredis.Redis, str], cache: Cache
) -> None:
    raw, p = seeded
    await raw.set(f"{p}expiring", b"v", ex=300)
    await raw.set(f"{p}persistent", b"v")
    seconds = await cache.ttl(f"{p}expiring")
    assert seconds is not None and 0 < seconds <= 300
    assert await cache.ttl(f"{p}persistent") == NO_EXPIRY
    assert await cache.ttl(f"{p}absent") is None


async def test_check_last_good_splits_hits_and_misses(
    seeded: tuple[aioredis.Redis, str], cache: Cache
) -> None:
    raw, p = seeded
    await raw.set(f"{p}fundamentals:AAPL", b"cached")
    hit, miss = f"{p}fundamentals:AAPL", f"{p}fundamentals:NVDA"
    check = await cache.check_last_good([hit, miss])
    assert (check.hits, check.misses, check.ok) == ((hit,), (miss,), False)
    assert (await cache.check_last_good([hit])).ok


async def test_cache_only_reads(seeded: tuple[aioredis.Redis, str], cache: Cache) -> None:
    raw, p = seeded
    await raw.set(f"{p}k", b"v", ex=300)
    await cache.get_many([f"{p}k", f"{p}missing"])
    await cache.ttl(f"{p}k")
    await cache.check_last_good([f"{p}k", f"{p}missing"])
    assert sorted([k async for k in raw.scan_iter(match=p + "*")]) == [f"{p}k".encode()]
    assert await raw.get(f"{p}k") == b"v"


async def test_bad_keys_are_rejected_before_any_call(cache: Cache) -> None:
    for keys in (["x" * 10_000], [""], ["a\nb"], [f"k{i}" for i in range(1001)]):
        with pytest.raises(InputRejected) as caught:
            await cache.get_many(keys)
        assert len(str(caught.value)) < 200


async def test_closed_port_is_target_unavailable(unused_port: int) -> None:
    cache = Cache(f"redis://127.0.0.1:{unused_port}/0", timeout=1.0)
    try:
        with pytest.raises(TargetUnavailable) as caught:
            await cache.get_many(["fundamentals:AAPL"])
        assert caught.value.temporary
    finally:
        await cache.aclose()


async def test_silent_server_is_target_timeout() -> None:
    """A peer that accepts the connection and never answers."""
    held: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    cache = Cache(f"redis://127.0.0.1:{port}/0", timeout=0.3)
    try:
        with pytest.raises(TargetTimeout) as caught:
            await cache.ttl("fundamentals:AAPL")
        assert caught.value.temporary
    finally:
        await cache.aclose()
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()
