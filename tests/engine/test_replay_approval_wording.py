"""replay promises an approval only as the engine offers it: "if the run's own reads
find it needed" for an approval whose offer depends on what earlier steps found (a
precondition or the runbook's own withhold), and a plain "wait for approval" for one
whose only check is its own inputs (it is always offered on valid input)."""

from __future__ import annotations

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
