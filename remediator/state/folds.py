"""Page folding: each pager opens at most ``budget`` new incidents in any rolling hour.

A *new incident* is a trigger whose dedup key the pager has no incident for (never
seen, or resolved since: PagerDuty opens a new incident then). Past the budget, new
incidents fold into ONE summary incident per pager and window (an hour from its first
fold). A summary's rows are rendered when they are sent, with the counts as they
stand, and re-sent at most once per ``interval`` as more fold in. Triggers and
resolves of an incident the pager already has never count and never fold; those of
a folded incident are kept (the audit trail) but never sent, since the pager never
heard of that key. A page flagged ``never_fold`` (a P0 whose runbook acted) always
opens its own incident, and counts toward the budget like any other.

Every decision is taken from the outbox table, in one transaction per batch, under
one lock per pager (a Postgres advisory lock; SQLite has a single writer), so the
replicas that share a store share the budget and never both take its last slot.

``outbox.incident`` says what a row is to its pager:

    new              a trigger opening its own incident (counts toward the budget)
    update, NULL     a trigger or resolve of an incident the pager has (NULL: rows
                     queued before folding existed, and resolves of unknown keys)
    fold             the first trigger of a new incident folded into ``folded_into``
    folded           a later trigger or resolve of a folded incident: never sent
    summary          the trigger opening a summary (its window starts at created_at)
    summary_update   a re-send of a summary
    summary_resolve  the summary's resolve

This module records and decides; it never renders a page (``paging/folded.py`` does).
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator, Callable, Container, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from remediator.state.backend import Conn, Row
from remediator.state.store import StateStore, dumps, loads

WINDOW = 3600.0  # the rolling hour of the budget, and a summary's window
SUMMARY_SENDS = ("summary", "summary_update")
_FOLDED = ("fold", "folded")
_SUMMARY_ROWS = (*SUMMARY_SENDS, "summary_resolve")
# pg_advisory_xact_lock(int4, int4) keys live apart from the one-bigint keys that
# migrations use; the second half is the pager.
_LOCK_CLASS = 7240513
# Bound parameters per statement stay far below SQLite's and asyncpg's limits.
_CHUNK = 500
_COLUMNS = (
    "idem, pager, action, dedup_key, event, state, next_attempt_at, created_at,"
    " incident, folded_into, topic"
)


@dataclass(frozen=True)
class Page:
    """One page for one pager, as the outbox queues it."""

    idem: str
    pager: str
    action: str  # trigger | resolve
    dedup_key: str
    event: dict[str, Any]
    never_fold: bool = False
    topic: str = ""  # what a summary counts it under (JSON text: alertname, rule, ...)


@dataclass
class Enqueued:
    queued: int = 0  # new outbox rows, folded ones included
    idems: set[str] = field(default_factory=set)  # the idems of those rows
    folded: dict[str, int] = field(default_factory=dict)  # pager -> new incidents folded
    opened: list[tuple[str, str]] = field(default_factory=list)  # (pager, summary key)


@dataclass(frozen=True)
class TopicCount:
    topic: str
    count: int  # incidents folded under this topic
    resolved: int  # of those, resolved since
    own: int  # of those, paged on their own later (a P0 that then acted)
    sample: dict[str, Any] | None  # one folded page's event, for its links


@dataclass(frozen=True)
class SummaryStats:
    pager: str
    key: str
    window_start: float
    topics: list[TopicCount]
    resolved: bool  # the summary itself


def summary_key(pager: str, start: float) -> str:
    return f"remediator/folded/{pager}/{int(start)}"


def _lock_key(pager: str) -> int:
    n = zlib.crc32(pager.encode())
    return n - 2**32 if n >= 2**31 else n


async def _fetch_in(conn: Conn, sql: str, head: Sequence[Any], values: Sequence[Any]) -> list[Row]:
    """``sql`` has one ``{}`` for an IN list; ``values`` are sent in chunks."""
    rows: list[Row] = []
    for i in range(0, len(values), _CHUNK):
        part = values[i : i + _CHUNK]
        rows += await conn.fetch(sql.format(", ".join("?" * len(part))), *head, *part)
    return rows


async def _key_states(conn: Conn, pager: str, keys: Sequence[str]) -> dict[str, str | None]:
    """dedup key -> None (the pager has it open) or the summary it is folded into.
    Keys the pager has no incident for (never seen, or resolved) are absent."""
    rows = await _fetch_in(
        conn,
        "SELECT dedup_key, action, incident, folded_into FROM outbox"
        " WHERE pager = ? AND dedup_key IN ({}) ORDER BY id",
        [pager],
        keys,
    )
    states: dict[str, str | None] = {}
    for r in rows:
        key = r["dedup_key"]
        if r["incident"] in _SUMMARY_ROWS:
            continue
        if r["action"] == "resolve":
            states.pop(key, None)
        elif r["incident"] in _FOLDED:
            states[key] = r["folded_into"]
        else:
            states[key] = None
    return states


async def enqueue(
    store: StateStore,
    pages: Sequence[Page],
    *,
    budget: int,
    interval: float,
    now: float,
    summary_event: Callable[[str, str], dict[str, Any]],
) -> Enqueued:
    """Queue ``pages`` in ONE durable transaction, folding past each pager's budget.

    A page whose idem is already queued is a repeat and changes nothing.
    ``summary_event(pager, key)`` gives the stored event of a new summary's row (the
    outbox renders the real one when it sends it).
    """
    result = Enqueued()
    by_pager: dict[str, list[Page]] = {}
    idems: set[str] = set()
    for p in pages:
        if p.idem not in idems:
            idems.add(p.idem)
            by_pager.setdefault(p.pager, []).append(p)
    if not by_pager:
        return result
    touched: list[tuple[str, str]] = []
    async with _transaction(store) as conn:
        # What the store holds already: repeats, and each key's incident. Read before
        # the lock: only the pages of one run (sent one after another) or of one
        # idem (a repeat, which the insert drops) share a key, so what another
        # replica commits meanwhile does not change these answers.
        known = {pager: await _known(conn, pager, batch) for pager, batch in by_pager.items()}
        # The budget is what replicas race for: it is read under the lock, which is
        # held for three statements (the lock, this read, the insert) and the commit.
        racing = sorted(p for p, (todo, keys) in known.items() if _may_open(todo, keys))
        heads = await _heads(store, conn, racing, now)
        plans = [
            await _plan(conn, pager, todo, keys, heads.get(pager, (0, None)), budget, now)
            for pager, (todo, keys) in known.items()
        ]
        inserted = await _insert(conn, [r for plan in plans for r in plan.rows])
        openings: list[tuple[Any, ...]] = []
        for plan in plans:
            changed = plan.changed(inserted)
            result.folded[plan.pager] = sum(
                1 for r in plan.rows if r[0] in inserted and r[8] == "fold"
            )
            if plan.fresh is not None and plan.fresh in changed:
                # Only now: a summary is never sent with nothing folded into it.
                event = dumps(summary_event(plan.pager, plan.fresh))
                opening = (f"{plan.fresh}#open", plan.pager, "trigger", plan.fresh, event)
                openings.append((*opening, "pending", now, now, "summary", None, None))
                result.opened.append((plan.pager, plan.fresh))
            touched += [(plan.pager, key) for key in sorted(changed - {plan.fresh})]
        if openings:
            inserted.update(await _insert(conn, openings))
    result.queued = len(inserted)
    result.idems = set(inserted)
    result.folded = {pager: n for pager, n in result.folded.items() if n}
    if touched:
        # Needs no lock (see _schedule_update), so it runs after the commit.
        async with _transaction(store) as conn:
            for pager, key in touched:
                await _schedule_update(conn, pager, key, now, interval, summary_event)
    await _durable(store, max(inserted.values(), default=None))
    return result


@asynccontextmanager
async def _transaction(store: StateStore) -> AsyncIterator[Conn]:
    # On Postgres the lock is held until the commit ends, and a durable commit would
    # hold it through the WAL flush: every replica's pages would queue behind each
    # fsync in turn. So the commit does not wait, and ``_durable`` waits for the
    # flush once the lock is free. SQLite's durable commit already waits outside
    # its lock, and its transactions are serialised anyway.
    async with store.backend.transaction(durable=store.backend.dialect != "postgres") as c:
        yield c


async def _durable(store: StateStore, page_id: int | None) -> None:
    """Postgres: return once the commit that queued ``page_id`` is on disk."""
    if store.backend.dialect == "postgres" and page_id is not None:
        # A durable commit waits for the WAL flush up to its own commit record, so
        # past every commit before it; concurrent waits share one flush. It must
        # write WAL to wait at all (a bare SELECT, even one taking an xid, does not):
        # rewriting a column of our own row, unindexed, is the smallest such write.
        async with store.backend.statement(durable=True) as conn:
            await conn.execute("UPDATE outbox SET attempts = attempts WHERE id = ?", page_id)


async def _lock(store: StateStore, conn: Conn, pagers: Sequence[str]) -> None:
    if store.backend.dialect != "postgres":
        return  # SQLite: the transaction already holds the only write lock
    # One statement; in key order everywhere, so two replicas never deadlock. (A
    # volatile function in the target list runs after the ORDER BY.)
    await conn.execute(
        "SELECT pg_advisory_xact_lock(?, k) FROM unnest(?::int[]) AS k ORDER BY k",
        _LOCK_CLASS,
        sorted({_lock_key(p) for p in pagers}),
    )


async def _known(
    conn: Conn, pager: str, batch: list[Page]
) -> tuple[list[Page], dict[str, str | None]]:
    queued = await _fetch_in(
        conn, "SELECT idem FROM outbox WHERE idem IN ({})", [], [p.idem for p in batch]
    )
    repeats = {r["idem"] for r in queued}
    todo = [p for p in batch if p.idem not in repeats]
    keys = await _key_states(conn, pager, sorted({p.dedup_key for p in todo})) if todo else {}
    return todo, keys


def _may_open(todo: list[Page], keys: dict[str, str | None]) -> bool:
    """Whether a page might open an incident (so: needs the budget). Walks the pages
    in order, as ``_plan`` will: a resolve then a trigger of one key opens it anew."""
    states = dict(keys)
    for p in todo:
        if p.action == "resolve":
            states.pop(p.dedup_key, None)
        elif p.dedup_key not in states or (states[p.dedup_key] is not None and p.never_fold):
            return True
    return False


async def _heads(
    store: StateStore, conn: Conn, pagers: list[str], now: float
) -> dict[str, tuple[int, str | None]]:
    """Under the pagers' locks: pager -> (new incidents in the last hour, the
    summary of the current window if any)."""
    if not pagers:
        return {}
    # Its own statement, after the lock: a statement reads what was committed
    # when it started.
    await _lock(store, conn, pagers)
    names = " UNION ALL ".join(["SELECT ? AS pager"] * len(pagers))
    rows = await conn.fetch(
        "SELECT p.pager AS pager,"
        " (SELECT COUNT(*) FROM outbox o WHERE o.pager = p.pager AND o.incident = 'new'"
        " AND o.created_at > ?) AS opened,"
        " (SELECT o.dedup_key FROM outbox o WHERE o.pager = p.pager"
        " AND o.incident = 'summary' AND o.created_at > ?"
        " ORDER BY o.created_at DESC LIMIT 1) AS current"
        f" FROM ({names}) p",
        now - WINDOW,
        now - WINDOW,
        *pagers,
    )
    return {r["pager"]: (int(r["opened"]), r["current"]) for r in rows}


@dataclass
class _Plan:
    pager: str
    rows: list[tuple[Any, ...]]  # in _COLUMNS order
    fresh: str | None  # a summary this batch opens

    def changed(self, inserted: Container[str]) -> set[str]:
        """Summaries whose counts the inserted rows change."""
        return {
            r[9]
            for r in self.rows
            if r[0] in inserted and (r[8] == "fold" or (r[8] == "folded" and r[2] == "resolve"))
        }


async def _plan(
    conn: Conn,
    pager: str,
    todo: list[Page],
    keys: dict[str, str | None],
    head: tuple[int, str | None],
    budget: int,
    now: float,
) -> _Plan:
    """Each page's row, as its key's state and the budget say."""
    opened, current = head
    plan = _Plan(pager, [], None)

    def row(p: Page, state: str, incident: str | None, into: str | None = None) -> None:
        topic = p.topic if incident == "fold" else None
        event = dumps(p.event)
        plan.rows.append(
            (p.idem, pager, p.action, p.dedup_key, event, state, now, now, *(incident, into, topic))
        )

    for p in todo:
        has = p.dedup_key in keys
        into = keys.get(p.dedup_key)
        if p.action == "resolve":
            keys.pop(p.dedup_key, None)
            if into is not None:  # the pager never heard of it: the summary counts it
                row(p, "folded", "folded", into)
            else:
                row(p, "pending", "update" if has else None)
        elif has and into is None:
            row(p, "pending", "update")
        elif has and into is not None and not p.never_fold:
            row(p, "folded", "folded", into)
        elif p.never_fold or opened < budget:
            opened += 1
            keys[p.dedup_key] = None
            row(p, "pending", "new")
        else:
            if current is None:
                current = plan.fresh = await _new_summary_key(conn, pager, now)
            keys[p.dedup_key] = current
            row(p, "folded", "fold", current)
    return plan


async def _insert(conn: Conn, rows: list[tuple[Any, ...]]) -> dict[str, int]:
    """Insert outbox rows; returns the new ones' ids by idem (repeats are not new)."""
    inserted: dict[str, int] = {}
    per = _CHUNK // 5
    for i in range(0, len(rows), per):
        part = rows[i : i + per]
        values = ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"] * len(part))
        new = await conn.fetch(
            f"INSERT INTO outbox ({_COLUMNS}) VALUES {values}"
            " ON CONFLICT (idem) DO NOTHING RETURNING id, idem",
            *[v for r in part for v in r],
        )
        inserted.update((r["idem"], r["id"]) for r in new)
    return inserted


async def _new_summary_key(conn: Conn, pager: str, now: float) -> str:
    """A key no earlier summary of this pager used (clocks of replicas differ): a
    trigger on a resolved summary's key would reopen it, not start a new one."""
    base = key = summary_key(pager, now)
    n = 1
    while await conn.fetch(
        "SELECT 1 FROM outbox WHERE pager = ? AND dedup_key = ? LIMIT 1", pager, key
    ):
        n += 1
        key = f"{base}-{n}"
    return key


def _in_flight(r: Row, now: float) -> bool:
    return r["state"] == "pending" and r["claim_until"] is not None and r["claim_until"] >= now


async def _schedule_update(
    conn: Conn,
    pager: str,
    key: str,
    now: float,
    interval: float,
    summary_event: Callable[[str, str], dict[str, Any]],
) -> None:
    """Make sure one re-send of the summary is queued, no sooner than ``interval``
    after the last one. A queued re-send not yet taken carries the new counts too,
    since it is rendered when sent: then there is nothing to do.

    Needs no lock: two replicas that both find none waiting count the same rows and
    so insert the same idem, and only one of them lands. One that lands after the
    summary resolved is dropped when it is due (``Outbox.deliver_due``)."""
    rows = await conn.fetch(
        "SELECT incident, state, claim_until, sent_at FROM outbox"
        " WHERE pager = ? AND dedup_key = ?",
        pager,
        key,
    )
    if any(r["incident"] == "summary_resolve" for r in rows):
        return
    if any(r["state"] == "pending" and not _in_flight(r, now) for r in rows):
        return
    due = max([now] + [r["sent_at"] + interval for r in rows if r["sent_at"] is not None])
    if any(_in_flight(r, now) for r in rows):
        due = max(due, now + interval)  # being sent now, with the counts before this
    await conn.execute(
        f"INSERT INTO outbox ({_COLUMNS}) VALUES (?, ?, 'trigger', ?, ?, 'pending', ?, ?,"
        " 'summary_update', NULL, NULL) ON CONFLICT (idem) DO NOTHING",
        f"{key}#{len(rows)}",
        pager,
        key,
        dumps(summary_event(pager, key)),
        due,
        now,
    )


# A fold is settled once its key resolved or the pager got it as its own incident.
_SETTLED = (
    "EXISTS (SELECT 1 FROM outbox d WHERE d.pager = f.pager AND d.dedup_key = f.dedup_key"
    " AND d.id > f.id AND {})"
)
_RESOLVED = _SETTLED.format("d.action = 'resolve'")
_OWN = _SETTLED.format("d.incident = 'new'")


async def summary_stats(store: StateStore, pager: str, key: str) -> SummaryStats:
    """The counts a summary shows, as they stand."""
    async with store.backend.read() as conn:
        head = await conn.fetch(
            "SELECT incident, created_at FROM outbox WHERE pager = ? AND dedup_key = ?"
            " AND incident IN ('summary', 'summary_resolve')",
            pager,
            key,
        )
        counts = await conn.fetch(
            "SELECT f.topic AS topic, COUNT(*) AS n,"
            f" SUM(CASE WHEN {_RESOLVED} THEN 1 ELSE 0 END) AS resolved,"
            f" SUM(CASE WHEN {_OWN} THEN 1 ELSE 0 END) AS own,"
            " MIN(f.id) AS sample"
            " FROM outbox f WHERE f.folded_into = ? AND f.incident = 'fold'"
            " GROUP BY f.topic ORDER BY n DESC, topic",
            key,
        )
        samples = await _fetch_in(
            conn, "SELECT id, event FROM outbox WHERE id IN ({})", [], [r["sample"] for r in counts]
        )
    events = {r["id"]: loads(r["event"]) for r in samples}
    start = min((r["created_at"] for r in head if r["incident"] == "summary"), default=0.0)
    return SummaryStats(
        pager=pager,
        key=key,
        window_start=float(start),
        topics=[
            TopicCount(
                topic=r["topic"],
                count=int(r["n"]),
                resolved=int(r["resolved"] or 0),
                own=int(r["own"] or 0),
                sample=events.get(r["sample"]),
            )
            for r in counts
        ],
        resolved=any(r["incident"] == "summary_resolve" for r in head),
    )


async def closable(store: StateStore, *, now: float) -> list[Row]:
    """Summaries to resolve: the window has ended (nothing more can fold in) and every
    incident folded into them has settled. One that holds a page that never resolves
    by itself (a guard's or a circuit's) stays open for a human, as that page would."""
    settled = _SETTLED.format("(d.action = 'resolve' OR d.incident = 'new')")
    return await _read(
        store,
        "SELECT s.pager AS pager, s.dedup_key AS dedup_key FROM outbox s"
        " WHERE s.incident = 'summary' AND s.created_at <= ?"
        " AND NOT EXISTS (SELECT 1 FROM outbox r WHERE r.pager = s.pager"
        " AND r.dedup_key = s.dedup_key AND r.incident = 'summary_resolve')"
        " AND NOT EXISTS (SELECT 1 FROM outbox f WHERE f.folded_into = s.dedup_key"
        f" AND f.incident = 'fold' AND NOT {settled})",
        now - WINDOW,
    )


async def resolve_summary(
    store: StateStore, pager: str, key: str, *, now: float, event: dict[str, Any]
) -> bool:
    """Queue the summary's resolve, dropping re-sends not yet taken (a trigger after
    the resolve would open a new incident). Not while a re-send is in flight: the
    next sweep does it. True if queued."""
    async with _transaction(store) as conn:
        await _lock(store, conn, [pager])
        rows = await conn.fetch(
            "SELECT incident, state, claim_until FROM outbox WHERE pager = ? AND dedup_key = ?",
            pager,
            key,
        )
        if any(r["incident"] == "summary_resolve" for r in rows):
            return False
        if any(_in_flight(r, now) for r in rows):
            return False
        await conn.execute(
            "UPDATE outbox SET state = 'skipped', last_error = 'the summary resolved',"
            " claim_until = NULL WHERE pager = ? AND dedup_key = ? AND state = 'pending'",
            pager,
            key,
        )
        opening = (f"{key}#resolve", pager, "resolve", key, dumps(event), "pending", now, now)
        inserted = await _insert(conn, [(*opening, "summary_resolve", None, None)])
    await _durable(store, max(inserted.values(), default=None))
    return bool(inserted)


async def skip(store: StateStore, page_id: int, reason: str) -> None:
    """A queued page that must not be sent after all (a summary re-send after its
    summary resolved)."""
    async with store.backend.statement(durable=False) as conn:
        await conn.execute(
            "UPDATE outbox SET state = 'skipped', last_error = ?, claim_until = NULL WHERE id = ?",
            reason,
            page_id,
        )


async def _read(store: StateStore, sql: str, *args: Any) -> list[Row]:
    async with store.backend.read() as conn:
        rows: list[Row] = await conn.fetch(sql, *args)
        return rows
