"""``doctor``'s pager checks: reachable, credentials accepted, without sending a page
(``--test-page`` goes through the real pagers instead: ``remediator/doctor/pages.py``).

A GET to PagerDuty's endpoint shows it answers. Opsgenie's ``/v2/account`` also
checks the API key. Slack's webhook gets an empty message (``{}``), which Slack
refuses with 400 without posting anything, while a revoked or mistyped webhook is
403, 404 or 410. Details never carry a URL or a key: the Slack URL is the secret.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

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
