"""A small pool of asyncpg connections for the state store.

Why not ``asyncpg.Pool``: the store runs one short statement per acquire (a run
costs about a dozen), and asyncpg's acquire and release cost more CPU than the
statement itself: 191-217 us against 108-111 us per one-row statement on the 2-core
bench machine (bench medians; the extra is shielded tasks, timeouts and the reset
protocol on every release). The store needs none of that generality: its sessions
carry no state to reset (advisory locks are transaction-scoped, settings are
connection parameters or SET LOCAL, no cursors, no LISTEN).

The rules that keep it safe:
- A connection goes back to the idle list only when the code that used it finished
  normally, and it is open and outside a transaction. Anything else (an error, a
  cancellation mid-query, a transaction left open) terminates it: the next acquire
  opens a fresh one. A connection is never handed on in an unknown state.
- At most ``max_size`` connections exist; an acquire beyond that waits for a release,
  up to ``acquire_timeout`` (then ``TimeoutError``, which the backend maps to 503).
- Idle connections are reused newest first, and one the server closed meanwhile is
  dropped at acquire.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Mapping
from contextlib import suppress

import asyncpg


class ConnectionPool:
    def __init__(
        self,
        dsn: str,
        *,
        max_size: int,
        server_settings: Mapping[str, str],
        connect_timeout: float = 5,
        command_timeout: float = 10,
        acquire_timeout: float = 5,
    ) -> None:
        self._dsn = dsn
        self._max = max_size
        self._settings = dict(server_settings)
        self._connect_timeout = connect_timeout
        self._command_timeout = command_timeout
        self._acquire_timeout = acquire_timeout
        self._idle: deque[asyncpg.Connection] = deque()
        self._size = 0  # open or opening
        self._waiters: deque[asyncio.Future[asyncpg.Connection | None]] = deque()
        self._closed = False

    async def open(self, min_size: int) -> None:
        """Open ``min_size`` connections now: a wrong DSN fails at start, not later."""
        for _ in range(min_size):
            self._size += 1
            try:
                conn = await self._connect()
            except BaseException:
                self._size -= 1
                raise
            self._idle.append(conn)

    async def _connect(self) -> asyncpg.Connection:
        return await asyncpg.connect(
            self._dsn,
            timeout=self._connect_timeout,
            command_timeout=self._command_timeout,
            server_settings=self._settings,
        )

    async def acquire(self) -> asyncpg.Connection:
        if self._closed:
            raise asyncpg.InterfaceError("the pool is closed")
        while self._idle:
            conn = self._idle.pop()
            if not conn.is_closed():
                return conn
            self._size -= 1  # the server closed it while idle
        if self._size < self._max:
            self._size += 1
            try:
                return await self._connect()
            except BaseException:
                self._size -= 1
                self._wake_one(None)  # a waiter may open one instead
                raise
        fut: asyncio.Future[asyncpg.Connection | None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            async with asyncio.timeout(self._acquire_timeout):
                conn = await fut
        except BaseException:
            if not fut.done():
                fut.cancel()  # never hand a connection to a caller that left
            elif not fut.cancelled() and fut.exception() is None:
                given = fut.result()
                if given is not None:  # handed over just as we gave up: pass it on
                    self.release(given, reusable=True)
            raise
        if conn is None:  # a slot freed up: open a connection of our own
            return await self.acquire()
        return conn

    def release(self, conn: asyncpg.Connection, *, reusable: bool) -> None:
        """Give a connection back; ``reusable`` only if its user finished normally."""
        if self._closed or not reusable or conn.is_closed() or conn.is_in_transaction():
            if not conn.is_closed():
                conn.terminate()
            self._size -= 1
            self._wake_one(None)
            return
        if not self._wake_one(conn):
            self._idle.append(conn)

    def _wake_one(self, conn: asyncpg.Connection | None) -> bool:
        """Hand ``conn`` (or, with None, the right to open one) to the oldest waiter."""
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(conn)
                return True
        return False

    async def close(self) -> None:
        """Close the idle connections; those in use are terminated when released."""
        self._closed = True
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_exception(asyncpg.InterfaceError("the pool is closed"))
        idle, self._idle = list(self._idle), deque()
        for conn in idle:
            self._size -= 1
            with suppress(Exception):
                await conn.close(timeout=2)
            if not conn.is_closed():
                conn.terminate()
