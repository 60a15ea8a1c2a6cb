"""Every HTTP pager classifies answers alike: 2xx delivered, 429/5xx/network retry, 4xx reject."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import respx
from paging_samples import OG_KEY, OG_URL, PD_KEY, PD_URL, SLACK_URL, make_event

from remediator.paging import (
    Delivered,
    OpsgeniePager,
    PagerDutyPager,
    Rejected,
    RetryLater,
    SlackPager,
)
from remediator.paging.base import HttpPager, parse_retry_after

PEERS: dict[str, tuple[Callable[[], HttpPager], str]] = {
    "pagerduty": (lambda: PagerDutyPager(PD_KEY), PD_URL),
    "opsgenie": (lambda: OpsgeniePager(OG_KEY), f"{OG_URL}/v2/alerts"),
    "slack": (lambda: SlackPager(SLACK_URL), SLACK_URL),
}


@pytest.fixture(params=sorted(PEERS))
def peer(request: pytest.FixtureRequest, pagers: list[Any]) -> tuple[HttpPager, str]:
    make, url = PEERS[request.param]
    pager = make()
    pagers.append(pager)
    return pager, url


@pytest.mark.parametrize("status", [200, 202])
async def test_2xx_is_delivered(
    router: respx.MockRouter, peer: tuple[HttpPager, str], status: int
) -> None:
    pager, url = peer
    router.post(url).respond(status, text="ok")
    assert await pager.send(make_event()) == Delivered(status=status)


@pytest.mark.parametrize("status", [400, 403, 404, 410, 422])
async def test_4xx_is_rejected_with_the_status_and_peer_answer(
    router: respx.MockRouter, peer: tuple[HttpPager, str], status: int
) -> None:
    pager, url = peer
    router.post(url).respond(status, json={"message": "Event object is invalid"})
    result = await pager.send(make_event())
    assert isinstance(result, Rejected)
    assert result.status == status
    assert result.reason.startswith(f"{pager.name}: HTTP {status}")
    assert "Event object is invalid" in result.reason


async def test_429_with_retry_after_says_when(
    router: respx.MockRouter, peer: tuple[HttpPager, str]
) -> None:
    pager, url = peer
    router.post(url).respond(429, headers={"Retry-After": "30"}, text="rate_limited")
    result = await pager.send(make_event())
    assert isinstance(result, RetryLater)
    assert result.after == 30.0
    assert "HTTP 429" in result.reason


async def test_429_without_retry_after_leaves_backoff_to_the_outbox(
    router: respx.MockRouter, peer: tuple[HttpPager, str]
) -> None:
    pager, url = peer
    router.post(url).respond(429)
    result = await pager.send(make_event())
    assert isinstance(result, RetryLater)
    assert result.after is None


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_5xx_is_retried_later(
    router: respx.MockRouter, peer: tuple[HttpPager, str], status: int
) -> None:
    pager, url = peer
    router.post(url).respond(status, text="upstream down")
    result = await pager.send(make_event())
    assert isinstance(result, RetryLater)
    assert result.reason == f"{pager.name}: HTTP {status}: upstream down"


async def test_timeout_is_retried_later(
    router: respx.MockRouter, peer: tuple[HttpPager, str]
) -> None:
    pager, url = peer
    router.post(url).mock(side_effect=httpx.ReadTimeout("timed out"))
    result = await pager.send(make_event())
    assert result == RetryLater(reason=f"{pager.name}: timeout (ReadTimeout)")


async def test_connect_error_is_retried_later(
    router: respx.MockRouter, peer: tuple[HttpPager, str]
) -> None:
    pager, url = peer
    router.post(url).mock(side_effect=httpx.ConnectError("Connection refused"))
    result = await pager.send(make_event())
    assert result == RetryLater(reason=f"{pager.name}: ConnectError: Connection refused")


async def test_resolve_is_classified_the_same_way(
    router: respx.MockRouter, pagers: list[Any]
) -> None:
    pager = OpsgeniePager(OG_KEY)
    pagers.append(pager)
    router.post(url__startswith=f"{OG_URL}/v2/alerts/").respond(503)
    assert isinstance(await pager.send(make_event("resolve")), RetryLater)


async def test_a_pager_sends_once_and_never_retries_itself(
    router: respx.MockRouter, peer: tuple[HttpPager, str]
) -> None:
    pager, url = peer
    route = router.post(url).respond(503)
    await pager.send(make_event())
    assert route.call_count == 1


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("0", 0.0),
        ("2.5", 2.5),
        ("-5", 0.0),
        ("soon", None),
        ("nan", None),
        ("Sat, 28 Nov 2026 00:00:30 GMT", 30.0),
        ("Fri, 27 Nov 2026 23:00:00 GMT", 0.0),
    ],
)
def test_retry_after_accepts_seconds_and_http_dates(
    header: str | None, expected: float | None
) -> None:
    now = datetime(2026, 11, 28, 0, 0, 0, tzinfo=UTC)
    assert parse_retry_after(header, now=now) == expected
