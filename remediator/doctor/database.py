"""The database check: connect, authenticate, and read the catalog once.

``DbFacts`` holds what the catalog says about the tables the runbooks touch (columns
and this user's privileges on them), indexes, extensions and roles, so every step
can be judged without another query. Names are resolved with ``to_regclass``, along
the connection's ``search_path``, exactly as the runbooks' unqualified SQL is. Table
and index names come from ``catalog.py`` and travel as parameters, never as SQL text.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from remediator.clients.database import QueryRejected, TargetDatabase
from remediator.errors import TargetError, TargetRejected

_COLUMNS = """
SELECT t.name AS table_name, a.attname AS column_name,
       has_column_privilege(t.oid, a.attnum, 'SELECT') AS can_select,
       has_column_privilege(t.oid, a.attnum, 'UPDATE') AS can_update,
       has_column_privilege(t.oid, a.attnum, 'INSERT') AS can_insert,
       has_table_privilege(t.oid, 'DELETE') AS can_delete
FROM (SELECT name, to_regclass(name) AS oid FROM unnest($1::text[]) AS name) AS t
JOIN pg_attribute AS a ON a.attrelid = t.oid AND a.attnum > 0 AND NOT a.attisdropped
"""
_INDEXES = """
SELECT name FROM unnest($1::text[]) AS name WHERE to_regclass(name) IS NOT NULL
"""
_SERVER = """
SELECT current_user AS who, current_database() AS db,
       current_setting('server_version') AS version,
       (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS superuser,
       ARRAY(SELECT extname::text FROM pg_extension) AS extensions,
       ARRAY(SELECT r.rolname::text FROM pg_roles AS r
             WHERE pg_has_role(current_user, r.oid, 'MEMBER')) AS roles
"""
_AUTH_STATES = ("28000", "28P01")


@dataclass(frozen=True)
class ColumnFacts:
    select: bool
    update: bool
    insert: bool
    delete: bool


@dataclass(frozen=True)
class DbFacts:
    """What the target database holds; ``error`` set when it could not be read."""

    error: str | None = None
    who: str = ""
    database: str = ""
    version: str = ""
    superuser: bool = False
    columns: dict[tuple[str, str], ColumnFacts] = field(default_factory=dict)
    tables: frozenset[str] = frozenset()
    indexes: frozenset[str] = frozenset()
    extensions: frozenset[str] = frozenset()
    roles: frozenset[str] = frozenset()
    # Each statement EXPLAINed (YAML runbooks) -> why it fails, or "" when it plans.
    statements: dict[str, str] = field(default_factory=dict)

    def has_role(self, role: str) -> bool:
        return self.superuser or role in self.roles


def describe_error(exc: TargetError) -> str:
    """Refused credentials read differently from a server that is not there."""
    if isinstance(exc, QueryRejected) and (exc.sqlstate or "") in _AUTH_STATES:
        return f"refused credentials: {exc}"
    if isinstance(exc, TargetRejected):
        return f"refused: {exc}"
    return f"unreachable: {exc}"


async def _explain(db: TargetDatabase, statements: Iterable[tuple[str, int]]) -> dict[str, str]:
    """Plan each statement with NULL binds in a read-only transaction: a missing table,
    column or privilege shows, and nothing runs (EXPLAIN without ANALYZE executes
    nothing, and the transaction could not write anyway)."""
    out: dict[str, str] = {}
    for sql, binds in statements:
        try:
            async with db.transaction(readonly=True) as tx:
                await tx.fetch("EXPLAIN (COSTS OFF) " + sql, *([None] * binds))
            out[sql] = ""
        except QueryRejected as exc:
            out[sql] = str(exc).removeprefix("database: ")
    return out


async def read_facts(
    dsn: str,
    tables: Iterable[str],
    indexes: Iterable[str],
    *,
    seconds: float,
    statements: Iterable[tuple[str, int]] = (),
) -> DbFacts:
    try:
        db = await TargetDatabase.connect(
            dsn,
            min_size=1,
            max_size=1,
            connect_timeout=seconds,
            statement_timeout_ms=int(seconds * 1000),
        )
    except TargetError as exc:
        return DbFacts(error=describe_error(exc))
    try:
        server = await db.fetchrow(_SERVER)
        rows = await db.fetch(_COLUMNS, sorted(set(tables)))
        found = await db.fetch(_INDEXES, sorted(set(indexes)))
        explained = await _explain(db, statements)
    except TargetError as exc:
        return DbFacts(error=describe_error(exc))
    finally:
        await db.aclose()
    assert server is not None
    columns = {
        (r["table_name"], r["column_name"]): ColumnFacts(
            r["can_select"], r["can_update"], r["can_insert"], r["can_delete"]
        )
        for r in rows
    }
    return DbFacts(
        who=str(server["who"]),
        database=str(server["db"]),
        version=str(server["version"]).split()[0],  # "15.20 (Debian ...)" -> "15.20"
        superuser=bool(server["superuser"]),
        columns=columns,
        tables=frozenset(t for t, _ in columns),
        indexes=frozenset(r["name"] for r in found),
        extensions=frozenset(server["extensions"] or ()),
        roles=frozenset(server["roles"] or ()),
        statements=explained,
    )
