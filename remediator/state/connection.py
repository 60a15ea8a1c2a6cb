"""The tiny interface both storage backends implement: a connection runs ``?``
statements; a backend hands out connections in a transaction, a read or a single
statement."""

from __future__ import annotations

from typing import Any, Protocol

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
