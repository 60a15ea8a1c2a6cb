"""The two storage backends behind one tiny interface.

The store (``store.py``) writes its SQL once with ``?`` placeholders; a backend
runs it inside a transaction. SQLite is the embedded default (WAL, one writer);
Postgres is for several replicas (``FOR UPDATE SKIP LOCKED`` where work is
claimed). Every driver error that means "the store cannot be reached" becomes
``StateUnavailable``, so callers decide with one except clause.
"""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import asyncpg

from remediator.errors import StateUnavailable
from remediator.state import migrations
from remediator.state.pgpool import ConnectionPool

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

    def read(self) -> Any:
        """``async with backend.read() as conn``: one or more SELECTs, no transaction."""
        ...

    def statement(self, *, durable: bool) -> Any:
        """``async with backend.statement(durable=...) as conn``: ONE statement,
        atomic by itself, committed on its own (durably if asked)."""
        ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


# --------------------------------------------------------------------------- SQLite


class _SqliteConn:
    """Statements run inline on the event loop: a SQLite statement on a local file
    takes microseconds, far less than a hand-off to a driver thread. Only what can
    wait on the disk (a durable COMMIT, a busy lock) leaves the loop."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    async def execute(self, sql: str, *args: Any) -> int:
        cur = self._db.execute(sql, args)
        n = cur.rowcount
        cur.close()
        return n

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        cur = self._db.execute(sql, args)
        rows = cur.fetchall()
        names = [d[0] for d in cur.description or ()]
        cur.close()
        return [dict(zip(names, r, strict=True)) for r in rows]


_BUSY_WAIT = 5.0  # seconds to wait for another process's write lock (e.g. the CLI)


class SqliteBackend:
    """The embedded store: one connection, one writer, WAL.

    Durability is group commit on the WAL file. Every transaction commits with
    ``synchronous=NORMAL``: its pages reach the WAL (the OS cache) and the
    connection is free again at once. A durable transaction then waits for an
    fsync of the WAL that started after its commit; the fsync runs in a thread,
    outside the connection lock, and every durable commit waiting at that time
    shares it. That is what ``synchronous=FULL`` does (fsync the WAL after the
    commit), minus holding the one connection during the fsync: with FULL, every
    other transaction (journal, claims, the engine's records) queued behind each
    disk flush, and at 200 runs/s the lock was busy with fsyncs most of the time.
    Checkpoints stay SQLite's own, which under NORMAL sync the WAL before and the
    database after copying.
    """

    dialect = "sqlite"
    skip_locked = ""

    def __init__(self, path: str) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        # One connection, one writer: transactions are serialised here rather than
        # by SQLITE_BUSY retries.
        self._lock = asyncio.Lock()
        # Commits so far, and how many of them an fsync is known to cover.
        self._committed = 0
        self._synced = 0
        self._sync_waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._sync_task: asyncio.Task[None] | None = None
        self._wal_fd: int | None = None
        # A failed fsync may have lost commits that are already visible, and the
        # kernel may not report it twice: from then on nothing is trusted (as
        # Postgres stops on a failed fsync); a restart re-reads what is on disk.
        self._broken: str | None = None

    async def open(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            # check_same_thread=False: close() may run after the loop's last use.
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            # NORMAL: a commit does not wait for the disk; durable ones wait for
            # the shared WAL fsync instead (see the class docstring).
            db.execute("PRAGMA synchronous=NORMAL")
            # Never block the event loop on another process's lock: BEGIN is retried
            # with asyncio sleeps instead (see _begin).
            db.execute("PRAGMA busy_timeout=0")
            db.execute("PRAGMA foreign_keys=ON")
        except (sqlite3.Error, OSError) as exc:
            raise StateUnavailable(f"sqlite {self.path}: {exc}") from exc
        self._db = db
        await _migrate(self)

    def _usable(self) -> sqlite3.Connection:
        if self._broken is not None:
            raise StateUnavailable(f"sqlite store unusable after a failed fsync: {self._broken}")
        if self._db is None:
            raise StateUnavailable("sqlite store is not open")
        return self._db

    async def _begin(self, db: sqlite3.Connection) -> None:
        deadline = time.monotonic() + _BUSY_WAIT
        while True:
            try:
                db.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
            await asyncio.sleep(0.005)

    @asynccontextmanager
    async def transaction(self, *, durable: bool = True) -> AsyncIterator[_SqliteConn]:
        async with self._lock:
            db = self._usable()
            try:
                await self._begin(db)
            except (sqlite3.Error, ValueError) as exc:
                raise StateUnavailable(f"sqlite: {exc}") from exc
            try:
                yield _SqliteConn(db)
            except BaseException:
                try:
                    db.execute("ROLLBACK")
                except (sqlite3.Error, ValueError):
                    pass  # the original error is the one worth raising
                raise
            try:
                db.execute("COMMIT")
            except (sqlite3.Error, ValueError) as exc:
                raise StateUnavailable(f"sqlite commit failed: {exc}") from exc
            self._committed += 1
            seq = self._committed
        if durable:
            await self._synced_past(seq)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[_SqliteConn]:
        # Autocommit: each SELECT is its own consistent snapshot.
        async with self._lock:
            yield _SqliteConn(self._usable())

    def statement(self, *, durable: bool) -> Any:
        # The explicit transaction costs nothing extra in-process, and it is where
        # a durable commit waits for its fsync.
        return self.transaction(durable=durable)

    async def _synced_past(self, seq: int) -> None:
        """Return once an fsync of the WAL that started after commit ``seq`` is done."""
        if seq <= self._synced or self.path == ":memory:":
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sync_waiters.append((seq, fut))
        if self._sync_task is None:
            self._sync_task = asyncio.create_task(self._sync_rounds(), name="sqlite-fsync")
        await fut

    async def _sync_rounds(self) -> None:
        try:
            while self._sync_waiters:
                # Commits run on the loop thread, so every commit counted here has
                # written its WAL frames: this fsync covers all of them.
                covers = self._committed
                try:
                    await asyncio.to_thread(self._fsync_wal)
                except OSError as exc:
                    self._broken = f"{type(exc).__name__}: {exc}"
                    waiters, self._sync_waiters = self._sync_waiters, []
                    err = StateUnavailable(f"sqlite fsync failed: {self._broken}")
                    for _, fut in waiters:
                        if not fut.done():
                            fut.set_exception(err)
                    return
                self._synced = max(self._synced, covers)
                waiting = []
                for seq, fut in self._sync_waiters:
                    if seq > covers:
                        waiting.append((seq, fut))  # committed during the fsync: next round
                    elif not fut.done():
                        fut.set_result(None)
                self._sync_waiters = waiting
        finally:
            self._sync_task = None

    def _fsync_wal(self) -> None:
        """fsync the WAL file (in a worker thread). Linux flushes a file's dirty
        pages whichever descriptor wrote them, so our own read-only descriptor
        makes SQLite's writes durable. The WAL keeps its inode while any
        connection is open; should it be replaced, the new file is opened."""
        wal = self.path + "-wal"
        try:
            inode = os.stat(wal).st_ino
        except FileNotFoundError:
            # No WAL: everything was checkpointed into the database file.
            fd = os.open(self.path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            return
        if self._wal_fd is not None and os.fstat(self._wal_fd).st_ino != inode:
            os.close(self._wal_fd)
            self._wal_fd = None
        if self._wal_fd is None:
            self._wal_fd = os.open(wal, os.O_RDONLY)
        os.fsync(self._wal_fd)

    async def ping(self) -> None:
        async with self.read() as c:
            await c.fetch("SELECT 1")

    async def close(self) -> None:
        if self._sync_task is not None:  # let the waiting durable commits finish
            with suppress(Exception):
                await asyncio.shield(self._sync_task)
        if self._db is not None:
            async with self._lock:
                self._db.close()
            self._db = None
        if self._wal_fd is not None:
            os.close(self._wal_fd)
            self._wal_fd = None


# ------------------------------------------------------------------------- Postgres

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
        await _migrate(self)

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
