"""What every part of the state store shares: the backend, how a statement runs,
and the JSON codec of the text columns.

Times are unix seconds; JSON columns hold text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from remediator.state.backend import Backend, Row
from remediator.state.records import Run


def dumps(value: Any) -> str:
    return orjson.dumps(value, default=str).decode()


def loads(value: str | None) -> Any:
    return None if value is None else orjson.loads(value)


def decode_run(row: Row) -> Run:
    """A runs row as read: its JSON columns decoded, typed."""
    return Run.from_row({**row, "alert": loads(row["alert"]), "params": loads(row["params"])})


class StoreBase:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self._skip = backend.skip_locked

    # Durability: a durable commit waits for the disk (SQLite: a shared fsync of the
    # WAL after it; Postgres synchronous_commit=on) and makes every earlier commit
    # durable too. So only the writes that must survive an OS crash on their own wait
    # for it: the journal (before 202), a mutating step's record (before and after it
    # acts), the page outbox, approvals decided by a human and the kill switch.
    # Everything else is bookkeeping that a crash recovers from (claims, leases,
    # runs before their first mutation) and skips the wait. A process crash
    # (kill -9) loses neither kind.

    async def _read(self, sql: str, *args: Any) -> list[Row]:
        async with self.backend.read() as c:
            rows: list[Row] = await c.fetch(sql, *args)
            return rows

    def _single(self, durable: bool) -> Any:
        # One statement is atomic by itself: on Postgres it runs in autocommit (one
        # round trip instead of three).
        return self.backend.statement(durable=durable)

    async def _fetch(self, sql: str, *args: Any, durable: bool = False) -> list[Row]:
        async with self._single(durable) as c:
            rows: list[Row] = await c.fetch(sql, *args)
            return rows

    async def _claim(
        self,
        table: str,
        *,
        take: str,
        take_args: Sequence[Any],
        due: str,
        due_args: Sequence[Any],
        order: str,
        limit: int,
        durable: bool = False,
    ) -> list[Row]:
        """The one shape every work queue here is claimed in (journal, runs, approvals,
        outbox): the first ``limit`` rows that are ``due``, in ``order``, each taken
        (``take``: owner, lease, state) by exactly one replica, in one statement.
        On Postgres the subquery skips rows another replica holds (SKIP LOCKED); SQLite
        has one writer. ``table``, ``take``, ``due`` and ``order`` are this package's
        own SQL, never input; values travel as binds."""
        return await self._fetch(
            f"UPDATE {table} SET {take} WHERE id IN (SELECT id FROM {table} WHERE {due}"
            f" ORDER BY {order} LIMIT ?{self._skip}) RETURNING *",
            *take_args,
            *due_args,
            limit,
            durable=durable,
        )

    async def _execute(self, sql: str, *args: Any, durable: bool = False) -> int:
        async with self._single(durable) as c:
            n: int = await c.execute(sql, *args)
            return n
