"""A target's Retry-After is honoured by step retries, within a cap.

A throttled Kubernetes or AWS call carries ``retry_after`` (TargetThrottled); the
engine's exponential backoff alone would retry at once and be throttled again.
"""

from __future__ import annotations

import time

import pytest

from remediator.engine import runner
from remediator.errors import TargetThrottled
from remediator.runbook_api.context import StepContext
from remediator.runbook_api.registry import Registry
from remediator.runbook_api.steps import Done, Runbook, Step, describe
from remediator.testing import Harness, make_alert

RULES = """
rules:
  - name: throttled
    matchers: ['alertname="Throttled"']
    runbook: RB-THROTTLE
"""


def _registry(asked: float, tries: list[float]) -> Registry:
    async def look(*, ctx: StepContext, **_: object) -> Done:
        tries.append(time.monotonic())
        if len(tries) == 1:
            raise TargetThrottled("kubernetes", "HTTP 429 Too Many Requests", retry_after=asked)
        return Done("read after the throttle")

    registry = Registry()
    registry.register(
        Runbook(
            id="RB-THROTTLE",
            title="Throttled read",
            severity="P3",
            steps=(
                Step("look", "diagnose", "Read", look, describe("GET"), attempts=3, backoff=0.01),
            ),
        )
    )
    return registry


async def test_the_next_attempt_waits_at_least_what_the_target_asked() -> None:
    tries: list[float] = []
    async with Harness(_registry(0.6, tries), RULES) as h:
        await h.deliver(make_alert("Throttled"))
        [run] = await h.runs()
        [step] = await h.steps(run["id"])
    assert step.outcome == "applied" and step.attempts == 2
    assert len(tries) == 2
    # A lower bound only: the wait can be longer on a busy machine, never shorter.
    assert tries[1] - tries[0] >= 0.55


async def test_a_long_retry_after_is_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner, "MAX_RETRY_AFTER", 0.3)
    tries: list[float] = []
    async with Harness(_registry(3600.0, tries), RULES) as h:
        await h.deliver(make_alert("Throttled"))
        [run] = await h.runs()
        [step] = await h.steps(run["id"])
    assert step.outcome == "applied" and len(tries) == 2
    assert 0.25 <= tries[1] - tries[0] < 30  # the cap, not an hour
