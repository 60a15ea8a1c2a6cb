"""The journal: occurrences as the webhook wrote them, and their claims by workers."""

from __future__ import annotations

import functools
import operator
import time
from collections.abc import Iterator, Sequence
from typing import Any

import msgspec
import orjson

from remediator.models import Occurrence
from remediator.state.backend import Conn, PostgresBackend, Row
from remediator.state.store_base import StoreBase, loads

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


class OccurrenceStore(StoreBase):
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
        rows = await self._claim(
            "occurrences",
            take="state = 'processing', claimed_by = ?, claim_until = ?, attempts = attempts + 1",
            take_args=(owner, now + lease),
            due=f"state = 'pending'{only}",
            due_args=tuple(alertnames or ()),
            order="id",
            limit=limit,
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
