"""RB-01's statements on ``pricing_pack``, on whatever columns the catalog has.

The runbook's own SQL names ``id, date, is_fresh, created_at``: that is all a DawsOS
database is known to hold. Two more columns are used when the catalog has them:

    status   the build's state; a pack is built when it is 'ready'
    hash     set by the build's last step ("hash computed"); built when not NULL

With neither, a pack exists when its row exists: the last good pack is the newest one
before D, and after our build Job succeeded, D's row is the new pack. ``ready``
answers None ("cannot tell") rather than guessing that a row is a finished build.

The statements are composed from the fixed fragments below only (column names of this
module, never values): every value is still a ``$n`` parameter.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from remediator.runbook_api.client_protocols import SqlDatabase

TABLE = "pricing_pack"
REQUIRED = ("id", "date", "is_fresh", "created_at")
OPTIONAL = ("status", "hash")


@dataclass(frozen=True)
class PackColumns:
    """Which optional columns this database's ``pricing_pack`` has."""

    status: bool = True
    hash: bool = True

    @property
    def select(self) -> str:
        extra = [c for c, present in (("status", self.status), ("hash", self.hash)) if present]
        return ", ".join([*REQUIRED, *extra])

    @property
    def knows_built(self) -> bool:
        return self.status or self.hash

    @property
    def built_filter(self) -> str:
        """The SQL condition "this pack is built" ("TRUE" when the catalog cannot say)."""
        parts = (["status = 'ready'"] if self.status else []) + (
            ["hash IS NOT NULL"] if self.hash else []
        )
        return " AND ".join(parts) or "TRUE"


FULL = PackColumns()
# A plan shows the statements on FULL; a run reads the columns the catalog has, so
# the rendered call says so rather than show a column the run may not read.
FULL_NOTE = "-- status, hash: only where the catalog has those columns"


async def columns(db: SqlDatabase) -> PackColumns:
    found = await db.columns(TABLE)
    return PackColumns(status="status" in found, hash="hash" in found)


def ready(row: Mapping[str, Any] | None, cols: PackColumns) -> bool | None:
    """Whether the pack is built: True/False, or None when the catalog cannot say."""
    if row is None:
        return False
    if not cols.knows_built:
        return None
    return (not cols.status or row["status"] == "ready") and (
        not cols.hash or row["hash"] is not None
    )


def state(row: Mapping[str, Any] | None) -> str:
    """How a pack is described in a page: its status, or whether its row exists."""
    if row is None:
        return "missing"
    return str(row.get("status") or "present")


def listed(row: Mapping[str, Any]) -> dict[str, Any]:
    """A pack row as step data (JSON-safe)."""
    created = row.get("created_at")
    return {
        "id": row["id"],
        "date": row["date"].isoformat(),
        "is_fresh": row["is_fresh"],
        "status": row.get("status"),
        "created_at": created.isoformat() if created is not None else None,
    }


def recent(cols: PackColumns) -> str:
    return f"SELECT {cols.select}\nFROM pricing_pack\nORDER BY date DESC\nLIMIT 5"


def of_day(cols: PackColumns) -> str:
    return f"SELECT {cols.select} FROM pricing_pack WHERE date = $1"


def last_good(cols: PackColumns) -> str:
    return (
        "SELECT id, date, is_fresh FROM pricing_pack\n"
        f"WHERE {cols.built_filter} AND date < $1\n"
        "ORDER BY date DESC LIMIT 1\nFOR UPDATE"
    )


def lock_for_mark(cols: PackColumns) -> str:
    return (
        f"SELECT {cols.select} FROM pricing_pack\n"
        "WHERE date >= $1 OR is_fresh\nORDER BY date\nFOR UPDATE"
    )


FRESH_FROM = """
SELECT id FROM pricing_pack
WHERE date >= $1 AND is_fresh
ORDER BY date DESC
LIMIT 1
"""
SERVE = "UPDATE pricing_pack SET is_fresh = TRUE WHERE id = $1 AND NOT is_fresh"
MARK = "UPDATE pricing_pack SET is_fresh = (date = $1) WHERE id = ANY($2::text[])"
