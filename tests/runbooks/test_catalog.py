"""The column catalog against real databases: the minimal fixture holds exactly the
required columns, the full one the optional ones too, and TargetDatabase.columns reads
them from the catalog (through search_path, like the runbooks' statements)."""

from __future__ import annotations

import pytest

from remediator.runbooks import catalog, packs
from tests.fixtures import dawsos as testing_dawsos
from tests.runbooks import _rb0103_fixtures as fx


async def test_the_minimal_schema_holds_exactly_the_required_columns(
    request: pytest.FixtureRequest,
) -> None:
    async with fx.dawsos_db(request.config, "minimal") as (_dsn, db):
        for table, required in catalog.REQUIRED.items():
            assert await db.columns(table) == required, table
        assert await db.columns("prices") == frozenset()  # no such table
        assert await packs.columns(db) == packs.PackColumns(status=False, hash=False)


async def test_the_full_fixture_has_the_optional_columns(request: pytest.FixtureRequest) -> None:
    async with fx.dawsos_db(request.config) as (_dsn, db):
        for table, required in catalog.REQUIRED.items():
            have = await db.columns(table)
            assert required | catalog.OPTIONAL.get(table, frozenset()) <= have, table
        assert await packs.columns(db) == packs.FULL
        # Cached for a while: a column added now is seen on the next minute's read.
        await db.execute("ALTER TABLE users ADD COLUMN nickname text")
        assert "nickname" not in await db.columns("users")
    assert set(catalog.USED_BY) == set(catalog.REQUIRED)
    assert dict(catalog.REQUIRED) == testing_dawsos.MINIMAL_COLUMNS


async def test_columns_refuses_anything_but_a_plain_table_name(
    request: pytest.FixtureRequest,
) -> None:
    async with fx.dawsos_db(request.config, "minimal") as (_dsn, db):
        for bad in ("users; drop table users", "Users", "a.b", ""):
            with pytest.raises(ValueError):
                await db.columns(bad)
