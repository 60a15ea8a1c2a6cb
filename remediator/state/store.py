"""The state store: journal, runs, steps, approvals, guards, kill switch, outbox.

One class over either backend. Every write that decides "who does this" is a
conditional statement (a unique key, or ``UPDATE ... WHERE state = ...``), so the
answer is the same with one replica or ten: exactly one of them wins.

This module never decides policy (what to run, whether a guard blocks); it only
records and claims. Times are unix seconds; JSON columns hold text.
"""

from __future__ import annotations

import functools
import operator
import time
from collections.abc import Iterator, Sequence
from typing import Any

import msgspec
import orjson

from remediator.models import Occurrence
from remediator.state.backend import Backend, Conn, PostgresBackend, Row, open_backend


def dumps(value: Any) -> str:
    return orjson.dumps(value, default=str).decode()


def loads(value: str | None) -> Any:
    return None if value is None else orjson.loads(value)


_OCCURRENCE_COLUMNS = (
    "fingerprint, starts_at, status, alertname, labels, annotations, ends_at,"
    " generator_url, group_key, received_at, state, processed_at, source, grafana"
)
# Postgres takes a batch, whatever its size, as ONE JSON text in one statement:
# msgspec encodes the Occurrence structs in C and the server (on the other core)
# splits them. Twelve bound arrays cost the event loop a Python tuple per row and
# asyncpg's per-element type checks: 20-alert intake went from ~430 to ~335 us/req.
# The answer is one row: how many were inserted and, only when that is fewer than
# were sent (repeats), which keys. Sending back every inserted key cost the event
# loop a record and a dict per row, for an answer ("all of them") a count gives.
# The scalar subquery in the CASE runs only when the count falls short; with no row
# inserted at all its answer is '[]', never NULL (which would read as "all new").
_INSERT_JSON = (
    "WITH new AS ("
    f"INSERT INTO occurrences ({_OCCURRENCE_COLUMNS})"
    " SELECT fingerprint, starts_at, status, alertname, labels::text, annotations::text,"
    " ends_at, generator_url, group_key, received_at,"
    " CASE WHEN pending THEN 'pending' ELSE 'done' END,"
    " CASE WHEN pending THEN NULL ELSE received_at END, source, NULLIF(grafana::text, 'null')"
    " FROM json_to_recordset(?::json) AS x(fingerprint text, starts_at text, status text,"
    " alertname text, labels json, annotations json, ends_at text, generator_url text,"
    " group_key text, received_at float8, pending bool, source text, grafana json)"
    " ON CONFLICT (fingerprint, starts_at, status) DO NOTHING"
    " RETURNING fingerprint, starts_at, status)"
    " SELECT CASE WHEN n < ? THEN"
    " (SELECT COALESCE(json_agg(json_build_array(fingerprint, starts_at, status)), '[]')"
    " FROM new)::text"
    " END AS keys FROM (SELECT count(*) AS n FROM new) AS inserted"
)
_encode_rows = msgspec.json.Encoder().encode


_occurrence_key = operator.attrgetter("fingerprint", "starts_at", "status")  # Occurrence.key


def _occurrence_values(o: Occurrence) -> tuple[Any, ...]:
    # An occurrence no rule wants is journaled already done, as if a worker had
    # processed it on arrival: it keeps its row (dedup, audit) but is never claimed.
    return (
        o.fingerprint,
        o.starts_at,
        o.status,
        o.alertname,
        orjson.dumps(o.labels, default=str).decode(),  # dumps(), minus a call per row
        orjson.dumps(o.annotations, default=str).decode(),
        o.ends_at,
        o.generator_url,
        o.group_key,
        o.received_at,
        "pending" if o.pending else "done",
        None if o.pending else o.received_at,
        o.source,
        None if o.grafana is None else msgspec.json.encode(o.grafana).decode(),
    )


# SQLite prepares a statement per distinct text, and a multi-row INSERT's text grows
# with its row count: with batch sizes all over the place the connection's statement
# cache churned and most batches paid for preparing a fresh ~300-row statement (a third
# of the insert's time). Batches are cut into power-of-two pieces instead: these nine
# statements serve every batch size.
_SQLITE_PIECES = (256, 128, 64, 32, 16, 8, 4, 2, 1)


def _sqlite_pieces(rows: list[Occurrence]) -> Iterator[list[Occurrence]]:
    start = 0
    while start < len(rows):
        left = len(rows) - start
        size = next(s for s in _SQLITE_PIECES if s <= left)
        yield rows[start : start + size]
        start += size


@functools.lru_cache(maxsize=64)
def _insert_occurrences_sql(rows: int) -> str:
    values = ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"] * rows)
    return (
        f"INSERT INTO occurrences ({_OCCURRENCE_COLUMNS})"
        f" VALUES {values} ON CONFLICT (fingerprint, starts_at, status) DO NOTHING"
    )


def _json_rows(ordered: list[Occurrence]) -> str:
    """_INSERT_JSON's argument: the rows, in this order (the lock order)."""
    return _encode_rows(ordered).decode()


def _inserted_keys(rows: list[Row]) -> set[tuple[str, str, str]] | None:
    """_INSERT_JSON's answer: the keys inserted, or None if every row was."""
    keys = rows[0]["keys"]
    return None if keys is None else {tuple(k) for k in orjson.loads(keys)}


async def _insert_sqlite(c: Conn, ordered: list[Occurrence]) -> set[tuple[str, str, str]] | None:
    """The keys of the rows inserted, or None if every row was.

    No RETURNING: it cost a third of the INSERT, for rows nobody reads when all are
    new (distinct alerts, the common case), which the count of changed rows tells.
    Otherwise the new rows are read back as those above the largest id before the
    INSERT: ids only grow (AUTOINCREMENT) and this transaction holds the write lock.
    """
    before = (await c.fetch("SELECT COALESCE(MAX(id), 0) AS id FROM occurrences"))[0]["id"]
    inserted = 0
    for chunk in _sqlite_pieces(ordered):
        args = [v for o in chunk for v in _occurrence_values(o)]
        inserted += await c.execute(_insert_occurrences_sql(len(chunk)), *args)
    if inserted == len(ordered):
        return None
    rows = await c.fetch(
        "SELECT fingerprint, starts_at, status FROM occurrences WHERE id > ?", before
    )
    return {(r["fingerprint"], r["starts_at"], r["status"]) for r in rows}


_RELEASE_LOCK = "DELETE FROM locks WHERE target = ? AND run_id = ?"
# The advisory lock key the mutation gate holds shared and the kill switch exclusive.
GATE_LOCK = 7240513
# A success closes the circuit; no write at all when it is closed with no failures.
_CLOSE_CIRCUIT = (
    "UPDATE circuits SET state = 'closed', failures = 0, opened_at = NULL,"
    " updated_at = ? WHERE runbook = ? AND (state <> 'closed' OR failures <> 0)"
)

_RUN_COLUMNS = (
    "id",
    "rule",
    "runbook",
    "fingerprint",
    "starts_at",
    "alertname",
    "target",
    "mode",
    "state",
    "alert",
    "params",
    "severity",
    "received_at",
    "created_at",
    "updated_at",
    "owner",
    "lease_until",
)


_STEP_COLUMNS = (
    "run_id",
    "phase",
    "seq",
    "name",
    "kind",
    "mutates",
    "approval",
    "state",
    "outcome",
    "rendered",
    "result",
    "changes",
    "reason",
    "attempts",
    "started_at",
    "finished_at",
)
_STEP_UPSERT = (
    f"INSERT INTO steps ({', '.join(_STEP_COLUMNS)})"
    f" VALUES ({', '.join('?' for _ in _STEP_COLUMNS)})"
    " ON CONFLICT (run_id, phase, name) DO UPDATE SET "
    + ", ".join(
        f"{c} = excluded.{c}" for c in _STEP_COLUMNS if c not in ("run_id", "phase", "name")
    )
)


def step_upsert(step: Row) -> tuple[str, list[Any]]:
    """The statement and values that insert or update one step row."""
    row = dict(step)
    row["mutates"] = int(bool(row.get("mutates")))
    row.setdefault("attempts", 0)
    row["result"] = dumps(row["result"]) if row.get("result") is not None else None
    row["changes"] = dumps(row["changes"]) if row.get("changes") is not None else None
    return _STEP_UPSERT, [row.get(c) for c in _STEP_COLUMNS]


class StateStore:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self._skip = backend.skip_locked

    @classmethod
    async def open(cls, url: str) -> StateStore:
        return cls(await open_backend(url))

    async def close(self) -> None:
        await self.backend.close()

    async def ping(self) -> None:
        await self.backend.ping()

    # Durability: a durable commit waits for the disk (SQLite: a shared fsync of the
    # WAL after it; Postgres synchronous_commit=on) and makes every earlier commit
    # durable too. So only the writes that must survive an OS crash on their own wait
    # for it: the journal (before 202), a mutating step's record (before and after it
    # acts), the page outbox, approvals decided by a human and the kill switch.
    # Everything else is bookkeeping that a crash recovers from (claims, leases,
    # runs before their first mutation) and skips the wait. A process crash
    # (kill -9) loses neither kind.

    async def _read(self, sql: str, *args: Any) -> list[Row]:
        async with self.backend.read() as c:
            rows: list[Row] = await c.fetch(sql, *args)
            return rows

    def _single(self, durable: bool) -> Any:
        # One statement is atomic by itself: on Postgres it runs in autocommit (one
        # round trip instead of three).
        return self.backend.statement(durable=durable)

    async def _fetch(self, sql: str, *args: Any, durable: bool = False) -> list[Row]:
        async with self._single(durable) as c:
            rows: list[Row] = await c.fetch(sql, *args)
            return rows

    async def _execute(self, sql: str, *args: Any, durable: bool = False) -> int:
        async with self._single(durable) as c:
            n: int = await c.execute(sql, *args)
            return n

    # ----------------------------------------------------------------- journal

    async def append_occurrences(self, occs: Sequence[Occurrence]) -> list[bool]:
        """Journal occurrences in ONE transaction; True where new, False where a repeat.

        Rows go in sorted by key, so concurrent batches with overlapping keys take
        the unique-index locks in one order and cannot deadlock (Postgres). A key
        repeated in the batch is new once.
        """
        ordered = sorted(occs, key=_occurrence_key)
        new: set[tuple[str, str, str]] | None
        if isinstance(self.backend, PostgresBackend):
            # One INSERT is the whole transaction: one round trip, all or nothing.
            rows = await self._fetch(_INSERT_JSON, _json_rows(ordered), len(ordered), durable=True)
            new = _inserted_keys(rows)
        else:
            async with self.backend.transaction() as c:
                new = await _insert_sqlite(c, ordered)
        if new is None:  # every row was new
            return [True] * len(occs)
        out: list[bool] = []
        for o in occs:
            out.append(o.key in new)
            new.discard(o.key)
        return out

    async def claim_occurrences(
        self, owner: str, limit: int, lease: float, alertnames: Sequence[str] | None = None
    ) -> list[Row]:
        """Claim pending occurrences, oldest first; only of these alert names if given
        (the P0 lane claims the alerts of P0 runbooks ahead of everything else)."""
        now = time.time()
        only = ""
        if alertnames is not None:
            if not alertnames:
                return []
            only = f" AND alertname IN ({', '.join('?' for _ in alertnames)})"
        rows = await self._fetch(
            "UPDATE occurrences SET state = 'processing', claimed_by = ?, claim_until = ?,"
            " attempts = attempts + 1 WHERE id IN (SELECT id FROM occurrences"
            f" WHERE state = 'pending'{only} ORDER BY id LIMIT ?{self._skip}) RETURNING *",
            owner,
            now + lease,
            *(alertnames or ()),
            limit,
            durable=False,  # a lost claim is claimed again; the run key stays unique
        )
        for r in rows:
            r["labels"] = loads(r["labels"])
            r["annotations"] = loads(r["annotations"])
            r["grafana"] = loads(r.get("grafana"))
        rows.sort(key=lambda r: r["id"])
        return rows

    async def requeue_expired_claims(self) -> int:
        """Put occurrences whose claim ran out (their worker died) back in the queue.

        Kept out of the claim itself: "pending OR expired" cannot walk the
        (state, id) index in order, so with a backlog every claim sorted the whole
        queue (O(backlog) per claim; 750 us per request in the 20-alert bench).
        """
        return await self._execute(
            "UPDATE occurrences SET state = 'pending', claimed_by = NULL, claim_until = NULL"
            " WHERE state = 'processing' AND claim_until < ?",
            time.time(),
        )

    async def finish_occurrence(self, occ_id: int, owner: str, error: str | None = None) -> None:
        await self._execute(
            "UPDATE occurrences SET state = ?, processed_at = ?, error = ?"
            " WHERE id = ? AND claimed_by = ?",
            "failed" if error else "done",
            time.time(),
            error,
            occ_id,
            owner,
            durable=False,  # if lost, the occurrence is processed again: runs are unique
        )

    async def finish_occurrences(self, occ_ids: Sequence[int], owner: str) -> None:
        """Mark several processed occurrences done in one statement."""
        if not occ_ids:
            return
        marks = ", ".join("?" for _ in occ_ids)
        await self._execute(
            "UPDATE occurrences SET state = 'done', processed_at = ?"
            f" WHERE id IN ({marks}) AND claimed_by = ?",
            time.time(),
            *occ_ids,
            owner,
            durable=False,
        )

    async def has_occurrence(self, fingerprint: str, starts_at: str, status: str) -> bool:
        rows = await self._read(
            "SELECT 1 AS x FROM occurrences WHERE fingerprint = ? AND starts_at = ? AND status = ?",
            fingerprint,
            starts_at,
            status,
        )
        return bool(rows)

    async def count_pending(self) -> int:
        rows = await self._read(
            "SELECT COUNT(*) AS n FROM occurrences WHERE state IN ('pending', 'processing')"
        )
        return int(rows[0]["n"])

    async def count_occurrences(self) -> int:
        rows = await self._read("SELECT COUNT(*) AS n FROM occurrences")
        return int(rows[0]["n"])

    async def list_occurrences(self, limit: int = 100) -> list[Row]:
        rows = await self._read("SELECT * FROM occurrences ORDER BY id DESC LIMIT ?", limit)
        for r in rows:
            r["labels"] = loads(r["labels"])
            r["annotations"] = loads(r["annotations"])
            r["grafana"] = loads(r.get("grafana"))
        return rows

    # -------------------------------------------------------------------- runs

    async def create_run(self, run: Row) -> bool:
        """Insert a run unless (rule, fingerprint, starts_at) already has one."""
        values = [run[c] for c in _RUN_COLUMNS]
        values[_RUN_COLUMNS.index("alert")] = dumps(run["alert"])
        values[_RUN_COLUMNS.index("params")] = dumps(run["params"])
        n = await self._execute(
            f"INSERT INTO runs ({', '.join(_RUN_COLUMNS)}) VALUES"
            f" ({', '.join('?' for _ in _RUN_COLUMNS)})"
            " ON CONFLICT (rule, fingerprint, starts_at) DO NOTHING",
            *values,
        )
        return n == 1

    @staticmethod
    def _run(row: Row) -> Row:
        row["alert"] = loads(row["alert"])
        row["params"] = loads(row["params"])
        return row

    async def get_run(self, run_id: str) -> Row | None:
        rows = await self._read("SELECT * FROM runs WHERE id = ?", run_id)
        return self._run(rows[0]) if rows else None

    async def runs_for_alert(self, fingerprint: str, starts_at: str) -> list[Row]:
        rows = await self._read(
            "SELECT * FROM runs WHERE fingerprint = ? AND starts_at = ? ORDER BY created_at",
            fingerprint,
            starts_at,
        )
        return [self._run(r) for r in rows]

    async def list_runs(self, limit: int = 50) -> list[Row]:
        rows = await self._read("SELECT * FROM runs ORDER BY created_at DESC LIMIT ?", limit)
        return [self._run(r) for r in rows]

    async def update_run(
        self,
        run_id: str,
        *,
        expect_owner: str | None = None,
        expect_state: str | None = None,
        **fields: Any,
    ) -> bool:
        fields["updated_at"] = time.time()
        sets = ", ".join(f"{k} = ?" for k in fields)
        sql = f"UPDATE runs SET {sets} WHERE id = ?"
        args: list[Any] = [*fields.values(), run_id]
        if expect_owner is not None:
            sql += " AND owner = ?"
            args.append(expect_owner)
        if expect_state is not None:
            sql += " AND state = ?"
            args.append(expect_state)
        return await self._execute(sql, *args) == 1

    async def run_start_facts(
        self, fingerprint: str, starts_at: str, runbook: str, flag: str
    ) -> Row:
        """What a new run must know before its guards, in one read: has its alert
        already resolved, is the kill switch on, and its runbook's circuit state."""
        rows = await self._read(
            "SELECT EXISTS (SELECT 1 FROM occurrences WHERE fingerprint = ?"
            " AND starts_at = ? AND status = 'resolved') AS resolved,"
            " (SELECT value FROM flags WHERE name = ?) AS flag,"
            " (SELECT state FROM circuits WHERE runbook = ?) AS circuit",
            fingerprint,
            starts_at,
            flag,
            runbook,
        )
        row = rows[0]
        row["resolved"] = bool(row["resolved"])
        return row

    async def hand_over_run(
        self,
        run_id: str,
        owner: str,
        outcome: str,
        *,
        release_lock: str | None = None,
        close_circuit: str | None = None,
        **fields: Any,
    ) -> Row | None:
        """End a run's fire phase: waiting for the resolve, or undoing at once if the
        alert resolved meanwhile. None if we no longer own it.

        In the same commit, and whether or not we still own the run: release its
        lock on ``release_lock`` (a target) and, after a success, close the circuit
        of runbook ``close_circuit``. On Postgres that is ONE statement (the other
        writes as data-modifying CTEs), so one round trip instead of three."""
        now = time.time()
        fields["updated_at"] = now
        sets = ", ".join(f"{k} = ?" for k in fields)
        hand_over = (
            "UPDATE runs SET state = CASE WHEN undo_state = 'requested' THEN 'undoing'"
            f" ELSE 'waiting' END, outcome = ?, {sets}"
            " WHERE id = ? AND owner = ? AND state = 'running' RETURNING *"
        )
        hand_over_args = (outcome, *fields.values(), run_id, owner)
        extra: list[tuple[str, tuple[Any, ...]]] = []
        if release_lock is not None:
            extra.append((_RELEASE_LOCK, (release_lock, run_id)))
        if close_circuit is not None:
            extra.append((_CLOSE_CIRCUIT, (now, close_circuit)))
        if self.backend.dialect == "postgres":
            ctes = ", ".join(f"w{i} AS ({sql})" for i, (sql, _) in enumerate(extra))
            args = [a for _, sql_args in extra for a in sql_args]
            rows = await self._fetch(
                (f"WITH {ctes} " if ctes else "") + hand_over, *args, *hand_over_args
            )
        else:
            async with self.backend.transaction(durable=False) as c:
                for sql, sql_args in extra:
                    await c.execute(sql, *sql_args)
                rows = await c.fetch(hand_over, *hand_over_args)
        return self._run(rows[0]) if rows else None

    async def request_undo(self, run_id: str, now: float) -> bool:
        """First resolve notification wins; repeats return False (undo runs once)."""
        n = await self._execute(
            "UPDATE runs SET resolved_at = ?, undo_state = 'requested',"
            " undo_reason = COALESCE(undo_reason, 'resolved'), updated_at = ?"
            " WHERE id = ? AND resolved_at IS NULL",
            now,
            now,
            run_id,
        )
        return n == 1

    async def expire_run(self, run_id: str, now: float) -> bool:
        """``max_duration`` passed with no resolve: ask for the undo (one replica wins)."""
        n = await self._execute(
            "UPDATE runs SET undo_state = 'requested', undo_reason = 'max_duration',"
            " updated_at = ? WHERE id = ? AND state = 'waiting' AND undo_state IS NULL",
            now,
            run_id,
        )
        return n == 1

    async def runs_past_duration(self, rule: str, created_before: float) -> list[Row]:
        """Waiting runs of ``rule`` created before the time, with changes to undo."""
        rows = await self._read(
            "SELECT * FROM runs WHERE rule = ? AND state = 'waiting' AND undo_state IS NULL"
            " AND created_at < ? AND EXISTS (SELECT 1 FROM steps s WHERE s.run_id = runs.id"
            " AND s.phase IN ('fire', 'approved') AND s.outcome = 'applied'"
            " AND s.changes IS NOT NULL) ORDER BY created_at LIMIT 20",
            rule,
            created_before,
        )
        return [self._run(r) for r in rows]

    async def next_wake_up(self) -> float | None:
        """When the next run parked in a wait is due (None: no such run)."""
        rows = await self._read(
            "SELECT MIN(retry_at) AS due FROM runs WHERE state = 'parked' AND retry_at IS NOT NULL"
        )
        due = rows[0]["due"] if rows else None
        return float(due) if due is not None else None

    async def claim_parked_runs(self, owner: str, lease: float, limit: int = 1) -> list[Row]:
        """Take runs the kill switch parked, to go on with them after ``resume``."""
        now = time.time()
        rows = await self._fetch(
            "UPDATE runs SET state = 'running', owner = ?, lease_until = ?, updated_at = ?,"
            " retry_at = NULL WHERE id IN (SELECT id FROM runs WHERE state = 'parked'"
            " AND (retry_at IS NULL OR retry_at <= ?)"
            f" ORDER BY COALESCE(retry_at, created_at) LIMIT ?{self._skip}) RETURNING *",
            owner,
            now + lease,
            now,
            now,
            limit,
        )
        return [self._run(r) for r in rows]

    async def claim_run(
        self, run_id: str, owner: str, lease: float, from_state: str, to_state: str
    ) -> bool:
        now = time.time()
        n = await self._execute(
            "UPDATE runs SET state = ?, owner = ?, lease_until = ?, updated_at = ?"
            " WHERE id = ? AND state = ?",
            to_state,
            owner,
            now + lease,
            now,
            run_id,
            from_state,
        )
        return n == 1

    async def claim_expired_runs(self, owner: str, lease: float, limit: int = 10) -> list[Row]:
        """Take over runs whose owner stopped renewing its lease (crash, kill -9)."""
        now = time.time()
        rows = await self._fetch(
            "UPDATE runs SET owner = ?, lease_until = ?, updated_at = ? WHERE id IN"
            " (SELECT id FROM runs WHERE state IN ('running', 'undoing') AND lease_until < ?"
            f" ORDER BY created_at LIMIT ?{self._skip}) RETURNING *",
            owner,
            now + lease,
            now,
            now,
            limit,
        )
        return [self._run(r) for r in rows]

    async def runs_waiting_undo(self, limit: int = 10) -> list[Row]:
        """Runs whose alert resolved but whose undo has not started (e.g. paused then)."""
        rows = await self._read(
            "SELECT * FROM runs WHERE state = 'waiting' AND undo_state = 'requested'"
            " AND (retry_at IS NULL OR retry_at <= ?) ORDER BY resolved_at LIMIT ?",
            time.time(),
            limit,
        )
        return [self._run(r) for r in rows]

    async def runs_to_escalate(self, runbooks: Sequence[str], limit: int = 50) -> list[Row]:
        """Waiting, unresolved, not yet escalated runs of these runbooks, oldest first."""
        if not runbooks:
            return []
        marks = ", ".join("?" for _ in runbooks)
        rows = await self._read(
            f"SELECT * FROM runs WHERE runbook IN ({marks}) AND state = 'waiting'"
            " AND resolved_at IS NULL AND escalated_at IS NULL AND blocked_by IS NULL"
            " ORDER BY created_at LIMIT ?",
            *runbooks,
            limit,
        )
        return [self._run(r) for r in rows]

    async def mark_escalated(self, run_id: str) -> bool:
        """One replica wins the escalation of a run."""
        n = await self._execute(
            "UPDATE runs SET escalated_at = ? WHERE id = ? AND escalated_at IS NULL",
            time.time(),
            run_id,
        )
        return n == 1

    async def renew_leases(self, owner: str, lease: float) -> int:
        now = time.time()
        return await self._execute(
            "UPDATE runs SET lease_until = ? WHERE owner = ? AND state IN ('running', 'undoing')",
            now + lease,
            owner,
            durable=False,  # a lost renewal only lets another replica resume sooner
        )

    async def count_runs_since(
        self, rule: str, since: float, before: tuple[float, str] | None = None
    ) -> int:
        """Runs of ``rule`` created since ``since`` and not blocked by a guard.

        With ``before`` (a run's created_at and id) only the runs created before that
        run count, so guards decide in creation order: of runs created together, the
        first ones pass, instead of each counting all the others and every one of
        them being blocked.
        """
        sql = "SELECT COUNT(*) AS n FROM runs WHERE rule = ? AND created_at >= ?"
        args: list[Any] = [rule, since]
        if before is not None:
            sql += " AND (created_at < ? OR (created_at = ? AND id < ?))"
            args += [before[0], before[0], before[1]]
        rows = await self._read(sql + " AND blocked_by IS NULL", *args)
        return int(rows[0]["n"])

    async def last_run_for_target(self, rule: str, target: str, exclude: str) -> Row | None:
        """The latest run of ``rule`` on ``target`` that passed its guards (it has steps).

        A run still deciding has no step yet and is not counted.
        """
        rows = await self._read(
            "SELECT * FROM runs WHERE rule = ? AND target = ? AND id <> ?"
            " AND blocked_by IS NULL"
            " AND EXISTS (SELECT 1 FROM steps WHERE steps.run_id = runs.id)"
            " ORDER BY created_at DESC LIMIT 1",
            rule,
            target,
            exclude,
        )
        return self._run(rows[0]) if rows else None

    # ------------------------------------------------------------------- steps

    async def record_step(self, step: Row, *, durable: bool = False) -> None:
        """Insert or update one step of a run; the audit trail is these rows.

        ``durable``: on disk before this returns, and every earlier commit with it."""
        sql, values = step_upsert(step)
        await self._execute(sql, *values, durable=durable)

    async def steps_for_run(self, run_id: str, phase: str | None = None) -> list[Row]:
        if phase is None:
            rows = await self._read(
                "SELECT * FROM steps WHERE run_id = ? ORDER BY started_at, id", run_id
            )
        else:
            rows = await self._read(
                "SELECT * FROM steps WHERE run_id = ? AND phase = ? ORDER BY seq", run_id, phase
            )
        for r in rows:
            r["result"] = loads(r["result"])
            r["changes"] = loads(r["changes"])
            r["mutates"] = bool(r["mutates"])
        return rows

    async def list_actions(self, limit: int = 50) -> list[Row]:
        rows = await self._read(
            "SELECT s.*, r.rule, r.runbook, r.alertname, r.fingerprint, r.mode AS run_mode"
            " FROM steps s JOIN runs r ON r.id = s.run_id"
            " ORDER BY s.started_at DESC, s.id DESC LIMIT ?",
            limit,
        )
        for r in rows:
            r["result"] = loads(r["result"])
            r["changes"] = loads(r["changes"])
            r["mutates"] = bool(r["mutates"])
        return rows

    # --------------------------------------------------------------- approvals

    async def create_approval(self, run_id: str, step: str, expires_at: float) -> int:
        async with self.backend.transaction(durable=False) as c:
            await c.execute(
                "INSERT INTO approvals (run_id, step, state, requested_at, expires_at)"
                " VALUES (?, ?, 'pending', ?, ?) ON CONFLICT (run_id, step) DO NOTHING",
                run_id,
                step,
                time.time(),
                expires_at,
            )
            rows = await c.fetch(
                "SELECT id FROM approvals WHERE run_id = ? AND step = ?", run_id, step
            )
        return int(rows[0]["id"])

    async def get_approval(self, approval_id: int) -> Row | None:
        rows = await self._read("SELECT * FROM approvals WHERE id = ?", approval_id)
        return rows[0] if rows else None

    async def approvals_for_run(self, run_id: str) -> list[Row]:
        return await self._read("SELECT * FROM approvals WHERE run_id = ? ORDER BY id", run_id)

    async def decide_approval(self, approval_id: int, decision: str, who: str) -> bool:
        """pending -> approved|rejected, only before it expires. One decision wins."""
        now = time.time()
        n = await self._execute(
            "UPDATE approvals SET state = ?, decided_by = ?, decided_at = ?"
            " WHERE id = ? AND state = 'pending' AND expires_at > ?",
            decision,
            who,
            now,
            approval_id,
            now,
            durable=True,  # a human decision
        )
        return n == 1

    async def transition_approval(self, approval_id: int, from_state: str, to_state: str) -> bool:
        n = await self._execute(
            "UPDATE approvals SET state = ? WHERE id = ? AND state = ?",
            to_state,
            approval_id,
            from_state,
        )
        return n == 1

    async def claim_approved(self, limit: int = 10) -> list[Row]:
        return await self._fetch(
            "UPDATE approvals SET state = 'executing' WHERE id IN (SELECT id FROM approvals"
            f" WHERE state = 'approved' ORDER BY id LIMIT ?{self._skip}) RETURNING *",
            limit,
        )

    async def expire_approvals(self) -> list[Row]:
        return await self._fetch(
            "UPDATE approvals SET state = 'expired' WHERE id IN (SELECT id FROM approvals"
            f" WHERE state = 'pending' AND expires_at <= ? ORDER BY id{self._skip})"
            " RETURNING *",
            time.time(),
        )

    async def count_pending_approvals(self) -> int:
        rows = await self._read("SELECT COUNT(*) AS n FROM approvals WHERE state = 'pending'")
        return int(rows[0]["n"])

    # ---------------------------------------------------------------- circuits

    async def get_circuit(self, runbook: str) -> Row | None:
        rows = await self._read("SELECT * FROM circuits WHERE runbook = ?", runbook)
        return rows[0] if rows else None

    async def all_circuits(self) -> list[Row]:
        return await self._read("SELECT * FROM circuits ORDER BY runbook")

    async def record_circuit_result(
        self, runbook: str, ok: bool, threshold: int
    ) -> tuple[str, bool]:
        """Count consecutive failures; returns (state, opened_now)."""
        now = time.time()
        async with self.backend.transaction(durable=False) as c:
            rows = await c.fetch(
                f"SELECT * FROM circuits WHERE runbook = ?{self._skip.replace(' SKIP LOCKED', '')}",
                runbook,
            )
            prev: Row = rows[0] if rows else {"state": "closed", "failures": 0, "opened_at": None}
            if ok:
                state, failures, opened_at = "closed", 0, None
            else:
                failures = int(prev["failures"]) + 1
                state = "open" if failures >= threshold else prev["state"]
                if prev["state"] == "half-open":
                    state = "open"  # the trial run failed
                opened_at = (
                    now if state == "open" and prev["state"] != "open" else prev["opened_at"]
                )
            await c.execute(
                "INSERT INTO circuits (runbook, state, failures, opened_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (runbook) DO UPDATE SET"
                " state = excluded.state, failures = excluded.failures,"
                " opened_at = excluded.opened_at, updated_at = excluded.updated_at",
                runbook,
                state,
                failures,
                opened_at,
                now,
            )
        return state, state == "open" and prev["state"] != "open"

    async def half_open_circuit(self, runbook: str, reset_after: float) -> bool:
        """open -> half-open once the reset time has passed; one caller wins the trial."""
        now = time.time()
        n = await self._execute(
            "UPDATE circuits SET state = 'half-open', updated_at = ?"
            " WHERE runbook = ? AND state = 'open' AND opened_at <= ?",
            now,
            runbook,
            now - reset_after,
        )
        return n == 1

    # ------------------------------------------------------------------- locks

    async def acquire_lock(self, target: str, run_id: str, owner: str, ttl: float) -> bool:
        now = time.time()
        n = await self._execute(
            "INSERT INTO locks (target, run_id, owner, expires_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (target) DO UPDATE SET run_id = excluded.run_id,"
            " owner = excluded.owner, expires_at = excluded.expires_at"
            " WHERE locks.expires_at < ? OR locks.run_id = excluded.run_id",
            target,
            run_id,
            owner,
            now + ttl,
            now,
        )
        return n == 1

    async def release_lock(self, target: str, run_id: str) -> None:
        await self._execute(_RELEASE_LOCK, target, run_id)

    # ------------------------------------------------------------------- flags

    async def get_flag(self, name: str) -> Row | None:
        rows = await self._read("SELECT * FROM flags WHERE name = ?", name)
        return rows[0] if rows else None

    async def set_flag(self, name: str, value: str, who: str) -> None:
        async with self.backend.transaction(durable=True) as c:  # the kill switch
            if self.backend.dialect == "postgres":
                # Exclusive against the mutation gate's shared lock (state/gate.py):
                # the switch flips only once no admission is deciding, so after this
                # returns no step can be admitted on the old value.
                await c.execute("SELECT pg_advisory_xact_lock(?)", GATE_LOCK)
            await c.execute(
                "INSERT INTO flags (name, value, updated_at, updated_by) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (name) DO UPDATE SET value = excluded.value,"
                " updated_at = excluded.updated_at, updated_by = excluded.updated_by",
                name,
                value,
                time.time(),
                who,
            )

    # ------------------------------------------------------------------ outbox

    async def enqueue_pages(self, pages: list[tuple[str, str, str, str, dict[str, Any]]]) -> int:
        """Queue (idem, pager, action, dedup_key, event) rows in ONE durable
        statement: a queued page survives a crash. Returns how many were new."""
        if not pages:
            return 0
        now = time.time()
        values = ", ".join(["(?, ?, ?, ?, ?, 'pending', ?, ?)"] * len(pages))
        args = [
            v
            for idem, pager, action, dedup_key, event in pages
            for v in (idem, pager, action, dedup_key, dumps(event), now, now)
        ]
        return await self._execute(
            "INSERT INTO outbox (idem, pager, action, dedup_key, event, state,"
            f" next_attempt_at, created_at) VALUES {values} ON CONFLICT (idem) DO NOTHING",
            *args,
            durable=True,
        )

    async def claim_pages(self, owner: str, limit: int, lease: float) -> list[Row]:
        now = time.time()
        rows = await self._fetch(
            "UPDATE outbox SET claimed_by = ?, claim_until = ?, attempts = attempts + 1"
            " WHERE id IN (SELECT id FROM outbox WHERE state = 'pending'"
            " AND next_attempt_at <= ? AND (claim_until IS NULL OR claim_until < ?)"
            f" ORDER BY id LIMIT ?{self._skip}) RETURNING *",
            owner,
            now + lease,
            now,
            now,
            limit,
        )
        for r in rows:
            r["event"] = loads(r["event"])
        rows.sort(key=lambda r: r["id"])
        return rows

    async def page_sent(self, page_id: int) -> None:
        await self._execute(
            "UPDATE outbox SET state = 'sent', sent_at = ?, claim_until = NULL WHERE id = ?",
            time.time(),
            page_id,
        )

    async def page_retry(self, page_id: int, at: float, error: str) -> None:
        await self._execute(
            "UPDATE outbox SET next_attempt_at = ?, last_error = ?, claim_until = NULL"
            " WHERE id = ?",
            at,
            error,
            page_id,
        )

    async def page_failed(self, page_id: int, error: str) -> None:
        await self._execute(
            "UPDATE outbox SET state = 'failed', last_error = ?, claim_until = NULL WHERE id = ?",
            error,
            page_id,
        )

    async def list_pages(self, limit: int = 100) -> list[Row]:
        rows = await self._read("SELECT * FROM outbox ORDER BY id DESC LIMIT ?", limit)
        for r in rows:
            r["event"] = loads(r["event"])
        return rows
