"""The Postgres backend: for several replicas (``FOR UPDATE SKIP LOCKED`` where
work is claimed). Every driver error that means "the store cannot be reached"
becomes ``StateUnavailable``."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import asyncpg

from remediator.errors import StateUnavailable
from remediator.state.connection import Conn, Row
from remediator.state.migrate import migrate
from remediator.state.pgpool import ConnectionPool

_QMARK = re.compile(r"\?")


# The journal's 4 concurrent flushers (remediator/daemon), and the engine's durable records.
_DURABLE_POOL_SIZE = 6

_PG_DOWN = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    # A session the server ended while it sat idle in the pool (57P01 arrives between
    # statements) fails its next statement with this protocol-state error: the
    # session is gone, not the statement wrong.
    asyncpg.InternalClientError,
)
# SQLSTATE classes and codes that mean "the store is not usable now", whatever the
# exception class asyncpg maps them to: 08 connection exceptions, 53 insufficient
# resources (53300 too many connections, 53100 disk full, 53200 out of memory),
# 57P01-57P03 admin/crash shutdown and cannot connect now.
_DOWN_CLASSES = ("08", "53")
_DOWN_CODES = frozenset({"57P01", "57P02", "57P03"})


def store_down(exc: BaseException) -> bool:
    """Whether ``exc`` says the Postgres state store is unreachable or unusable now
    (so: 503 and retry later), rather than a bug in a statement."""
    if isinstance(exc, _PG_DOWN):
        return True
    code = getattr(exc, "sqlstate", None)
    if isinstance(exc, asyncpg.PostgresError) and isinstance(code, str):
        return code[:2] in _DOWN_CLASSES or code in _DOWN_CODES
    return False


def _unavailable(exc: BaseException, where: str = "postgres") -> StateUnavailable:
    code = getattr(exc, "sqlstate", None)
    suffix = f" (SQLSTATE {code})" if isinstance(code, str) else ""
    return StateUnavailable(f"{where}: {type(exc).__name__}{suffix}")


def _numbered(sql: str) -> str:
    counter = iter(range(1, 10_000))
    return _QMARK.sub(lambda _: f"${next(counter)}", sql)


class _PgConn:
    def __init__(self, conn: asyncpg.Connection, cache: dict[str, str]) -> None:
        self._conn = conn
        self._cache = cache

    def _sql(self, sql: str) -> str:
        out = self._cache.get(sql)
        if out is None:
            out = self._cache[sql] = _numbered(sql)
        return out

    async def execute(self, sql: str, *args: Any) -> int:
        try:
            status: str = await self._conn.execute(self._sql(sql), *args)
        except Exception as exc:
            if store_down(exc):
                raise _unavailable(exc) from exc
            raise
        tail = status.rsplit(" ", 1)[-1]
        return int(tail) if tail.isdigit() else 0

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        try:
            rows = await self._conn.fetch(self._sql(sql), *args)
        except Exception as exc:
            if store_down(exc):
                raise _unavailable(exc) from exc
            raise
        return [dict(r) for r in rows]


class PostgresBackend:
    dialect = "postgres"
    skip_locked = " FOR UPDATE SKIP LOCKED"

    def __init__(self, dsn: str, *, min_size: int = 1, max_size: int = 10) -> None:
        self.dsn = dsn
        self._min, self._max = min_size, max_size
        self._pool: ConnectionPool | None = None
        # The durable pool: its sessions keep synchronous_commit on, so a lone
        # statement in autocommit is durable in one round trip (see statement()).
        self._durable_pool: ConnectionPool | None = None
        self._sql_cache: dict[str, str] = {}

    async def open(self) -> None:
        # Bookkeeping commits do not wait for the WAL flush; a durable transaction
        # turns it back on for itself (see transaction()).
        self._pool = ConnectionPool(
            self.dsn, max_size=self._max, server_settings={"synchronous_commit": "off"}
        )
        self._durable_pool = ConnectionPool(
            self.dsn, max_size=_DURABLE_POOL_SIZE, server_settings={"synchronous_commit": "on"}
        )
        try:
            await self._pool.open(self._min)
            await self._durable_pool.open(1)
        except (*_PG_DOWN, asyncpg.PostgresError) as exc:
            await self.close()
            raise StateUnavailable(
                f"postgres {redact_dsn(self.dsn)}: {type(exc).__name__}"
            ) from exc
        await migrate(self, lock=self.advisory_lock)

    @asynccontextmanager
    async def transaction(self, *, durable: bool = True) -> AsyncIterator[_PgConn]:
        async with self._connection() as conn:
            # One round trip: BEGIN, and for durable work, wait for the WAL flush.
            begin = "BEGIN; SET LOCAL synchronous_commit TO ON" if durable else "BEGIN"
            try:
                await conn.execute(begin)
            except Exception as exc:
                if store_down(exc):
                    raise _unavailable(exc) from exc
                raise
            try:
                yield _PgConn(conn, self._sql_cache)
            except BaseException:
                try:
                    await conn.execute("ROLLBACK")
                except (*_PG_DOWN, asyncpg.PostgresError):
                    pass  # connection is gone; the server rolls back for us
                raise
            try:
                await conn.execute("COMMIT")
            except Exception as exc:
                if store_down(exc):
                    raise _unavailable(exc, "postgres commit") from exc
                raise

    def read(self) -> Any:
        # Autocommit on the bookkeeping pool: a read is a statement that commits nothing.
        return self.statement(durable=False)

    @asynccontextmanager
    async def statement(self, *, durable: bool) -> AsyncIterator[_PgConn]:
        # Autocommit, one round trip: a bookkeeping statement on the main pool
        # (synchronous_commit off); a durable one on the durable pool, whose
        # sessions wait for the WAL flush (and so make every earlier commit
        # durable too). BEGIN and COMMIT as messages of their own cost two more
        # round trips each time. The journal's INSERT, on every webhook's path,
        # is such a durable statement.
        async with self._connection(durable=durable) as conn:
            yield _PgConn(conn, self._sql_cache)

    @asynccontextmanager
    async def _connection(self, *, durable: bool = False) -> AsyncIterator[asyncpg.Connection]:
        pool = self._durable_pool if durable else self._pool
        if pool is None:
            raise StateUnavailable("postgres store is not open")
        try:
            conn = await pool.acquire()
        except Exception as exc:
            # Opening a session can fail with any SQLSTATE of the store-down classes
            # (53300 too many connections, 57P03 starting up, 08xxx) or an OS error.
            if store_down(exc):
                raise _unavailable(exc) from exc
            raise
        finished = False
        try:
            yield conn
            finished = True
        finally:
            # After an error or a cancellation the session's state is unknown: the
            # pool drops the connection rather than hand it on.
            pool.release(conn, reusable=finished)

    async def advisory_lock(self, conn: Conn) -> None:
        await conn.execute("SELECT pg_advisory_xact_lock(7240512)")

    async def ping(self) -> None:
        async with self.read() as c:
            await c.fetch("SELECT 1")

    async def close(self) -> None:
        for pool in (self._pool, self._durable_pool):
            if pool is not None:
                await pool.close()
        self._pool = self._durable_pool = None


def redact_dsn(dsn: str) -> str:
    """postgresql://user:secret@host/db -> postgresql://user:***@host/db"""
    parts = urlsplit(dsn)
    if parts.password:
        return dsn.replace(f":{parts.password}@", ":***@", 1)
    return dsn


async def holds_a_store(dsn: str, connect_timeout: float = 10.0) -> bool:
    """Whether the database (and ``search_path``) at ``dsn`` holds a state store, that
    is, a daemon has migrated it. Reads only: an operator command must not create an
    empty store there and report on it."""
    try:
        conn = await asyncpg.connect(dsn, timeout=connect_timeout)
    except (*_PG_DOWN, asyncpg.PostgresError) as exc:
        raise StateUnavailable(f"postgres {redact_dsn(dsn)}: {type(exc).__name__}") from exc
    try:
        found = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    finally:
        await conn.close()
    return bool(found)
