"""The DawsOS application database the runbooks act on (asyncpg pool).

Runbook steps read and write the target only through ``TargetDatabase``. It returns
plain dicts, decodes ``json``/``jsonb`` into Python objects (so pass dicts and lists,
not JSON strings, as jsonb parameters) and wraps every asyncpg error into the project's
error tree:

    connection refused / closed / server shutting down   -> TargetUnavailable
    statement_timeout, lock_timeout wait, client timeout  -> TargetTimeout
    serialization failure, deadlock, lock not available   -> TargetConflict
    anything else the server refuses                      -> QueryRejected (TargetRejected)

Every connection runs with ``statement_timeout`` and ``application_name=remediator``
so a stuck step can never hold the target hostage and DBAs can see (and RB-05 can
protect) our sessions.

This module must never build SQL from values: it offers no identifier or string
formatting, only ``$n`` parameters. It must never put the DSN (it holds a password)
into an error message.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from typing import Any, Literal

import asyncpg

from remediator.errors import QueryRejected as QueryRejected  # raised here; defined there
from remediator.errors import (
    TargetConflict,
    TargetTimeout,
    TargetUnavailable,
)

APPLICATION_NAME = "remediator"
TARGET = "database"

Isolation = Literal["read_committed", "repeatable_read", "serializable"]

# SQLSTATE classes/codes, so the mapping does not depend on asyncpg's class names.
_CONFLICT_STATES = frozenset({"40001", "40P01", "55P03"})  # serialization, deadlock, lock busy
_UNAVAILABLE_STATES = frozenset({"57P01", "57P02", "57P03", "53300", "25P03"})
# How asyncpg words a connection that died under us. "released back to the pool": the
# pool detaches a connection whose socket closed, even while we still hold it (a
# Transaction used after its block is refused earlier, so it cannot be that).
_LOST = re.compile(r"connection is closed|released back to the pool")
_TABLE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
# The catalog of a running application changes rarely (a migration); a minute of
# caching means one catalog read per run, not one per step.
COLUMNS_TTL_S = 60.0
# Resolved as the runbooks' own statements resolve the name: through search_path.
_COLUMNS = """
SELECT attname FROM pg_attribute
WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped
"""
_CLIENT_SLACK_S = 2.0  # client-side timeout beyond the server's, for a silent network
_CLOSE_GRACE_S = 5.0


def _message(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) <= 300 else text[:300] + "..."


def translate(exc: BaseException, target: str = TARGET) -> Exception:
    """The project error for an asyncpg/OS error (for ``raise translate(e) from e``)."""
    if isinstance(exc, asyncpg.PostgresError):
        state = getattr(exc, "sqlstate", None) or ""
        detail = f"{_message(exc)} (SQLSTATE {state})"
        if state == "57014":  # query_canceled: our statement_timeout fired
            return TargetTimeout(target, f"statement timed out: {detail}")
        if state in _CONFLICT_STATES or state.startswith("40"):
            return TargetConflict(target, detail)
        if state in _UNAVAILABLE_STATES or state.startswith("08"):
            return TargetUnavailable(target, detail)
        return QueryRejected(target, detail, sqlstate=state or None)
    if isinstance(exc, TimeoutError):  # asyncio.TimeoutError is TimeoutError on 3.11
        return TargetTimeout(target, "no answer in time")
    if isinstance(exc, OSError):
        return TargetUnavailable(target, f"cannot connect: {_message(exc)}")
    if isinstance(exc, asyncpg.InterfaceError) and _LOST.search(str(exc)):
        return TargetUnavailable(target, f"connection lost: {_message(exc)}")
    if isinstance(exc, asyncpg.exceptions.InternalClientError):
        # Seen when the server kills the session between two statements: the unsolicited
        # FATAL leaves the protocol in a state the next call trips over.
        return TargetUnavailable(target, f"connection lost: {_message(exc)}")
    if isinstance(exc, asyncpg.InterfaceError):  # misuse, e.g. a bad parameter type
        return QueryRejected(target, _message(exc), sqlstate=None)
    return TargetUnavailable(target, _message(exc))


_WRAPPED = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
    OSError,
    TimeoutError,
)


@contextmanager
def _wrapped(target: str) -> Iterator[None]:
    try:
        yield
    except _WRAPPED as exc:
        raise translate(exc, target) from exc


async def _init_connection(conn: asyncpg.Connection) -> None:
    for typename in ("json", "jsonb"):
        await conn.set_type_codec(
            typename, encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
        )


async def _nothing_to_reset(conn: asyncpg.Connection) -> None:
    """The pool's reset hook: no reset query on release.

    asyncpg's default sends "SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *;
    RESET ALL" each time a connection goes back to the pool: a round trip per step
    on the path to mitigation. The runbooks' statements leave nothing in a session
    (no session advisory locks, SET, LISTEN or cursors outside a transaction), and
    asyncpg still rolls back a transaction left open before it calls this hook.
    """


class Transaction:
    """Statements inside one ``TargetDatabase.transaction()``; valid only in that block."""

    def __init__(self, conn: asyncpg.Connection, target: str) -> None:
        self._conn = conn
        self._target = target
        self._open = True

    def _live(self) -> asyncpg.Connection:
        if not self._open:
            raise RuntimeError("transaction block has ended; this Transaction is unusable")
        return self._conn

    def _end(self) -> None:
        self._open = False

    async def fetch(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        conn = self._live()
        with _wrapped(self._target):
            rows = await conn.fetch(sql, *args)
        return [dict(r) for r in rows]

    async def fetchrow(self, sql: str, *args: Any) -> dict[str, Any] | None:
        conn = self._live()
        with _wrapped(self._target):
            row = await conn.fetchrow(sql, *args)
        return None if row is None else dict(row)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        conn = self._live()
        with _wrapped(self._target):
            return await conn.fetchval(sql, *args)

    async def execute(self, sql: str, *args: Any) -> str:
        """Run a statement; returns the command tag, e.g. ``'UPDATE 3'``."""
        conn = self._live()
        with _wrapped(self._target):
            return str(await conn.execute(sql, *args))


class TargetDatabase:
    """A small pool of connections to the target database. Open once, share, close."""

    def __init__(
        self, pool: asyncpg.Pool, *, target: str = TARGET, acquire_timeout: float = 5.0
    ) -> None:
        self._pool = pool
        self._target = target
        self._acquire_timeout = acquire_timeout
        self._columns: dict[str, tuple[float, frozenset[str]]] = {}

    @classmethod
    async def connect(
        cls,
        dsn: str,
        *,
        statement_timeout_ms: int = 5000,
        min_size: int = 1,
        max_size: int = 4,
        connect_timeout: float = 5.0,
        target: str = TARGET,
    ) -> TargetDatabase:
        """Open the pool; ``min_size`` connections are made now, so a down server fails here."""
        if statement_timeout_ms <= 0:
            raise ValueError("statement_timeout_ms must be positive (0 would disable it)")
        with _wrapped(target):
            pool = await asyncpg.create_pool(
                dsn,
                min_size=min_size,
                max_size=max_size,
                timeout=connect_timeout,
                # The client gives up a little after the server should have: covers a
                # server that stops answering altogether.
                command_timeout=statement_timeout_ms / 1000 + _CLIENT_SLACK_S,
                server_settings={
                    "application_name": APPLICATION_NAME,
                    "statement_timeout": str(statement_timeout_ms),
                },
                init=_init_connection,
                reset=_nothing_to_reset,
            )
        return cls(pool, target=target, acquire_timeout=connect_timeout)

    @property
    def target(self) -> str:
        return self._target

    async def fetch(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        async with self._connection() as conn:
            return await Transaction(conn, self._target).fetch(sql, *args)

    async def fetchrow(self, sql: str, *args: Any) -> dict[str, Any] | None:
        async with self._connection() as conn:
            return await Transaction(conn, self._target).fetchrow(sql, *args)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        async with self._connection() as conn:
            return await Transaction(conn, self._target).fetchval(sql, *args)

    async def execute(self, sql: str, *args: Any) -> str:
        """Run one statement (autocommit); returns the command tag, e.g. ``'UPDATE 3'``.

        Without ``args`` the text may hold several statements (simple protocol).
        """
        async with self._connection() as conn:
            return await Transaction(conn, self._target).execute(sql, *args)

    async def columns(self, table: str) -> frozenset[str]:
        """The columns ``table`` has (empty when there is no such table), from the catalog.

        Runbooks use a column the runbook's own SQL does not name only when this says it
        exists. Cached for ``COLUMNS_TTL_S`` seconds.
        """
        if not _TABLE_NAME.fullmatch(table):
            raise ValueError(f"not a plain table name: {table[:80]!r}")
        cached = self._columns.get(table)
        now = time.monotonic()
        if cached is not None and now - cached[0] < COLUMNS_TTL_S:
            return cached[1]
        rows = await self.fetch(_COLUMNS, table)
        found = frozenset(str(r["attname"]) for r in rows)
        self._columns[table] = (now, found)
        return found

    @asynccontextmanager
    async def transaction(
        self, *, isolation: Isolation = "read_committed", readonly: bool = False
    ) -> AsyncIterator[Transaction]:
        """One transaction on one connection: committed if the block ends normally,
        rolled back if it raises (or is cancelled).

        The usual mutating step reads the rows it will change with ``SELECT ... FOR
        UPDATE`` (its undo record), then changes them, in the same block.
        """
        async with self._connection() as conn:
            tx = conn.transaction(isolation=isolation, readonly=readonly)
            with _wrapped(self._target):
                await tx.start()
            block = Transaction(conn, self._target)
            try:
                yield block
            except BaseException:
                # Keep the original error; a failed rollback (server gone) adds nothing
                # and the pool discards a broken connection on release anyway.
                with suppress(*_WRAPPED):
                    await tx.rollback()
                raise
            finally:
                block._end()
            with _wrapped(self._target):
                await tx.commit()

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[asyncpg.Connection]:
        with _wrapped(self._target):
            # Bounded: an exhausted pool is a timeout, not a hang.
            conn = await self._pool.acquire(timeout=self._acquire_timeout)
        try:
            yield conn
        finally:
            await self._release(conn)

    async def _release(self, conn: asyncpg.Connection) -> None:
        # A connection that cannot be reset is closed by asyncpg; nothing to report.
        with suppress(*_WRAPPED):
            await self._pool.release(conn)

    async def aclose(self) -> None:
        """Close gracefully; connections still busy after a few seconds are cut."""
        try:
            await asyncio.wait_for(self._pool.close(), _CLOSE_GRACE_S)
        except TimeoutError:
            self._pool.terminate()
