"""Retention: prune finished rows from the state store, one bounded batch at a time.

What a pass deletes, and nothing else:
- occurrences in state ``done`` or ``failed`` received more than
  ``Policy.occurrences`` ago (``received_at``: the journal's own clock);
- runs in state ``done`` finished more than ``Policy.runs`` ago, together with their
  steps and approvals, unless an undo is still owed (``undo_state = 'requested'``,
  except for a run a guard blocked before it acted: it changed nothing) or one of
  their approvals is still open (pending, approved, executing);
- pages ``sent`` or ``failed`` more than ``Policy.runs`` ago, except those of a run
  that is not done yet (a resumed run must find its pages already queued, or it
  would page again).

What it never deletes: a pending or processing occurrence, a run in any state but
``done`` (running, waiting, parked, undoing, or a state added later: the test is
``state = 'done'``, never a list of states to drop), a pending page, an open approval.

One replica at a time. On Postgres a pass first takes a transaction-scoped advisory
lock (``pg_try_advisory_xact_lock``, keyed by the schema, so two deployments sharing
a database do not wait for each other) in a transaction that then sits idle on one
pooled connection; the batches commit in transactions of their own on another. Row
locks so last one batch, and the lock goes with the holder's transaction if it dies.
A replica that finds the lock taken skips its pass. SQLite is one process.

Batches are bounded (``Policy.batch`` rows a statement, ``Policy.max_batches``
statements a table a pass), so a pass never holds the store for long; the caller
passes ``now``, which lets tests move time instead of sleeping.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import orjson

from remediator.state.backend import Backend, Conn
from remediator.state.store import StateStore

TABLES = ("occurrences", "runs", "steps", "approvals", "outbox")

# Up to this many rows a Postgres table is counted exactly (a scan bounded by LIMIT:
# a few MB); beyond it the gauge is the statistics' estimate.
EXACT_BELOW = 10_000

# Two int4 keys: a lock space apart from the migrations' single bigint key.
_LOCK = "SELECT pg_try_advisory_xact_lock(7240513, hashtext(current_schema())) AS ok"


def _among(dialect: str, column: str, rows: str) -> str:
    """``column`` is one of the values ``rows`` (a SELECT) gives. Postgres gets them as
    an array: for ``IN (subquery)`` its planner chose a hash semi-join over a scan of
    the whole table (85 ms at 30,000 occurrences, for a window of 1,000), where an
    array is looked up in the primary key."""
    if dialect == "postgres":
        return f"{column} = ANY(ARRAY({rows}))"
    return f"{column} IN ({rows})"


def _occurrences_sql(dialect: str) -> str:
    # The oldest ``limit`` rows of one state by id, of which those received before
    # the cutoff go. Ids grow with arrival, so once a window holds a row too young,
    # every later row is too: the pass stops there, and no statement reads past its
    # window.
    window = "SELECT id FROM occurrences WHERE state = ? ORDER BY id LIMIT ?"
    return f"DELETE FROM occurrences WHERE {_among(dialect, 'id', window)} AND received_at < ?"


# Approval states after which nothing more happens to the approval.
_APPROVAL_OPEN = "a.state NOT IN ('rejected', 'expired', 'executed', 'failed')"
_RUNS = (
    "SELECT id FROM runs WHERE state = 'done' AND finished_at < ?"
    " AND (COALESCE(undo_state, '') <> 'requested' OR blocked_by IS NOT NULL)"
    f" AND NOT EXISTS (SELECT 1 FROM approvals a WHERE a.run_id = runs.id AND {_APPROVAL_OPEN})"
    " ORDER BY finished_at LIMIT ?"
)

# A page's idem starts with its run's id ("r1a2b3...:trigger:slack"); others
# ("guard:...", "circuit:...") name no run.
_RUN_OF_PAGE = {
    "postgres": "split_part(outbox.idem, ':', 1)",
    "sqlite": "substr(outbox.idem, 1, instr(outbox.idem, ':') - 1)",
}
# The values of a JSON array of ids (the one argument).
_JSON_IDS = {
    "postgres": "SELECT json_array_elements_text(?::json)",
    "sqlite": "SELECT value FROM json_each(?)",
}


def _pages_sql(dialect: str) -> str:
    # A sent page's age is when it was sent; a failed one's, its last attempt
    # (next_attempt_at). The range on the (state, next_attempt_at) index bounds the
    # scan, so pages kept for a live run never make a batch walk the whole table;
    # the runs not done are read from their own small partial index (runs_live,
    # migration 6), not by a scan of every run.
    window = (
        "SELECT id FROM outbox WHERE state = ?"
        " AND next_attempt_at < ? AND (sent_at IS NULL OR sent_at < ?)"
        " AND NOT EXISTS (SELECT 1 FROM runs r"
        f" WHERE r.id = {_RUN_OF_PAGE[dialect]} AND r.state <> 'done')"
        " ORDER BY next_attempt_at LIMIT ?"
    )
    return f"DELETE FROM outbox WHERE {_among(dialect, 'id', window)}"


@dataclass(frozen=True)
class Policy:
    """Ages in seconds; a row must be older than its age to go."""

    occurrences: float
    runs: float
    batch: int = 1000
    # Runs per batch: each takes its steps (about ten) and approvals with it.
    run_batch: int = 200
    max_batches: int = 10


@dataclass
class Pass:
    pruned: bool  # False: another replica held the lock, this pass did nothing
    deleted: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TABLES, 0))
    more: bool = False  # a table hit max_batches: old rows are left for the next pass


async def prune(
    store: StateStore,
    policy: Policy,
    *,
    now: float | None = None,
    beat: Callable[[], None] | None = None,
) -> Pass:
    """One pruning pass; ``beat`` is called before each batch."""
    now = time.time() if now is None else now
    backend = store.backend
    if backend.dialect != "postgres":
        return await _prune(backend, policy, now, beat)
    async with backend.transaction(durable=False) as lock:
        if not (await lock.fetch(_LOCK))[0]["ok"]:
            return Pass(pruned=False)
        return await _prune(backend, policy, now, beat)


async def _prune(
    backend: Backend, policy: Policy, now: float, beat: Callable[[], None] | None
) -> Pass:
    result = Pass(pruned=True)
    deleted = result.deleted

    async def repeat(batch: Callable[[], Awaitable[bool]]) -> None:
        # A batch answers whether it was full: then there may be more of it.
        for _ in range(policy.max_batches):
            if beat is not None:
                beat()
            if not await batch():
                return
        result.more = True

    run_cutoff = now - policy.runs

    async def runs() -> bool:
        async with backend.transaction(durable=False) as c:
            ids = [
                r["id"]
                for r in await c.fetch(_RUNS + backend.skip_locked, run_cutoff, policy.run_batch)
            ]
            if ids:
                await _delete_runs(c, backend.dialect, ids, deleted)
        return len(ids) == policy.run_batch

    await repeat(runs)
    pages = _pages_sql(backend.dialect)
    for state in ("sent", "failed", "folded", "skipped"):

        async def outbox(state: str = state) -> bool:
            async with backend.transaction(durable=False) as c:
                n: int = await c.execute(pages, state, run_cutoff, run_cutoff, policy.batch)
            deleted["outbox"] += n
            return n == policy.batch

        await repeat(outbox)
    occ_cutoff = now - policy.occurrences
    occurrences_sql = _occurrences_sql(backend.dialect)
    for state in ("done", "failed"):

        async def occurrences(state: str = state) -> bool:
            async with backend.transaction(durable=False) as c:
                n: int = await c.execute(occurrences_sql, state, policy.batch, occ_cutoff)
            deleted["occurrences"] += n
            return n == policy.batch

        await repeat(occurrences)
    return result


async def _delete_runs(c: Conn, dialect: str, ids: list[str], deleted: dict[str, int]) -> None:
    """Delete these runs with their steps and approvals, children first (foreign keys).

    The ids were selected in this transaction, on Postgres ``FOR UPDATE``: none of
    them can change state or gain an approval before the commit."""
    arg = orjson.dumps(ids).decode()
    # The Slack message each run's page was posted as (not a counted table).
    await c.execute(
        f"DELETE FROM slack_messages WHERE {_among(dialect, 'run_id', _JSON_IDS[dialect])}", arg
    )
    for table, column in (("steps", "run_id"), ("approvals", "run_id"), ("runs", "id")):
        where = _among(dialect, column, _JSON_IDS[dialect])
        deleted[table] += await c.execute(f"DELETE FROM {table} WHERE {where}", arg)


async def count_rows(store: StateStore) -> dict[str, int]:
    """Rows per table, for ``remediator_state_rows``.

    SQLite: exact counts. Postgres: an exact count up to ``EXACT_BELOW`` rows (a
    bounded scan: ``LIMIT``), and above that an estimate: the statistics' live rows
    (``pg_stat_user_tables.n_live_tup``, kept current as transactions commit), or,
    when those are off or were reset (a crash), ``pg_class.reltuples`` from the last
    VACUUM or ANALYZE. Never a full count of a big table.
    """
    backend = store.backend
    async with backend.read() as c:
        if backend.dialect != "postgres":
            row = (
                await c.fetch(
                    "SELECT " + ", ".join(f"(SELECT COUNT(*) FROM {t}) AS {t}" for t in TABLES)
                )
            )[0]
            return {t: int(row[t]) for t in TABLES}
        counted = (
            await c.fetch(
                "SELECT "
                + ", ".join(
                    f"(SELECT COUNT(*) FROM (SELECT 1 FROM {t} LIMIT {EXACT_BELOW}) s) AS {t}"
                    for t in TABLES
                )
            )
        )[0]
        counts = {t: int(counted[t]) for t in TABLES}
        big = [t for t in TABLES if counts[t] >= EXACT_BELOW]
        if big:
            rows = await c.fetch(
                "SELECT t AS name, COALESCE(s.n_live_tup, 0) AS live, c.reltuples AS tuples"
                " FROM unnest(?::text[]) AS t JOIN pg_class c ON c.oid = to_regclass(t)"
                " LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid",
                big,
            )
            for r in rows:
                live, tuples = int(r["live"]), int(r["tuples"])
                estimate = live if live >= EXACT_BELOW else tuples
                counts[str(r["name"])] = max(estimate, EXACT_BELOW)
        return counts
