"""The two storage backends behind one tiny interface.

The store (``store.py``) writes its SQL once with ``?`` placeholders; a backend
runs it inside a transaction. SQLite is the embedded default (WAL, one writer);
Postgres is for several replicas (``FOR UPDATE SKIP LOCKED`` where work is
claimed). Every driver error that means "the store cannot be reached" becomes
``StateUnavailable``, so callers decide with one except clause.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiosqlite
import asyncpg

from remediator.errors import StateUnavailable
from remediator.state import migrations

Row = dict[str, Any]


class Conn(Protocol):
    async def execute(self, sql: str, *args: Any) -> int:
        """Run a statement; returns the number of rows it changed."""
        ...

    async def fetch(self, sql: str, *args: Any) -> list[Row]: ...


class Backend(Protocol):
    dialect: str
    skip_locked: str  # " FOR UPDATE SKIP LOCKED" on Postgres, "" on SQLite

    def transaction(self, *, durable: bool = True) -> Any:
        """``async with backend.transaction() as conn``: all or nothing.

        ``durable=False`` is for bookkeeping whose loss on an OS crash is harmless
        (claims, leases): the commit skips the wait for the disk.
        """
        ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


# --------------------------------------------------------------------------- SQLite


class _SqliteConn:
    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db

    async def execute(self, sql: str, *args: Any) -> int:
        cur = await self._db.execute(sql, args)
        n = cur.rowcount
        await cur.close()
        return n

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        async with self._db.execute(sql, args) as cur:
            rows = await cur.fetchall()
            names = [d[0] for d in cur.description or ()]
        return [dict(zip(names, r, strict=True)) for r in rows]


class SqliteBackend:
    dialect = "sqlite"
    skip_locked = ""

    def __init__(self, path: str) -> None:
        self.path = path
        self._db: aiosqlite.Connection | None = None
        # One connection, one writer: transactions are serialised here rather than
        # by SQLITE_BUSY retries.
        self._lock = asyncio.Lock()
        self._synchronous = "FULL"

    async def open(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = await aiosqlite.connect(self.path, isolation_level=None)
            await self._db.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit is on disk before we answer 202 (group commit keeps it cheap).
            await self._db.execute("PRAGMA synchronous=FULL")
            await self._db.execute("PRAGMA busy_timeout=5000")
            await self._db.execute("PRAGMA foreign_keys=ON")
        except (sqlite3.Error, OSError) as exc:
            raise StateUnavailable(f"sqlite {self.path}: {exc}") from exc
        await _migrate(self)

    @asynccontextmanager
    async def transaction(self, *, durable: bool = True) -> AsyncIterator[_SqliteConn]:
        if self._db is None:
            raise StateUnavailable("sqlite store is not open")
        async with self._lock:
            db = self._db
            try:
                # FULL syncs the WAL at commit (and everything committed before it);
                # NORMAL survives a process crash, which is all claims need.
                want = "FULL" if durable else "NORMAL"
                if want != self._synchronous:
                    await db.execute(f"PRAGMA synchronous={want}")
                    self._synchronous = want
                await db.execute("BEGIN IMMEDIATE")
            except (sqlite3.Error, ValueError) as exc:
                raise StateUnavailable(f"sqlite: {exc}") from exc
            try:
                yield _SqliteConn(db)
            except BaseException:
                try:
                    await db.execute("ROLLBACK")
                except (sqlite3.Error, ValueError):
                    pass  # the original error is the one worth raising
                raise
            try:
                await db.execute("COMMIT")
            except (sqlite3.Error, ValueError) as exc:
                raise StateUnavailable(f"sqlite commit failed: {exc}") from exc

    async def ping(self) -> None:
        async with self.transaction() as c:
            await c.fetch("SELECT 1")

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None


# ------------------------------------------------------------------------- Postgres

_QMARK = re.compile(r"\?")
_PG_DOWN = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
)


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
        except _PG_DOWN as exc:
            raise StateUnavailable(f"postgres: {type(exc).__name__}") from exc
        tail = status.rsplit(" ", 1)[-1]
        return int(tail) if tail.isdigit() else 0

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        try:
            rows = await self._conn.fetch(self._sql(sql), *args)
        except _PG_DOWN as exc:
            raise StateUnavailable(f"postgres: {type(exc).__name__}") from exc
        return [dict(r) for r in rows]


class PostgresBackend:
    dialect = "postgres"
    skip_locked = " FOR UPDATE SKIP LOCKED"

    def __init__(self, dsn: str, *, min_size: int = 1, max_size: int = 10) -> None:
        self.dsn = dsn
        self._min, self._max = min_size, max_size
        self._pool: asyncpg.Pool | None = None
        self._sql_cache: dict[str, str] = {}

    async def open(self) -> None:
        try:
            self._pool = await asyncpg.create_pool(
                self.dsn,
                min_size=self._min,
                max_size=self._max,
                timeout=5,
                command_timeout=10,
            )
        except (*_PG_DOWN, asyncpg.PostgresError) as exc:
            raise StateUnavailable(
                f"postgres {redact_dsn(self.dsn)}: {type(exc).__name__}"
            ) from exc
        await _migrate(self)

    @asynccontextmanager
    async def transaction(self, *, durable: bool = True) -> AsyncIterator[_PgConn]:
        if self._pool is None:
            raise StateUnavailable("postgres store is not open")
        try:
            conn = await self._pool.acquire(timeout=5)
        except _PG_DOWN as exc:
            raise StateUnavailable(f"postgres: {type(exc).__name__}") from exc
        try:
            try:
                tx = conn.transaction()
                await tx.start()
                if not durable:
                    await conn.execute("SET LOCAL synchronous_commit = off")
            except _PG_DOWN as exc:
                raise StateUnavailable(f"postgres: {type(exc).__name__}") from exc
            try:
                yield _PgConn(conn, self._sql_cache)
            except BaseException:
                try:
                    await tx.rollback()
                except (*_PG_DOWN, asyncpg.PostgresError):
                    pass  # connection is gone; the server rolls back for us
                raise
            try:
                await tx.commit()
            except _PG_DOWN as exc:
                raise StateUnavailable(f"postgres commit: {type(exc).__name__}") from exc
        finally:
            try:
                await self._pool.release(conn)
            except _PG_DOWN:
                pass  # a dead connection is discarded by the pool

    async def advisory_lock(self, conn: Conn) -> None:
        await conn.execute("SELECT pg_advisory_xact_lock(7240512)")

    async def ping(self) -> None:
        async with self.transaction() as c:
            await c.fetch("SELECT 1")

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None


def redact_dsn(dsn: str) -> str:
    """postgresql://user:secret@host/db -> postgresql://user:***@host/db"""
    parts = urlsplit(dsn)
    if parts.password:
        return dsn.replace(f":{parts.password}@", ":***@", 1)
    return dsn


async def _migrate(backend: SqliteBackend | PostgresBackend) -> None:
    async with backend.transaction() as conn:
        if isinstance(backend, PostgresBackend):
            await backend.advisory_lock(conn)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for version, name, sql in migrations.MIGRATIONS:
            if version in done:
                continue
            for statement in migrations.render(sql, backend.dialect):
                await conn.execute(statement)
            await conn.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) "
                "VALUES (?, ?, CAST(CURRENT_TIMESTAMP AS TEXT))",
                version,
                name,
            )


async def open_backend(url: str) -> SqliteBackend | PostgresBackend:
    backend: SqliteBackend | PostgresBackend
    if url.startswith("sqlite:///"):
        backend = SqliteBackend(url[len("sqlite:///") :] or ":memory:")
    elif url.startswith(("postgresql://", "postgres://")):
        backend = PostgresBackend(url)
    else:
        raise StateUnavailable("state URL must be sqlite:///PATH or postgresql://...")
    await backend.open()
    return backend
