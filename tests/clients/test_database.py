"""TargetDatabase against a real PostgreSQL holding a fresh DawsOS database per test."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from clients._dawsos_fixtures import admin_dsn, fresh_dawsos_database

from remediator.clients.database import QueryRejected, TargetDatabase
from remediator.errors import (
    TargetConflict,
    TargetRejected,
    TargetTimeout,
    TargetUnavailable,
)
from tests.fixtures.dawsos import snapshot, user_id


class Abort(Exception):
    """Raised inside a transaction block to make it roll back."""


@pytest.fixture
async def dawsos_dsn(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    async with fresh_dawsos_database(request.config) as dsn:
        yield dsn


@pytest.fixture
async def db(dawsos_dsn: str) -> AsyncIterator[TargetDatabase]:
    database = await TargetDatabase.connect(dawsos_dsn, statement_timeout_ms=2000)
    yield database
    await database.aclose()


async def test_fetch_returns_dicts_with_jsonb_decoded(db: TargetDatabase) -> None:
    rows = await db.fetch("SELECT id, condition_json FROM alerts WHERE id = $1", "abc-123")
    assert rows == [
        {
            "id": "abc-123",
            "condition_json": {"entity": "VIX", "op": ">", "val": 30, "provider": "polygon"},
        }
    ]


async def test_jsonb_parameters_are_python_objects(db: TargetDatabase) -> None:
    provider = await db.fetchval("SELECT $1::jsonb ->> 'provider'", {"provider": "fmp"})
    assert provider == "fmp"


async def test_fetchrow_returns_none_when_no_row(db: TargetDatabase) -> None:
    assert await db.fetchrow("SELECT id FROM alerts WHERE id = $1", "no-such-alert") is None


async def test_parameters_are_never_interpolated(db: TargetDatabase) -> None:
    hostile = "polygon' OR '1'='1"
    rows = await db.fetch("SELECT id FROM alerts WHERE condition_json->>'provider' = $1", hostile)
    assert rows == []


async def test_transaction_commits_and_reports_previous_values(
    db: TargetDatabase, dawsos_dsn: str
) -> None:
    before = (await snapshot(dawsos_dsn, ["alerts"]))["alerts"]
    expected_previous = {
        r["id"]: r["cooldown_minutes"] for r in before if r["cooldown_minutes"] < 60
    }

    async with db.transaction() as tx:
        previous = await tx.fetch(
            "SELECT id, cooldown_minutes FROM alerts WHERE cooldown_minutes < 60 "
            "ORDER BY id FOR UPDATE"
        )
        tag = await tx.execute(
            "UPDATE alerts SET cooldown_minutes = 60 WHERE id = ANY($1::text[])",
            [r["id"] for r in previous],
        )

    assert {r["id"]: r["cooldown_minutes"] for r in previous} == expected_previous
    assert tag == f"UPDATE {len(expected_previous)}"
    after = (await snapshot(dawsos_dsn, ["alerts"]))["alerts"]
    assert after == [
        {**r, "cooldown_minutes": 60} if r["id"] in expected_previous else r for r in before
    ]


async def test_transaction_rolls_back_when_block_raises(
    db: TargetDatabase, dawsos_dsn: str
) -> None:
    before = await snapshot(dawsos_dsn, ["alerts", "pricing_pack"])

    with pytest.raises(Abort):
        async with db.transaction() as tx:
            await tx.execute("UPDATE alerts SET active = FALSE")
            await tx.execute("UPDATE pricing_pack SET is_fresh = TRUE")
            assert await tx.fetchval("SELECT count(*) FROM alerts WHERE active") == 0
            raise Abort

    assert await snapshot(dawsos_dsn, ["alerts", "pricing_pack"]) == before


async def test_error_inside_transaction_rolls_back_earlier_statements(
    db: TargetDatabase, dawsos_dsn: str
) -> None:
    before = await snapshot(dawsos_dsn, ["alerts"])

    with pytest.raises(QueryRejected):
        async with db.transaction() as tx:
            await tx.execute("UPDATE alerts SET active = FALSE WHERE id = $1", "abc-123")
            await tx.execute("UPDATE alerts SET cooldown_minutes = -1 WHERE id = $1", "def-456")

    assert await snapshot(dawsos_dsn, ["alerts"]) == before


async def test_row_locked_for_update_makes_a_second_writer_conflict(db: TargetDatabase) -> None:
    async with db.transaction() as holder:
        await holder.fetch("SELECT id FROM alerts WHERE id = $1 FOR UPDATE", "abc-123")
        with pytest.raises(TargetConflict) as caught:
            async with db.transaction() as other:
                await other.execute("SET LOCAL lock_timeout = '100ms'")
                await other.execute("UPDATE alerts SET active = FALSE WHERE id = $1", "abc-123")
    assert caught.value.temporary


async def test_serialization_failure_is_a_conflict(db: TargetDatabase) -> None:
    with pytest.raises(TargetConflict):
        async with db.transaction(isolation="repeatable_read") as tx:
            await tx.fetchval("SELECT active FROM alerts WHERE id = $1", "abc-123")
            await db.execute("UPDATE alerts SET cooldown_minutes = 7 WHERE id = $1", "abc-123")
            await tx.execute("UPDATE alerts SET active = FALSE WHERE id = $1", "abc-123")
    # Only the concurrent autocommit update landed.
    row = await db.fetchrow("SELECT active, cooldown_minutes FROM alerts WHERE id = $1", "abc-123")
    assert row == {"active": True, "cooldown_minutes": 7}


async def test_unique_violation_is_rejected_with_its_sqlstate(db: TargetDatabase) -> None:
    existing = await db.fetchrow(
        "SELECT user_id, alert_id, created_at FROM notifications WHERE alert_id = $1 LIMIT 1",
        "abc-123",
    )
    assert existing is not None
    with pytest.raises(QueryRejected) as caught:
        await db.execute(
            "INSERT INTO notifications (user_id, alert_id, created_at) VALUES ($1, $2, $3)",
            existing["user_id"],
            existing["alert_id"],
            existing["created_at"],
        )
    assert caught.value.sqlstate == "23505"
    assert isinstance(caught.value, TargetRejected)
    assert not caught.value.temporary


async def test_statement_timeout_is_a_target_timeout(dawsos_dsn: str) -> None:
    db = await TargetDatabase.connect(dawsos_dsn, statement_timeout_ms=100)
    try:
        with pytest.raises(TargetTimeout) as caught:
            await db.fetchval("SELECT pg_sleep(5)")
        assert caught.value.temporary
        # The pool survives: the next statement runs.
        assert await db.fetchval("SELECT 41 + 1") == 42
    finally:
        await db.aclose()


async def test_connections_carry_application_name_and_statement_timeout(dawsos_dsn: str) -> None:
    db = await TargetDatabase.connect(dawsos_dsn, statement_timeout_ms=1234)
    try:
        assert await db.fetchval("SELECT current_setting('application_name')") == "remediator"
        async with db.transaction() as tx:
            assert await tx.fetchval("SHOW statement_timeout") == "1234ms"
    finally:
        await db.aclose()


async def test_connect_to_closed_port_is_target_unavailable(unused_port: int) -> None:
    with pytest.raises(TargetUnavailable) as caught:
        await TargetDatabase.connect(
            f"postgresql://postgres@127.0.0.1:{unused_port}/dawsos", connect_timeout=2
        )
    assert caught.value.temporary


async def test_connection_killed_mid_transaction_is_target_unavailable(
    db: TargetDatabase, request: pytest.FixtureRequest
) -> None:
    admin = await TargetDatabase.connect(admin_dsn(request.config))
    try:
        with pytest.raises(TargetUnavailable):
            async with db.transaction() as tx:
                pid = await tx.fetchval("SELECT pg_backend_pid()")
                assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
                await tx.fetchval("SELECT 1")
    finally:
        await admin.aclose()
    # The pool replaces the dead connection.
    assert await db.fetchval("SELECT count(*) FROM users WHERE id = $1", user_id(1)) == 1


async def test_exhausted_pool_times_out_instead_of_hanging(dawsos_dsn: str) -> None:
    db = await TargetDatabase.connect(dawsos_dsn, max_size=1, connect_timeout=0.2)
    try:
        async with db.transaction():
            with pytest.raises(TargetTimeout):
                await db.fetchval("SELECT 1")
    finally:
        await db.aclose()


async def test_cancelled_transaction_rolls_back(db: TargetDatabase, dawsos_dsn: str) -> None:
    before = await snapshot(dawsos_dsn, ["alerts"])
    entered = asyncio.Event()

    async def step() -> None:
        async with db.transaction() as tx:
            await tx.execute("UPDATE alerts SET active = FALSE")
            entered.set()
            await asyncio.sleep(30)

    task = asyncio.create_task(step())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await snapshot(dawsos_dsn, ["alerts"]) == before


async def test_transaction_object_is_unusable_after_its_block(db: TargetDatabase) -> None:
    async with db.transaction() as tx:
        assert await tx.fetchval("SELECT 1") == 1
    with pytest.raises(RuntimeError, match="ended"):
        await tx.fetchval("SELECT 1")


async def test_a_transaction_left_open_never_reaches_the_next_caller(dawsos_dsn: str) -> None:
    # The pool skips asyncpg's reset query; an open transaction must still be rolled
    # back on release, or its writes would commit with the next caller's.
    database = await TargetDatabase.connect(
        dawsos_dsn, statement_timeout_ms=2000, min_size=1, max_size=1
    )
    try:
        async with database._connection() as conn:
            first = await conn.fetchval("SELECT pg_backend_pid()")
            await conn.execute("BEGIN")
            await conn.execute("CREATE TABLE left_open (x int)")
        async with database.transaction() as tx:
            again = await tx.fetchval("SELECT pg_backend_pid()")
            exists = await tx.fetchval("SELECT to_regclass('left_open') IS NOT NULL")
        assert again == first  # the same session, so the check below means something
        assert exists is False
    finally:
        await database.aclose()
