"""Pages that do not flood: each pager opens at most ``max_pages_per_hour`` new
incidents in any rolling hour, counted in the state store across replicas; the rest
fold into one summary incident per pager and hour (real SQLite and Postgres stores,
capture pagers)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from paging_samples import make_content

from remediator.metrics import Metrics
from remediator.paging import CapturePager, PageContent, PageEvent
from remediator.paging.outbox import Outbox
from remediator.state.store import StateStore

FOLDED = "remediator/folded/"


@asynccontextmanager
async def replica(url: str, *, budget: int, owner: str = "r1") -> AsyncIterator[Outbox]:
    """One daemon's outbox: PagerDuty and Opsgenie take P0/P1, Slack P2/P3."""
    store = await StateStore.open(url)
    pagers = {
        "pagerduty": CapturePager("pagerduty", ("P0", "P1")),
        "opsgenie": CapturePager("opsgenie", ("P0", "P1")),
        "slack": CapturePager("slack", ("P2", "P3")),
    }
    outbox = Outbox(store, pagers, Metrics(), owner=owner, max_pages_per_hour=budget)
    try:
        yield outbox
    finally:
        await store.close()


def page(key: str, alertname: str = "IdorSpike", **kw: Any) -> PageContent:
    fields: dict[str, Any] = {
        "dedup_key": f"remediator/{key}",
        "severity": "P0",
        "title": f"[RB-06] {alertname}: {key}",
        "alertname": alertname,
        "runbook": "RB-06" if alertname == "IdorSpike" else "RB-05",
        "rule": "security-idor" if alertname == "IdorSpike" else "database-down",
    }
    return make_content(**{**fields, **kw})


def capture(outbox: Outbox, name: str = "pagerduty") -> CapturePager:
    pager = outbox.pagers[name]
    assert isinstance(pager, CapturePager)
    return pager


async def age(outbox: Outbox, seconds: float) -> None:
    """Move everything queued so far ``seconds`` into the past."""
    await outbox.store._execute(
        "UPDATE outbox SET created_at = created_at - ?, sent_at = sent_at - ?", seconds, seconds
    )


async def drain(*outboxes: Outbox) -> None:
    while sum([await o.deliver_due(500) for o in outboxes]):
        pass


def incidents(*pagers: CapturePager) -> set[str]:
    """Dedup keys the pager opened an incident for (no key is re-triggered after a
    resolve in these tests, so each distinct trigger key is one incident)."""
    return {e.content.dedup_key for p in pagers for e in p.triggers()}


def summaries(*pagers: CapturePager) -> list[PageEvent]:
    return [e for p in pagers for e in p.triggers() if e.content.dedup_key.startswith(FOLDED)]


def folded_total(outbox: Outbox, pager: str) -> float:
    value = outbox.metrics.registry.get_sample_value(
        "remediator_pages_folded_total", {"pager": pager}
    )
    return value or 0.0


async def test_a_flood_of_4000_idor_runs_and_40_flapping_database_downs_opens_at_most_budget_plus_one_incidents_per_pager(
    state_url: str,
) -> None:
    async with replica(state_url, budget=60) as outbox:
        started = time.monotonic()
        # One webhook of 4,000 IdorSpike alerts: each run pages first (own dedup key),
        # then again with what it did (same key: an update).
        for first in range(0, 4000, 500):
            keys = [f"idor-{i}" for i in range(first, first + 500)]
            await outbox.enqueue_many([(f"{k}:first", "trigger", page(k)) for k in keys])
            await outbox.enqueue_many([(f"{k}:trigger", "trigger", page(k)) for k in keys])
        # 40 DatabaseDown alerts; 20 of them flap: resolve, then fire again (a new
        # startsAt is a new run, so a new dedup key).
        for i in range(40):
            await outbox.enqueue(f"db-{i}:first", "trigger", page(f"db-{i}", "DatabaseDown"))
        for i in range(20):
            await outbox.enqueue(f"db-{i}:resolve", "resolve", page(f"db-{i}", "DatabaseDown"))
            await outbox.enqueue(f"db-{i}b:first", "trigger", page(f"db-{i}b", "DatabaseDown"))
        await drain(outbox)
        elapsed = time.monotonic() - started

        for name in ("pagerduty", "opsgenie"):
            pager = capture(outbox, name)
            opened = incidents(pager)
            assert len(opened) == 60 + 1, name
            [summary] = {e.content.dedup_key for e in summaries(pager)}
            assert summary.startswith(f"{FOLDED}{name}/")
            # The budget went to the first 60 IdorSpike runs; everything after folded.
            assert opened - {summary} == {f"remediator/idor-{i}" for i in range(60)}
            # Their updates went to the incidents they opened.
            assert len(pager.triggers()) == 60 * 2 + 1
            # Folded resolves never reach the pager (it never heard of those keys).
            assert pager.resolves() == []
            [sent] = summaries(pager)
            c = sent.content
            assert "4000 new incidents folded into this one" in c.title
            assert "IdorSpike 3940" in c.title and "DatabaseDown 60" in c.title
            assert any(
                s.startswith("IdorSpike (rule security-idor, runbook RB-06, P0): 3940 folded")
                for s in c.skipped
            )
            assert any(
                s.startswith("DatabaseDown (rule database-down, runbook RB-05, P0): 60 folded")
                and "20 resolved" in s
                for s in c.skipped
            )
            assert c.details["folded"] == 4000 and c.details["resolved"] == 20
            assert c.severity == "P0"
            assert folded_total(outbox, name) == 4000
        assert capture(outbox, "slack").sent == []  # P0 goes to neither's Slack budget
        assert elapsed < 60, f"4,000 runs' pages took {elapsed:.1f} s"


async def test_updates_and_resolves_of_an_open_incident_neither_count_nor_fold(
    state_url: str,
) -> None:
    async with replica(state_url, budget=3) as outbox:
        for k in ("a", "b", "c"):
            await outbox.enqueue(f"{k}:first", "trigger", page(k))
        for round_ in range(5):
            for k in ("a", "b", "c"):
                await outbox.enqueue(f"{k}:update:{round_}", "trigger", page(k))
        for k in ("a", "b"):
            await outbox.enqueue(f"{k}:resolve", "resolve", page(k))
        await drain(outbox)
        pager = capture(outbox, "pagerduty")
        assert len(pager.triggers()) == 3 + 15
        assert {e.content.dedup_key for e in pager.resolves()} == {"remediator/a", "remediator/b"}
        assert summaries(pager) == [] and folded_total(outbox, "pagerduty") == 0
        # The budget is spent for this hour even though two resolved: a fourth folds.
        await outbox.enqueue("d:first", "trigger", page("d"))
        await outbox.enqueue("c:update:late", "trigger", page("c"))  # still an update
        await drain(outbox)
        assert "remediator/d" not in incidents(pager)
        assert len(summaries(pager)) == 1
        assert len([e for e in pager.triggers() if e.content.dedup_key == "remediator/c"]) == 7
        assert folded_total(outbox, "pagerduty") == 1
        # A repeated enqueue (same idem: another replica, a retry) changes nothing.
        assert await outbox.enqueue("d:first", "trigger", page("d")) == 0
        assert folded_total(outbox, "pagerduty") == 1


async def test_a_trigger_after_its_resolve_is_a_new_incident_even_in_one_batch(
    state_url: str,
) -> None:
    """PagerDuty opens a new incident for a trigger after a resolve of its key."""
    async with replica(state_url, budget=1) as outbox:
        await outbox.enqueue("a:first", "trigger", page("a"))
        await outbox.enqueue_many(
            [("a:resolve", "resolve", page("a")), ("a:again", "trigger", page("a"))]
        )
        await drain(outbox)
        pager = capture(outbox)
        assert [e.action for e in pager.sent if e.content.dedup_key == "remediator/a"] == [
            "trigger",
            "resolve",
        ]
        assert len(summaries(pager)) == 1 and folded_total(outbox, "pagerduty") == 1


async def test_a_p0_whose_runbook_acted_always_opens_its_own_incident(state_url: str) -> None:
    async with replica(state_url, budget=2) as outbox:
        for k in ("a", "b"):
            await outbox.enqueue(f"{k}:first", "trigger", page(k))
        # Past the budget: a P0 that acted is its own incident; one that did not folds.
        await outbox.enqueue("acted:trigger", "trigger", page("acted", never_fold=True))
        await outbox.enqueue("quiet:trigger", "trigger", page("quiet"))
        # Paged first (folded, nothing done yet), then it acted: its own incident now.
        await outbox.enqueue("late:first", "trigger", page("late"))
        await outbox.enqueue("late:trigger", "trigger", page("late", never_fold=True))
        await outbox.enqueue("late:resolve", "resolve", page("late", never_fold=True))
        await drain(outbox)
        for name in ("pagerduty", "opsgenie"):
            pager = capture(outbox, name)
            opened = incidents(pager)
            assert {"remediator/acted", "remediator/late"} <= opened
            assert "remediator/quiet" not in opened
            # Its resolve goes to the incident it opened.
            assert [e.content.dedup_key for e in pager.resolves()] == ["remediator/late"]
            assert folded_total(outbox, name) == 2  # quiet, and late's first page
        # The summary says that one of what it held then paged on its own.
        await outbox.store._execute("UPDATE outbox SET next_attempt_at = 0")
        await outbox.enqueue("more:first", "trigger", page("more"))
        await outbox.store._execute("UPDATE outbox SET next_attempt_at = 0")
        await drain(outbox)
        last = summaries(capture(outbox))[-1].content
        assert "3 new incidents folded" in last.title
        assert any("1 then paged on their own" in s for s in last.skipped)


async def test_summary_updates_are_rate_limited(state_url: str) -> None:
    async with replica(state_url, budget=1) as outbox:
        await outbox.enqueue("a:first", "trigger", page("a"))
        await outbox.enqueue("b:first", "trigger", page("b"))  # opens the summary
        await drain(outbox)
        pager = capture(outbox)
        assert len(summaries(pager)) == 1
        for k in ("c", "d", "e", "f"):
            await outbox.enqueue(f"{k}:first", "trigger", page(k))
            await drain(outbox)
        # One re-send is queued, due a minute after the last send; none went yet.
        assert len(summaries(pager)) == 1
        rows = [
            r
            for r in await outbox.store.list_pages(1000)
            if r["dedup_key"].startswith(FOLDED) and r["pager"] == "pagerduty"
        ]
        waiting = [r for r in rows if r["state"] == "pending"]
        [sent] = [r for r in rows if r["state"] == "sent"]
        [due] = waiting
        assert due["next_attempt_at"] >= sent["sent_at"] + 59
        # When it is due, it carries every fold so far.
        await outbox.store._execute("UPDATE outbox SET next_attempt_at = 0")
        await drain(outbox)
        assert [s.content.details["folded"] for s in summaries(pager)] == [1, 5]


async def test_the_summary_resolves_only_after_its_hour_once_everything_in_it_resolved(
    state_url: str,
) -> None:
    async with replica(state_url, budget=1) as outbox:
        await outbox.enqueue("a:first", "trigger", page("a"))
        for k in ("b", "c"):
            await outbox.enqueue(f"{k}:first", "trigger", page(k))
        await drain(outbox)
        pager = capture(outbox)
        [summary] = {e.content.dedup_key for e in summaries(pager)}
        # A folded page's resolve does not resolve the summary early.
        await outbox.enqueue("b:resolve", "resolve", page("b"))
        assert await outbox.close_folds() == 0
        await outbox.enqueue("c:resolve", "resolve", page("c"))
        assert await outbox.close_folds() == 0  # all resolved, but its hour is not over
        await outbox.store._execute("UPDATE outbox SET next_attempt_at = 0")
        await drain(outbox)
        assert pager.resolves() == []
        assert summaries(pager)[-1].content.details["resolved"] == 2
        await age(outbox, 3601)
        assert await outbox.close_folds() == 2  # PagerDuty's and Opsgenie's
        assert await outbox.close_folds() == 0  # once
        await drain(outbox)
        [resolve] = pager.resolves()
        assert resolve.content.dedup_key == summary
        # The next flood opens a new summary (a trigger on the resolved key would
        # open a new incident under the old name).
        await outbox.enqueue("x:first", "trigger", page("x"))
        await outbox.enqueue("y:first", "trigger", page("y"))
        await drain(outbox)
        keys = {e.content.dedup_key for e in summaries(pager)}
        assert len(keys) == 2 and summary in keys


async def test_a_summary_holding_a_page_that_never_resolves_stays_open(state_url: str) -> None:
    async with replica(state_url, budget=1) as outbox:
        await outbox.enqueue("a:first", "trigger", page("a"))
        guard = page("guard/security-idor/rate_limit/1", alertname="IdorSpike")
        await outbox.enqueue("guard:1", "trigger", guard)  # guard pages never resolve
        await drain(outbox)
        await age(outbox, 7200)
        assert await outbox.close_folds() == 0
        await drain(outbox)
        assert capture(outbox).resolves() == []


async def test_the_budget_is_a_rolling_hour(state_url: str) -> None:
    async with replica(state_url, budget=2) as outbox:
        await outbox.enqueue("a:first", "trigger", page("a"))
        await age(outbox, 1800)
        await outbox.enqueue("b:first", "trigger", page("b"))
        await outbox.enqueue("c:first", "trigger", page("c"))  # folds
        await age(outbox, 1801)  # a is out of the last hour, b is not
        await outbox.enqueue("d:first", "trigger", page("d"))
        await outbox.enqueue("e:first", "trigger", page("e"))  # folds
        await drain(outbox)
        opened = incidents(capture(outbox))
        assert {"remediator/a", "remediator/b", "remediator/d"} <= opened
        assert not {"remediator/c", "remediator/e"} & opened
        assert folded_total(outbox, "pagerduty") == 2


async def test_each_pager_has_its_own_budget(state_url: str) -> None:
    async with replica(state_url, budget=2) as outbox:
        for i in range(5):
            await outbox.enqueue(f"p1-{i}", "trigger", page(f"p1-{i}", severity="P1"))
            await outbox.enqueue(f"p3-{i}", "trigger", page(f"p3-{i}", severity="P3"))
        await drain(outbox)
        for name in ("pagerduty", "opsgenie", "slack"):
            assert len(incidents(capture(outbox, name))) == 2 + 1, name
            assert folded_total(outbox, name) == 3
        [slack_summary] = summaries(capture(outbox, "slack"))
        assert slack_summary.content.severity == "P3"


async def test_two_replicas_on_one_postgres_stay_within_budget_plus_one(
    pg_schema_dsn: str,
) -> None:
    budget = 20
    async with (
        replica(pg_schema_dsn, budget=budget, owner="r1") as one,
        replica(pg_schema_dsn, budget=budget, owner="r2") as two,
    ):
        todo = list(range(200))

        async def worker(outbox: Outbox) -> None:
            # Like a daemon's runs: each worker pages for one run at a time.
            while todo:
                i = todo.pop()
                await outbox.enqueue(f"k{i}:first", "trigger", page(f"k{i}"))

        workers = [worker(o) for o in (one, two) for _ in range(8)]
        await asyncio.gather(*workers, drain(one), drain(two))
        await drain(one, two)
        for name in ("pagerduty", "opsgenie"):
            pagers = (capture(one, name), capture(two, name))
            opened = incidents(*pagers)
            assert len(opened) == budget + 1, name
            assert len({e.content.dedup_key for e in summaries(*pagers)}) == 1
            assert folded_total(one, name) + folded_total(two, name) == 200 - budget
            # Each page went out once, from one replica or the other.
            keys = [e.content.dedup_key for p in pagers for e in p.triggers()]
            own = [k for k in keys if not k.startswith(FOLDED)]
            assert len(own) == len(set(own)) == budget
