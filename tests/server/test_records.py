"""The store hands out typed records, not dict rows: a step as recorded is the step
as read back, JSON columns decoded; an approval's fields are typed and its JSON form
keeps the column names. On both backends."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest

from remediator.state.records import Approval, StepRecord
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
