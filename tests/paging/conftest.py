"""Fixtures for the pagers: respx standing in for the peers, pagers closed after use."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import respx
from paging_samples import OG_KEY, PD_KEY, SLACK_URL

from remediator.paging import OpsgeniePager, PagerDutyPager, SlackPager


@pytest.fixture
def router() -> Iterator[respx.MockRouter]:
    # Every request must hit a declared route: nothing ever leaves the machine.
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as r:
        yield r


@pytest.fixture
async def pagers() -> AsyncIterator[list[Any]]:
    """Pagers created by a test are closed afterwards (each owns its client)."""
    made: list[Any] = []
    yield made
    for p in made:
        await p.aclose()


@pytest.fixture
def pagerduty(pagers: list[Any]) -> PagerDutyPager:
    p = PagerDutyPager(PD_KEY)
    pagers.append(p)
    return p


@pytest.fixture
def opsgenie(pagers: list[Any]) -> OpsgeniePager:
    p = OpsgeniePager(OG_KEY)
    pagers.append(p)
    return p


@pytest.fixture
def slack(pagers: list[Any]) -> SlackPager:
    p = SlackPager(SLACK_URL)
    pagers.append(p)
    return p
