"""replay says what each step would do as the engine would record it: an approval is
promised "if the run's own reads find it needed" only where its offer depends on what
earlier steps found (a precondition or the runbook's own withhold), and plainly where
its only check is its own inputs; a step whose target is not configured is planned as
skipped, "not configured: targets.X" (a corroborating read as not corroborated),
never as "run"."""

from __future__ import annotations

import json
from pathlib import Path

from remediator.engine import replay, rules
from remediator.models import WebhookPayload
from remediator.runbooks.yaml_runbooks import registry_for
from remediator.settings import from_mapping

ROOT = Path(__file__).resolve().parents[2]
CONDITIONAL = "wait for approval, if the run's own reads find it needed"


def _steps(example: str) -> dict[str, str]:
    registry, _ = registry_for(None)
    ruleset, errors = rules.load(ROOT / "rules", registry)
    assert ruleset is not None, errors
    settings = from_mapping(
        {
            "targets": {
                "database": "postgresql://x/db",
                "kubernetes": {"namespace": "dawsos"},
                "aws": {"region": "us-east-1"},
            }
        },
        env={},
    )
    payload = WebhookPayload.model_validate_json(
        (ROOT / "remediator/examples" / example).read_bytes()
    )
    return {
        step["name"]: step["would"]
        for entry in replay.plan(payload, ruleset, registry, settings)
        for run in entry["runs"]
        for step in run["steps"]
    }


def test_input_checked_approvals_are_promised_plainly() -> None:
    steps = _steps("DatabaseDown-firing.json")
    assert steps["failover"] == "wait for approval"
    assert steps["point_in_time_restore"] == "wait for approval"


def test_approvals_that_depend_on_the_runs_reads_say_so() -> None:
    steps = _steps("PricingPackNotReady-firing.json")
    assert steps["kill_stuck"] == CONDITIONAL


def _would(
    example: str, targets: dict[str, object], runbooks: Path | None = None
) -> dict[str, str]:
    registry, errors = registry_for(runbooks)
    assert not errors
    rules_path = ROOT / "runbooks/examples/rules" if runbooks else ROOT / "rules"
    ruleset, errors = rules.load(rules_path, registry)
    assert ruleset is not None, errors
    settings = from_mapping({"targets": targets}, env={})
    payload = WebhookPayload.model_validate_json(example)
    return {
        step["name"]: step["would"]
        for entry in replay.plan(payload, ruleset, registry, settings)
        for run in entry["runs"]
        for step in run["steps"]
    }


def test_a_step_whose_target_is_not_configured_is_planned_as_the_run_records_it() -> None:
    """A run records a step whose client is not configured as skipped, 'not configured:
    targets.X'; the plan says so too instead of promising it runs."""
    example = (ROOT / "remediator/examples/PricingPackBuildSlow-firing.json").read_text()
    steps = _would(example, {"database": "postgresql://x/db"})
    assert steps["scheduler_logs"] == "skip: not configured: targets.kubernetes"
    assert steps["provider_health"] == "skip: not configured: targets.http"
    assert steps["recent_packs"] == "run"
    assert steps["rerun_build"] == "skip: not configured: targets.kubernetes"


def test_a_corroborating_read_without_its_target_is_planned_as_not_corroborated() -> None:
    payload = {
        "version": "4",
        "status": "firing",
        "receiver": "remediator",
        "groupKey": "{}:{}",
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://am",
        "alerts": [
            {
                "status": "firing",
                "labels": {
                    "alertname": "WorkerQueueBacklog",
                    "deployment": "mailer",
                    "queue": "emails",
                },
                "annotations": {},
                "startsAt": "2026-11-28T00:20:04Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prom",
                "fingerprint": "0123456789abcdef",
            }
        ],
    }
    steps = _would(
        json.dumps(payload),
        {"kubernetes": {"mode": "in-cluster", "namespace": "apps"}},
        ROOT / "runbooks/examples",
    )
    assert steps["backlog"] == (
        "not corroborated: needs targets.database; nothing after it changes"
    )
    assert steps["restart_worker"].startswith("run")
