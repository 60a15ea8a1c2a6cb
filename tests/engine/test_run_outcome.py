"""How a run ends: the pure decision, and the runs that reach it on real state."""

from __future__ import annotations

import pytest

from remediator import metrics
from remediator.engine import outcome
from remediator.engine.outcome import StepResult, run_outcome
from remediator.runbook_api.context import Clients
from remediator.runbook_api.steps import NotConfigured
from remediator.testing import Harness, make_alert
from tests.engine import _testbook

APPLIED = StepResult("applied", mutates=True)
READ = StepResult("applied", mutates=False)
FAILED = StepResult("failed", mutates=True)
PENDING = StepResult("awaiting_approval", mutates=True)
NOT_CONFIGURED = StepResult("skipped", mutates=True)
PLANNED = StepResult("dry_run", mutates=True)


@pytest.mark.parametrize(
    ("mode", "steps", "expected"),
    [
        ("live", [READ, APPLIED], "mitigated"),
        ("live", [READ, APPLIED, NOT_CONFIGURED], "mitigated"),  # an unset optional target
        ("live", [READ, NOT_CONFIGURED], "mitigated"),
        ("live", [APPLIED, FAILED], "partial"),
        ("live", [APPLIED, PENDING], "partial"),
        ("live", [READ, PENDING], "partial"),
        ("live", [READ, FAILED], "failed"),
        ("live", [FAILED, PENDING], "failed"),
        ("dry-run", [READ, PLANNED, PENDING], "planned"),
        ("dry-run", [FAILED], "planned"),  # a dry run never fails
        ("paused", [READ, PLANNED], "planned"),
    ],
)
def test_run_outcome(mode: str, steps: list[StepResult], expected: str) -> None:
    assert run_outcome(mode, steps) == expected


def test_the_metric_primes_exactly_the_run_outcomes() -> None:
    assert set(metrics.RUN_OUTCOMES) == set(outcome.RUN_OUTCOMES)


def test_an_unset_cache_names_its_config_key() -> None:
    with pytest.raises(NotConfigured, match=r"^not configured: targets\.redis is not set$"):
        Clients().need_cache()


async def test_a_step_whose_target_is_not_configured_is_skipped_not_failed() -> None:
    async with Harness(_testbook.registry(), _testbook.rules(), clients=Clients()) as h:
        await h.deliver(make_alert("TestAlert", {"service": "checkout"}))
        [run] = await h.runs()
        steps = {s["name"]: s for s in await h.steps(run["id"])}
        for name in ("look", "throttle", "second"):
            assert steps[name]["outcome"] == "skipped", steps[name]
            assert steps[name]["reason"] == "not configured: targets.database is not set"
        assert run["outcome"] == "partial"  # the approval still waits for a human
        [page] = h.pager.triggers()
        assert "Read the knobs: not configured: targets.database is not set" in page.content.skipped
        sample = h.metrics.registry.get_sample_value
        labels = {"runbook": "RB-T", "action": "look", "outcome": "failed"}
        assert not sample("remediator_actions_total", labels)


async def test_a_dry_run_is_planned_never_failed(clients: Clients) -> None:
    async with Harness(
        _testbook.registry(),
        _testbook.rules(),
        clients=clients,
        settings={"mode": "dry-run"},
    ) as h:
        await h.deliver(make_alert("TestAlert", {"service": "checkout"}))
        [run] = await h.runs()
        assert run["outcome"] == "planned"
        sample = h.metrics.registry.get_sample_value
        assert (
            sample("remediator_runbook_runs_total", {"runbook": "RB-T", "outcome": "planned"}) == 1
        )
        assert not sample("remediator_runbook_runs_total", {"runbook": "RB-T", "outcome": "failed"})
