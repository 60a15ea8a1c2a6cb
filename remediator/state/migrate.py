"""Bring a backend's schema up to date (``migrations.MIGRATIONS``) when it opens."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from remediator.state import migrations
from remediator.state.connection import Backend, Conn


async def migrate(backend: Backend, lock: Callable[[Conn], Awaitable[None]] | None = None) -> None:
    """Apply the migrations not yet applied, in one transaction; ``lock`` (Postgres)
    first takes the lock that keeps two replicas from migrating at once."""
    async with backend.transaction() as conn:
        if lock is not None:
            await lock(conn)
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
