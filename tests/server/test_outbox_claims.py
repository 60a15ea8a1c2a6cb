"""A page whose claim was never released (the store failed between the send and its
record) goes out again on the owner's next pass, not after the claim's lease; another
replica still leaves a live claim alone. Both backends."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from remediator.state.store import StateStore


@pytest.fixture
async def store(state_url: str) -> AsyncIterator[StateStore]:
    s = await StateStore.open(state_url)
    try:
        yield s
    finally:
        await s.close()


async def test_an_owners_lost_release_does_not_hold_its_page_for_the_lease(
    store: StateStore,
) -> None:
    await store.enqueue_pages([("p1", "pagerduty", "trigger", "k1", {"summary": "x"})])
    first = await store.claim_pages("replica-a", 10, lease=60.0)
    assert [r["idem"] for r in first] == ["p1"]
    # No page_sent / page_retry: the connection died before the release.
    assert await store.claim_pages("replica-b", 10, lease=60.0) == []
    again = await store.claim_pages("replica-a", 10, lease=60.0)
    assert [r["idem"] for r in again] == ["p1"]
    assert again[0]["attempts"] == 2


async def test_a_released_page_waits_for_its_retry_time_whoever_claims(
    store: StateStore,
) -> None:
    await store.enqueue_pages([("p2", "pagerduty", "trigger", "k2", {"summary": "y"})])
    (row,) = await store.claim_pages("replica-a", 10, lease=60.0)
    await store.page_retry(row["id"], at=row["next_attempt_at"] + 3600, error="HTTP 500")
    assert await store.claim_pages("replica-a", 10, lease=60.0) == []
    assert await store.claim_pages("replica-b", 10, lease=60.0) == []


async def test_a_corrupt_page_row_is_failed_and_the_others_still_go_out(
    store: StateStore,
) -> None:
    """A row whose event is not JSON, or not a page event, fails alone (the outbox
    must never stop on one row); the typed record carries ``event=None`` for it."""
    from remediator.metrics import Metrics
    from remediator.paging.base import PageContent, PageEvent
    from remediator.paging.outbox import Outbox
    from remediator.testing import CapturePager

    good = PageEvent(
        action="trigger",
        content=PageContent(
            dedup_key="k-good",
            severity="P3",
            title="fine",
            alertname="A",
            runbook="-",
            rule="-",
            mode="live",
        ),
    )
    await store.enqueue_pages(
        [
            ("bad-json", "capture", "trigger", "k-bad", {"v": 1}),
            ("bad-shape", "capture", "trigger", "k-shape", {"v": 999}),
            ("good", "capture", "trigger", "k-good", good.to_json()),
        ]
    )
    async with store.backend.statement(durable=False) as c:
        await c.execute("UPDATE outbox SET event = ? WHERE idem = ?", "{not json", "bad-json")
    [corrupt] = [p for p in await store.list_pages() if p.idem == "bad-json"]
    assert corrupt.event is None
    pager = CapturePager()
    outbox = Outbox(store, {"capture": pager}, Metrics(), owner="t")
    await outbox.deliver_due()
    states = {p.idem: (p.state, p.last_error or "") for p in await store.list_pages()}
    assert states["good"] == ("sent", "")
    for idem in ("bad-json", "bad-shape"):
        assert states[idem][0] == "failed" and "unreadable event" in states[idem][1], states
    assert [e.content.title for e in pager.sent] == ["fine"]
