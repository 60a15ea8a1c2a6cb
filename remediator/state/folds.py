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

from collections.abc import Callable, Container, Sequence
from dataclasses import dataclass, field
from typing import Any

from remediator.state.connection import Conn
from remediator.state.fold_rows import (
    COLUMNS,
    FOLDED,
    SUMMARY_ROWS,
    SUMMARY_SENDS,
    WINDOW,
    FoldStore,
    fetch_in,
    in_flight,
    insert_rows,
    lock_pagers,
    summary_key,
    transaction,
    wait_durable,
)
from remediator.state.fold_summaries import (
    SummaryStats,
    TopicCount,
    closable,
    resolve_summary,
    skip,
    summary_stats,
)
from remediator.state.store_base import dumps

__all__ = [
    "SUMMARY_SENDS",
    "WINDOW",
    "Enqueued",
    "Page",
    "SummaryStats",
    "TopicCount",
    "closable",
    "enqueue",
    "resolve_summary",
    "skip",
    "summary_key",
    "summary_stats",
]


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


async def _key_states(conn: Conn, pager: str, keys: Sequence[str]) -> dict[str, str | None]:
    """dedup key -> None (the pager has it open) or the summary it is folded into.
    Keys the pager has no incident for (never seen, or resolved) are absent."""
    rows = await fetch_in(
        conn,
        "SELECT dedup_key, action, incident, folded_into FROM outbox"
        " WHERE pager = ? AND dedup_key IN ({}) ORDER BY id",
        [pager],
        keys,
    )
    states: dict[str, str | None] = {}
    for r in rows:
        key = r["dedup_key"]
        if r["incident"] in SUMMARY_ROWS:
            continue
        if r["action"] == "resolve":
            states.pop(key, None)
        elif r["incident"] in FOLDED:
            states[key] = r["folded_into"]
        else:
            states[key] = None
    return states


async def enqueue(
    store: FoldStore,
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
    async with transaction(store) as conn:
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
        inserted = await insert_rows(conn, [r for plan in plans for r in plan.rows])
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
            inserted.update(await insert_rows(conn, openings))
    result.queued = len(inserted)
    result.idems = set(inserted)
    result.folded = {pager: n for pager, n in result.folded.items() if n}
    if touched:
        # Needs no lock (see _schedule_update), so it runs after the commit.
        async with transaction(store) as conn:
            for pager, key in touched:
                await _schedule_update(conn, pager, key, now, interval, summary_event)
    await wait_durable(store, max(inserted.values(), default=None))
    return result


async def _known(
    conn: Conn, pager: str, batch: list[Page]
) -> tuple[list[Page], dict[str, str | None]]:
    queued = await fetch_in(
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
    store: FoldStore, conn: Conn, pagers: list[str], now: float
) -> dict[str, tuple[int, str | None]]:
    """Under the pagers' locks: pager -> (new incidents in the last hour, the
    summary of the current window if any)."""
    if not pagers:
        return {}
    # Its own statement, after the lock: a statement reads what was committed
    # when it started.
    await lock_pagers(store, conn, pagers)
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
    rows: list[tuple[Any, ...]]  # in COLUMNS order
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
    if any(r["state"] == "pending" and not in_flight(r, now) for r in rows):
        return
    due = max([now] + [r["sent_at"] + interval for r in rows if r["sent_at"] is not None])
    if any(in_flight(r, now) for r in rows):
        due = max(due, now + interval)  # being sent now, with the counts before this
    await conn.execute(
        f"INSERT INTO outbox ({COLUMNS}) VALUES (?, ?, 'trigger', ?, ?, 'pending', ?, ?,"
        " 'summary_update', NULL, NULL) ON CONFLICT (idem) DO NOTHING",
        f"{key}#{len(rows)}",
        pager,
        key,
        dumps(summary_event(pager, key)),
        due,
        now,
    )
