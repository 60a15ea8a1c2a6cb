"""``doctor``'s pager checks: configured, reachable, credentials accepted, without
sending a page (``--test-page`` sends one P3, through the real pager).

A GET to PagerDuty's endpoint shows it answers. Opsgenie's ``/v2/account`` also
checks the API key. Slack's webhook gets an empty message (``{}``), which Slack
refuses with 400 without posting anything, while a revoked or mistyped webhook is
403, 404 or 410. Details never carry a URL or a key: the Slack URL is the secret.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import httpx

from remediator.paging.base import Delivered, PageContent, PageEvent, Pager

TIMEOUT = 5.0


@dataclass(frozen=True)
class PagerCheck:
    name: str
    ok: bool
    detail: str


async def _get(
    url: str, headers: dict[str, str] | None = None, *, empty_post: bool = False
) -> int | str:
    """The HTTP status, or why there was none (the exception's type only)."""
    try:
        async with httpx.AsyncClient(timeout=TIMEOUT, follow_redirects=False) as client:
            if empty_post:
                response = await client.post(url, json={})
            else:
                response = await client.get(url, headers=headers)
    except httpx.HTTPError as exc:
        return type(exc).__name__
    return response.status_code


async def pagerduty(url: str) -> PagerCheck:
    status = await _get(url)
    if isinstance(status, str):
        return PagerCheck("pagerduty", False, f"unreachable ({status}); no page sent")
    return PagerCheck(
        "pagerduty",
        True,
        f"events endpoint reachable (GET: HTTP {status}); the routing key is checked"
        " only by a page (--test-page)",
    )


async def slack(webhook_url: str, *, empty_message: bool = True) -> PagerCheck:
    """``empty_message``: POST ``{}`` and judge Slack's answer; otherwise only GET, and
    any HTTP answer counts (what Slack answers to a GET is not documented)."""
    status = await _get(webhook_url, empty_post=empty_message)
    if isinstance(status, str):
        return PagerCheck("slack", False, f"webhook unreachable ({status}); no page sent")
    if not empty_message:
        return PagerCheck("slack", True, f"webhook host answers (GET: HTTP {status})")
    if status in (401, 403, 404, 410):
        return PagerCheck(
            "slack", False, f"webhook refused (HTTP {status}): revoked or mistyped URL"
        )
    return PagerCheck(
        "slack", True, f"webhook answers (an empty message: HTTP {status}); no page sent"
    )


async def opsgenie(url: str, api_key: str) -> PagerCheck:
    status = await _get(f"{url.rstrip('/')}/v2/account", {"Authorization": f"GenieKey {api_key}"})
    if isinstance(status, str):
        return PagerCheck("opsgenie", False, f"unreachable ({status}); no page sent")
    if status in (401, 403):
        return PagerCheck("opsgenie", False, f"API key refused (HTTP {status})")
    if 200 <= status < 300:
        return PagerCheck("opsgenie", True, "API key accepted (GET /v2/account); no page sent")
    return PagerCheck("opsgenie", True, f"reachable (GET /v2/account: HTTP {status}); no page sent")


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
