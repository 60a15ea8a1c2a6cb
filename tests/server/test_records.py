"""The store hands out typed records, not dict rows: a step as recorded is the step
as read back, JSON columns decoded; an approval's fields are typed and its JSON form
keeps the column names; a run is one frozen record whichever read returns it. On
both backends."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator

import pytest

from remediator.state.records import Approval, Run, StepRecord
from remediator.state.store import StateStore
from tests.server.test_hand_over import run_row


@pytest.fixture
async def store(state_url: str) -> AsyncIterator[StateStore]:
    s = await StateStore.open(state_url)
    try:
        assert await s.create_run(run_row("r1"))
        yield s
    finally:
        await s.close()


async def test_a_recorded_step_is_the_step_read_back(store: StateStore) -> None:
    now = time.time()
    recorded = await store.record_step(
        {
            "run_id": "r1", "phase": "fire", "seq": 0, "name": "scale", "kind": "mitigate",
            "mutates": True, "approval": "auto", "state": "done", "outcome": "applied",
            "rendered": "scale(x)", "result": {"summary": "scaled", "data": {"n": 2}},
            "changes": {"previous": 3}, "reason": None, "started_at": now, "finished_at": now,
        }
    )  # fmt: skip
    [read] = await store.steps_for_run("r1")
    assert isinstance(read, StepRecord)
    assert read == recorded
    assert (read.outcome, read.mutates, read.changes) == ("applied", True, {"previous": 3})
    assert (read.summary, read.data) == ("scaled", {"n": 2})
    # Recording it again (an update) keeps its id.
    again = await store.record_step({**read.to_row(), "attempts": 2})
    assert again.id == read.id and again.attempts == 2


async def test_an_approval_is_typed_and_its_json_keeps_the_columns(store: StateStore) -> None:
    approval_id = await store.create_approval("r1", "scale", time.time() + 60)
    approval = await store.get_approval(approval_id)
    assert isinstance(approval, Approval)
    assert (approval.id, approval.run_id, approval.step, approval.state) == (
        approval_id, "r1", "scale", "pending",
    )  # fmt: skip
    assert await store.decide_approval(approval_id, "approved", "alice")
    [claimed] = await store.claim_approved()
    assert (claimed.id, claimed.state) == (approval_id, "executing")
    as_json = claimed.to_json()
    assert list(as_json) == [
        "id", "run_id", "step", "state", "requested_at", "expires_at",
        "decided_by", "decided_at", "slack_nonce", "slack_nonce_used_at",
    ]  # fmt: skip
    assert as_json["decided_by"] == "alice" and claimed["state"] == "executing"


async def test_a_run_is_a_frozen_record_with_its_json_decoded(store: StateStore) -> None:
    alert = {
        "labels": {"service": "api"}, "annotations": {"summary": "s"},
        "generator_url": "http://prom/graph", "source": "grafana", "grafana": {"values": {}},
    }  # fmt: skip
    assert await store.create_run({**run_row("r2"), "alert": alert, "params": {"replicas": 3}})
    run = await store.get_run("r2")
    assert isinstance(run, Run)
    assert (run.id, run.state, run.mode, run.severity) == ("r2", "running", "live", "P2")
    assert (run.alert, run.params) == (alert, {"replicas": 3})
    assert (run.labels, run.annotations) == ({"service": "api"}, {"summary": "s"})
    assert (run.generator_url, run.source) == ("http://prom/graph", "grafana")
    # The columns the insert left empty read back as None, typed.
    assert (run.outcome, run.blocked_by, run.undo_state, run.undo_reason) == (None,) * 4
    assert (run.mitigated_at, run.verify_at, run.escalated_at, run.retry_at) == (None,) * 4
    assert isinstance(run.created_at, float) and isinstance(run.lease_until, float)
    with pytest.raises(dataclasses.FrozenInstanceError):
        run.state = "done"  # type: ignore[misc]
    # Every read of runs gives the same record: by alert, listed, handed over.
    [by_alert] = await store.runs_for_alert("r2", run.starts_at)
    assert by_alert == run
    assert run in await store.list_runs(10)
    current = await store.hand_over_run("r2", "me", "mitigated", mitigated_at=12.5)
    assert current == dataclasses.replace(
        run, state="waiting", outcome="mitigated", mitigated_at=12.5,
        updated_at=current.updated_at if current else 0.0,
    )  # fmt: skip
    assert current is not None and current["state"] == "waiting"  # by column name too
    assert await store.request_undo("r2", time.time())
    [waiting] = await store.runs_waiting_undo()
    assert (waiting.id, waiting.undo_state, waiting.undo_reason) == ("r2", "requested", "resolved")
