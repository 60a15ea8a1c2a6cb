"""The SQLite backend: the embedded default (WAL, one writer, a shared fsync)."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

from remediator.errors import StateUnavailable
from remediator.state.connection import Row
from remediator.state.migrate import migrate


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
        await migrate(self)

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
