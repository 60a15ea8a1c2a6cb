"""The DawsOS cache (Redis), read-only: RB-02's "is last-good data still served?".

During a provider outage DawsOS serves cached data (``fundamentals:AAPL`` ...). This
client reads values and TTLs so a runbook can say which keys still hit.

Errors are wrapped at this boundary: connection refused / lost -> TargetUnavailable,
socket timeout -> TargetTimeout, a command the server refuses -> TargetRejected.
The client does not retry (redis-py's default would retry 10 times with backoff):
the engine's step policy owns retries.

This module must never write to or delete from the cache, and never put the URL
(it may hold a password) in an error.
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import (
    AuthenticationError,
    AuthorizationError,
    RedisError,
    ResponseError,
)
from redis.exceptions import (
    ConnectionError as RedisConnectionError,
)
from redis.exceptions import (
    TimeoutError as RedisTimeoutError,
)

from remediator.errors import InputRejected, TargetRejected, TargetTimeout, TargetUnavailable

T = TypeVar("T")

TARGET = "cache"
NO_EXPIRY = -1  # ttl() of a key that never expires
MAX_KEYS = 1000
MAX_KEY_LEN = 512


@dataclass(frozen=True)
class CacheCheck:
    hits: tuple[str, ...]
    misses: tuple[str, ...]

    @property
    def ok(self) -> bool:
        """Every key checked is served from the cache."""
        return not self.misses


def _check_keys(keys: Sequence[str]) -> None:
    if len(keys) > MAX_KEYS:
        raise InputRejected("keys", f"{len(keys)} keys; at most {MAX_KEYS} per call")
    for key in keys:
        if not key or len(key) > MAX_KEY_LEN or not key.isprintable() or " " in key:
            raise InputRejected("keys", f"bad cache key {key[:64]!r}")


class Cache:
    """Reads from the DawsOS Redis. Open once; ``aclose()`` at shutdown."""

    def __init__(self, url: str, *, timeout: float = 2.0, target: str = TARGET) -> None:
        self._target = target
        self._timeout = timeout
        # Lazy: no connection is made until the first command.
        self._redis = aioredis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
        )

    async def _call(self, awaitable: Awaitable[T]) -> T:
        try:
            return await awaitable
        except (AuthenticationError, AuthorizationError) as exc:
            raise TargetRejected(self._target, f"refused: {type(exc).__name__}") from exc
        except (RedisTimeoutError, TimeoutError) as exc:
            raise TargetTimeout(self._target, f"no answer within {self._timeout:g}s") from exc
        except (RedisConnectionError, OSError) as exc:
            raise TargetUnavailable(self._target, f"cannot reach Redis: {exc}") from exc
        except ResponseError as exc:
            raise TargetRejected(self._target, str(exc)[:200]) from exc
        except RedisError as exc:
            raise TargetUnavailable(self._target, f"{type(exc).__name__}: {exc}") from exc

    async def ping(self) -> None:
        await self._call(self._redis.ping())

    async def get_many(self, keys: Iterable[str]) -> dict[str, bytes | None]:
        """Values by key (None when absent), in one MGET."""
        wanted = list(dict.fromkeys(keys))
        _check_keys(wanted)
        if not wanted:
            return {}
        raw = await self._call(self._redis.mget(wanted))
        # decode_responses is off, so values are bytes; str only satisfies the stubs.
        values = [v.encode() if isinstance(v, str) else v for v in raw]
        return dict(zip(wanted, values, strict=True))

    async def ttl(self, key: str) -> int | None:
        """Seconds left; ``NO_EXPIRY`` (-1) for a persistent key; None if the key is absent."""
        _check_keys([key])
        seconds: int = await self._call(self._redis.ttl(key))
        if seconds == -2:
            return None
        return NO_EXPIRY if seconds == -1 else seconds

    async def check_last_good(self, keys: Iterable[str]) -> CacheCheck:
        """Which of ``keys`` the cache still serves (present, expiring or not)."""
        values = await self.get_many(keys)
        hits = tuple(k for k, v in values.items() if v is not None)
        misses = tuple(k for k, v in values.items() if v is None)
        return CacheCheck(hits=hits, misses=misses)

    async def aclose(self) -> None:
        await self._redis.aclose()
