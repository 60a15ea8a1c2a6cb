"""SQLite durability: a durable commit returns only after an fsync of the WAL that
started after it; concurrent durable commits share fsyncs; the connection is free
for other transactions while an fsync runs; a failed fsync stops the store.

os.fsync is wrapped, never replaced (the real fsync still runs), to see which file
was flushed and when, next to the COMMITs SQLite's trace callback reports.
"""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from remediator.errors import StateUnavailable
from remediator.state import backend as backend_mod
from remediator.state.backend import SqliteBackend

Events = list[tuple[str, Any]]


@pytest.fixture
async def store(tmp_path: Path) -> Any:
    b = SqliteBackend(str(tmp_path / "state.db"))
    await b.open()
    yield b
    await b.close()


def watch(b: SqliteBackend, monkeypatch: pytest.MonkeyPatch, **hooks: Any) -> Events:
    """Record COMMITs (from SQLite's trace) and fsyncs (which inode), in order."""
    events: Events = []
    lock = threading.Lock()
    real_fsync = os.fsync
    wal = b.path + "-wal"

    def fsync(fd: int) -> None:
        which = "wal" if os.fstat(fd).st_ino == os.stat(wal).st_ino else "other"
        if "before_fsync" in hooks:
            hooks["before_fsync"]()
        real_fsync(fd)
        with lock:
            events.append(("fsync", which))

    def trace(sql: str) -> None:
        if sql.strip().upper() == "COMMIT":
            with lock:
                events.append(("commit", None))

    monkeypatch.setattr(backend_mod.os, "fsync", fsync)
    assert b._db is not None
    b._db.set_trace_callback(trace)
    return events


async def insert(b: SqliteBackend, owner: str, *, durable: bool) -> None:
    async with b.transaction(durable=durable) as c:
        await c.execute(
            "INSERT INTO flags (name, value, updated_at, updated_by) VALUES (?, '1', 0, 't')",
            owner,
        )


async def test_a_durable_commit_returns_after_a_wal_fsync_that_followed_it(store, monkeypatch):
    events = watch(store, monkeypatch)
    await insert(store, "a", durable=True)
    assert events[0] == ("commit", None)
    assert ("fsync", "wal") in events[1:]


async def test_a_bookkeeping_commit_does_not_wait_for_the_disk(store, monkeypatch):
    events = watch(store, monkeypatch)
    await insert(store, "a", durable=False)
    await asyncio.sleep(0.05)
    assert events == [("commit", None)]


async def test_concurrent_durable_commits_share_fsyncs_and_each_is_covered(store, monkeypatch):
    events = watch(store, monkeypatch)
    done: list[int] = []

    async def one(i: int) -> None:
        await insert(store, f"o{i}", durable=True)
        done.append(len(events))  # how many events had happened when it returned

    await asyncio.gather(*(one(i) for i in range(30)))
    commits = [i for i, e in enumerate(events) if e[0] == "commit"]
    fsyncs = [i for i, e in enumerate(events) if e == ("fsync", "wal")]
    assert len(commits) == 30
    assert 1 <= len(fsyncs) < 30  # shared: far fewer flushes than commits
    # Every commit is followed by a WAL fsync before the last caller returned...
    assert all(any(f > c for f in fsyncs) for c in commits)
    # ...and each caller returned only after a WAL fsync that came after a commit of
    # its own round (no caller returned before any fsync at all).
    assert min(done) > fsyncs[0]


async def test_other_transactions_proceed_while_an_fsync_runs(store, monkeypatch):
    release = threading.Event()
    entered = threading.Event()

    def hold() -> None:
        entered.set()
        release.wait(10)

    watch(store, monkeypatch, before_fsync=hold)
    durable = asyncio.create_task(insert(store, "slow", durable=True))
    assert await asyncio.to_thread(entered.wait, 5)
    # The fsync is held: the connection must still serve reads and commits.
    await asyncio.wait_for(insert(store, "fast", durable=False), 2)
    async with store.read() as c:
        rows = await c.fetch("SELECT name FROM flags WHERE name IN ('fast', 'slow') ORDER BY name")
    assert [r["name"] for r in rows] == ["fast", "slow"]
    assert not durable.done()  # still waiting for its fsync
    release.set()
    await asyncio.wait_for(durable, 5)


async def test_a_failed_fsync_fails_the_waiters_and_stops_the_store(store, monkeypatch):
    def fail() -> None:
        raise OSError(5, "Input/output error")

    watch(store, monkeypatch, before_fsync=fail)
    with pytest.raises(StateUnavailable, match="fsync"):
        await insert(store, "a", durable=True)
    # Commits already visible may not be on disk, and the kernel reports a failed
    # write back once: nothing after it is trusted until a restart.
    with pytest.raises(StateUnavailable, match="failed fsync"):
        await insert(store, "b", durable=False)
    with pytest.raises(StateUnavailable, match="failed fsync"):
        async with store.read() as c:
            await c.fetch("SELECT 1")


async def test_a_durable_commit_flushes_earlier_bookkeeping_with_it(store, monkeypatch):
    events = watch(store, monkeypatch)
    await insert(store, "a", durable=False)
    await insert(store, "b", durable=False)
    await insert(store, "c", durable=True)
    # One fsync of the WAL, after the last commit, covers all three.
    assert events == [("commit", None)] * 3 + [("fsync", "wal")]
