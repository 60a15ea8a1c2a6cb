"""The state store's Postgres connection pool: sessions are reused only when their
user finished normally; at most max_size exist; a waiter gets the next free one or
times out; a session the server killed, or one cancelled mid-query, is replaced."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from remediator.state.pgpool import ConnectionPool


async def pid(conn: asyncpg.Connection) -> int:
    value: int = await conn.fetchval("SELECT pg_backend_pid()")
    return value


@pytest.fixture
async def pool(pg_schema_dsn):
    p = ConnectionPool(pg_schema_dsn, max_size=2, server_settings={}, acquire_timeout=0.5)
    await p.open(1)
    yield p
    await p.close()


async def test_a_session_used_normally_is_reused(pool):
    conn = await pool.acquire()
    first = await pid(conn)
    pool.release(conn, reusable=True)
    conn = await pool.acquire()
    assert await pid(conn) == first
    pool.release(conn, reusable=True)


async def test_a_session_whose_user_failed_is_dropped_and_replaced(pool):
    conn = await pool.acquire()
    first = await pid(conn)
    pool.release(conn, reusable=False)
    assert conn.is_closed()
    conn = await pool.acquire()
    assert await pid(conn) != first
    pool.release(conn, reusable=True)


async def test_at_most_max_size_sessions_and_a_waiter_gets_the_next_one(pool):
    a, b = await pool.acquire(), await pool.acquire()
    waiter = asyncio.create_task(pool.acquire())
    await asyncio.sleep(0.05)
    assert not waiter.done()  # both sessions are out: it waits
    b_pid = await pid(b)
    pool.release(b, reusable=True)
    c = await asyncio.wait_for(waiter, 1)
    assert await pid(c) == b_pid  # handed over directly
    for conn in (a, c):
        pool.release(conn, reusable=True)


async def test_a_waiter_times_out_and_a_freed_slot_opens_a_new_session(pool):
    a, b = await pool.acquire(), await pool.acquire()
    with pytest.raises(TimeoutError):
        await pool.acquire()
    waiter = asyncio.create_task(pool.acquire())
    await asyncio.sleep(0.05)
    pool.release(b, reusable=False)  # dropped: the waiter may open a new one
    c = await asyncio.wait_for(waiter, 2)
    assert await c.fetchval("SELECT 1") == 1
    for conn in (a, c):
        pool.release(conn, reusable=True)


async def test_a_session_the_server_killed_while_idle_is_replaced(pool, pg_schema_dsn):
    conn = await pool.acquire()
    victim = await pid(conn)
    pool.release(conn, reusable=True)
    admin = await asyncpg.connect(pg_schema_dsn)
    try:
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", victim)
    finally:
        await admin.close()
    for _ in range(50):  # the client notices the closed socket
        if conn.is_closed():
            break
        await asyncio.sleep(0.02)
    conn = await pool.acquire()
    assert await pid(conn) != victim
    pool.release(conn, reusable=True)


async def test_a_query_cancelled_midway_never_reaches_the_next_user(pool):
    conn = await pool.acquire()
    first = await pid(conn)

    async def slow() -> None:
        try:
            await conn.execute("SELECT pg_sleep(5)")
            pool.release(conn, reusable=True)
        except BaseException:
            pool.release(conn, reusable=False)
            raise

    task = asyncio.create_task(slow())
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    conn = await pool.acquire()
    assert await pid(conn) != first
    assert await conn.fetchval("SELECT 2") == 2
    pool.release(conn, reusable=True)


async def test_closing_the_pool_ends_its_sessions_and_refuses_new_acquires(pg_schema_dsn):
    p = ConnectionPool(pg_schema_dsn, max_size=2, server_settings={})
    await p.open(1)
    idle = await p.acquire()
    busy = await p.acquire()
    p.release(idle, reusable=True)
    await p.close()
    assert idle.is_closed()
    with pytest.raises(asyncpg.InterfaceError):
        await p.acquire()
    p.release(busy, reusable=True)  # released after close: closed, not kept
    assert busy.is_closed()
