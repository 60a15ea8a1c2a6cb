"""Pager checks that go through the real pager code: the Slack bot's token
(``auth.test``, which posts nothing) and ``--test-page`` (one P3 through each pager
that takes P3)."""

from __future__ import annotations

from datetime import UTC, datetime

from remediator.clients.pager_probe import PagerCheck
from remediator.paging.base import Delivered, PageContent, PageEvent, Pager
from remediator.paging.slack_api import SlackWebApi


async def slack_bot(token: str, api_url: str) -> PagerCheck:
    api = SlackWebApi(token, api_url, timeout=5.0)
    try:
        answer = await api.call("auth.test", {})
    finally:
        await api.aclose()
    if isinstance(answer.result, Delivered):
        return PagerCheck("slack", True, "bot token accepted (auth.test); no page sent")
    if answer.error is not None:
        return PagerCheck("slack", False, f"bot token refused by Slack ({answer.error})")
    return PagerCheck("slack", False, f"Slack Web API unreachable: {answer.result.reason}")


def doctor_page() -> PageContent:
    when = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return PageContent(
        dedup_key=f"remediator/doctor-test-{when}",
        severity="P3",
        title=f"remediator doctor: test page ({when}); nothing to do",
        alertname="RemediatorDoctorTestPage",
        runbook="-",
        rule="-",
        mode="live",
        left_for_human=("nothing: this P3 was sent by `remediator doctor --test-page`",),
    )


async def send_test_page(pager: Pager, content: PageContent) -> tuple[bool, str]:
    """One P3 trigger through the real pager: (delivered, what happened)."""
    result = await pager.send(PageEvent(action="trigger", content=content))
    if isinstance(result, Delivered):
        return True, f"test page (P3) delivered (HTTP {result.status})"
    return False, f"test page (P3) not delivered: {result.reason}"
