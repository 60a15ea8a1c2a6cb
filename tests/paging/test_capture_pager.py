"""CapturePager: records what it is sent and can answer failures on demand."""

from __future__ import annotations

import pytest
from paging_samples import make_event

from remediator.paging import CapturePager, Delivered, Pager, Rejected, RetryLater


async def test_records_every_event_in_order() -> None:
    pager: Pager = CapturePager()
    first, second = make_event("trigger"), make_event("resolve")
    assert await pager.send(first) == Delivered(status=202)
    assert await pager.send(second) == Delivered(status=202)
    assert isinstance(pager, CapturePager)
    assert pager.sent == [first, second]
    assert pager.triggers() == [first]
    assert pager.resolves() == [second]


async def test_fail_next_answers_retry_later_then_delivers() -> None:
    pager = CapturePager()
    pager.fail_next(2)
    event = make_event()
    results = [await pager.send(event) for _ in range(3)]
    assert [type(r) for r in results] == [RetryLater, RetryLater, Delivered]
    assert pager.sent == [event, event, event]
    assert pager.delivered == [event]


async def test_fail_next_can_reject() -> None:
    pager = CapturePager(name="pd-test")
    pager.fail_next(1, Rejected(status=400, reason="invalid event"))
    assert await pager.send(make_event()) == Rejected(status=400, reason="invalid event")
    assert pager.delivered == []
    assert await pager.send(make_event()) == Delivered(status=202)


def test_accepts_every_severity_by_default_or_the_given_ones() -> None:
    assert all(CapturePager().accepts(s) for s in ("P0", "P1", "P2", "P3"))
    notify = CapturePager(name="notify", severities=("P2", "P3"))
    assert [notify.accepts(s) for s in ("P0", "P1", "P2", "P3")] == [False, False, True, True]
    assert notify.name == "notify"


async def test_aclose_is_recorded_and_later_sends_fail_loudly() -> None:
    pager = CapturePager()
    await pager.aclose()
    assert pager.closed
    with pytest.raises(RuntimeError, match="after aclose"):
        await pager.send(make_event())


async def test_reset_forgets_everything() -> None:
    pager = CapturePager()
    pager.fail_next(3)
    await pager.send(make_event())
    pager.reset()
    assert pager.sent == [] and pager.delivered == []
    assert await pager.send(make_event()) == Delivered(status=202)
