"""Pagers: PagerDuty Events v2, Opsgenie, Slack (and a capture pager for tests).

Each one turns a stored ``PageEvent`` into one HTTP call and classifies the answer as
``Delivered``, ``RetryLater`` or ``Rejected``. None of them retries: the outbox does.
"""

from __future__ import annotations

from remediator.paging.base import (
    Delivered,
    DeliveryResult,
    EventAction,
    PageContent,
    PageEvent,
    Pager,
    Rejected,
    RetryLater,
    Severity,
)
from remediator.paging.capture import CapturePager
from remediator.paging.opsgenie import OpsgeniePager
from remediator.paging.pagerduty import PagerDutyPager
from remediator.paging.slack import SlackPager

__all__ = [
    "CapturePager",
    "Delivered",
    "DeliveryResult",
    "EventAction",
    "OpsgeniePager",
    "PageContent",
    "PageEvent",
    "Pager",
    "PagerDutyPager",
    "Rejected",
    "RetryLater",
    "Severity",
    "SlackPager",
]
