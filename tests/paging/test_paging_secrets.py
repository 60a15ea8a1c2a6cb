"""Routing key, API key and the Slack webhook URL never leak: repr, reasons, logs, errors."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest
import respx
from paging_samples import OG_KEY, OG_URL, PD_KEY, PD_URL, SLACK_URL, make_event

from remediator.errors import ConfigError
from remediator.paging import OpsgeniePager, PagerDutyPager, SlackPager
from remediator.paging.base import HttpPager

SLACK_TOKEN = SLACK_URL.rsplit("/", 1)[-1]
SLACK_PATH = SLACK_URL.removeprefix("https://hooks.slack.com")

CASES = [
    ("pagerduty", lambda: PagerDutyPager(PD_KEY), PD_URL, [PD_KEY]),
    ("opsgenie", lambda: OpsgeniePager(OG_KEY), f"{OG_URL}/v2/alerts", [OG_KEY]),
    ("slack", lambda: SlackPager(SLACK_URL), SLACK_URL, [SLACK_URL, SLACK_PATH, SLACK_TOKEN]),
]


@pytest.fixture(params=CASES, ids=[c[0] for c in CASES])
def case(request: pytest.FixtureRequest, pagers: list[Any]) -> tuple[HttpPager, str, list[str]]:
    _, make, url, secrets = request.param
    pager = make()
    pagers.append(pager)
    return pager, url, secrets


def assert_hidden(text: str, secrets: list[str]) -> None:
    for secret in secrets:
        assert secret not in text


def test_repr_and_str_hide_the_secret(case: tuple[HttpPager, str, list[str]]) -> None:
    pager, _, secrets = case
    assert_hidden(repr(pager), secrets)
    assert_hidden(str(pager), secrets)
    assert repr(pager).lower().startswith(pager.name)


async def test_a_peer_that_echoes_the_request_does_not_leak_it_into_the_reason(
    router: respx.MockRouter, case: tuple[HttpPager, str, list[str]]
) -> None:
    pager, url, secrets = case

    def echo(request: httpx.Request) -> httpx.Response:
        # The worst peer: its error text repeats the URL, the headers and the body.
        seen = f"{request.url} {request.headers.get('authorization')} {request.content.decode()}"
        return httpx.Response(400, text=seen)

    router.post(url).mock(side_effect=echo)
    result = await pager.send(make_event())
    reason = getattr(result, "reason", "")
    assert "***" in reason  # the echo did contain the secret, and it was replaced
    assert_hidden(reason, secrets)


async def test_a_transport_error_naming_the_url_does_not_leak_it(
    router: respx.MockRouter, case: tuple[HttpPager, str, list[str]]
) -> None:
    pager, url, secrets = case
    router.post(url).mock(
        side_effect=httpx.ConnectError(f"cannot reach {url} ({secrets[0]}) {secrets[-1]}")
    )
    result = await pager.send(make_event())
    reason = getattr(result, "reason", "")
    assert reason.startswith(f"{pager.name}: ConnectError: cannot reach")
    assert_hidden(reason, secrets)


async def test_httpx_request_log_lines_do_not_show_the_secret(
    router: respx.MockRouter,
    case: tuple[HttpPager, str, list[str]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    pager, url, secrets = case
    router.post(url).respond(200)
    with caplog.at_level(logging.INFO, logger="httpx"):
        await pager.send(make_event())
    lines = [r.getMessage() for r in caplog.records if r.name == "httpx"]
    assert lines and all("HTTP Request: POST" in line for line in lines)
    assert_hidden("\n".join(lines) + caplog.text, secrets)


def test_a_bad_slack_url_is_refused_without_showing_it() -> None:
    bad = "hooks.slack.com/services/T0/B0/NoSchemeSecretToken"
    with pytest.raises(ConfigError) as info:
        SlackPager(bad)
    assert "NoSchemeSecretToken" not in str(info.value)
    assert "pagers.slack.webhook_url" in str(info.value)
