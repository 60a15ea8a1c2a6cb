"""``doctor --test-page``: one P3 through each real pager that takes P3."""

from __future__ import annotations

from datetime import UTC, datetime

from remediator.paging.base import Delivered, PageContent, PageEvent, Pager


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
