"""`remediator replay`'s plan is what a live run executes, step by step, for every
example payload: the same runbook, the same steps in the same order and phase, the
same kind, mutation and approval, and the same rendered call.

Each example is delivered to the real engine in live mode (the Harness) against real
parts: a seeded DawsOS Postgres, FakeKubeAPI, moto in server mode, respx for the
providers and the app, real Redis. A resolved payload first has its firing twin
delivered, so there is a run to resolve and undo.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from remediator.engine import replay, rules
from remediator.models import WebhookPayload
from remediator.runbooks.yaml_runbooks import registry_for
from remediator.settings import from_mapping
from remediator.testing import Harness
from tests.runbooks import _plan_exec_support as support
from tests.runbooks import _rb0406_fixtures as fx46

EXAMPLES = sorted(p.name for p in support.EXAMPLES.glob("*.json"))


@pytest.fixture(scope="module")
def moto_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with fx46.aws_environment(tmp_path_factory.mktemp("aws")), fx46.moto_endpoint() as url:
        support.aws_resources(url)
        yield url


def test_every_example_is_here() -> None:
    assert len(EXAMPLES) == 26
    assert {n.replace("-resolved", "-firing") for n in EXAMPLES} <= set(EXAMPLES)


def test_each_step_left_to_the_run_is_a_real_step_the_plan_leaves_open() -> None:
    """The short list of calls checked as "filled" rather than equal stays honest: each
    names a step some example plans, with a <placeholder> in its planned call."""
    registry, _ = registry_for(None)
    ruleset, errors = rules.load(Path(support.ROOT / "rules"), registry)
    assert ruleset is not None, errors
    settings = from_mapping({"targets": {"database": "postgresql://x/db"}}, env={})
    calls: dict[tuple[str, str], list[str]] = {}
    undo_calls: dict[tuple[str, str], list[str]] = {}
    for name in EXAMPLES:
        payload = WebhookPayload.model_validate_json((support.EXAMPLES / name).read_bytes())
        for entry in replay.plan(payload, ruleset, registry, settings):
            for run in entry["runs"]:
                for step in run["steps"]:
                    key = (run["runbook"], step["name"])
                    calls.setdefault(key, []).append(step["call"])
                    if step.get("phase") == "undo":
                        undo_calls.setdefault(key, []).append(step["call"])
    for key in [*support.FILLED_AT_RUN_TIME, *support.ONE_LINE_EACH]:
        assert key in calls, key
        assert all(support.PLACEHOLDER.search(call) for call in calls[key]), key
    for key in support.UNDO_FILLED_AT_RUN_TIME:
        assert key in undo_calls, key
        assert all(support.PLACEHOLDER.search(call) for call in undo_calls[key]), key


@pytest.mark.parametrize("example", EXAMPLES)
async def test_the_plan_is_what_the_engine_runs(
    example: str, request: pytest.FixtureRequest, moto_url: str
) -> None:
    path = support.EXAMPLES / example
    payload = WebhookPayload.model_validate_json(path.read_bytes())
    resolved = payload.status == "resolved"
    registry, errors = registry_for(None)
    assert not errors
    async with (
        support.world(request.config, moto_url) as w,
        Harness(
            registry, support.rules_text(), clients=w.clients, settings={"targets": w.targets}
        ) as h,
    ):
        [entry] = replay.plan(payload, h.ruleset, registry, w.settings)
        [planned_run] = entry["runs"]
        twin = Path(str(path).replace("-resolved", "-firing"))
        await support.fire(w, h, support.alerts_of(twin))
        if resolved:
            # An operator approved everything offered: what those steps changed is
            # undone too, before the rest (the latest change first).
            [fired] = await h.runs()
            for approval in await h.approvals(fired["id"]):
                await h.approve(approval.id)
            await h.deliver(*support.alerts_of(path))
        [run] = await h.runs()
        all_rows = await h.steps(run["id"])
    rows = support.recorded_steps(all_rows, resolved)
    assert run["runbook"] == planned_run["runbook"]
    assert run["target"] == planned_run["target"]
    planned = support.undone(support.planned_steps(planned_run), all_rows)
    assert [(r.name, r.phase) for r in rows] == [(p.name, p.phase) for p in planned]
    diffs = support.differences(run["runbook"], planned, rows)
    assert not diffs, "\n".join(diffs)
