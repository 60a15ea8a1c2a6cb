"""The two storage backends behind one tiny interface.

The store (``store.py``) writes its SQL once with ``?`` placeholders; a backend
runs it inside a transaction. SQLite is the embedded default (WAL, one writer);
Postgres is for several replicas (``FOR UPDATE SKIP LOCKED`` where work is
claimed). Every driver error that means "the store cannot be reached" becomes
``StateUnavailable``, so callers decide with one except clause.
"""

from __future__ import annotations

# Kept importable as ``backend.os``: tests patch ``os.fsync`` through this module,
# from before the SQLite backend had its own (``sqlite_backend.py``).
import os  # noqa: F401

from remediator.errors import StateUnavailable
from remediator.state.connection import Backend, Conn, Row
from remediator.state.postgres_backend import (
    PostgresBackend,
    holds_a_store,
    redact_dsn,
    store_down,
)
from remediator.state.sqlite_backend import SqliteBackend

__all__ = [
    "Backend",
    "Conn",
    "PostgresBackend",
    "Row",
    "SqliteBackend",
    "holds_a_store",
    "open_backend",
    "redact_dsn",
    "store_down",
]


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
