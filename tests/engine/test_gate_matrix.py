"""The kill switch binds every path that can mutate: the in-process cells.

Each test is one cell of (path that mutates) x (kill switch set before, or during,
the run), on the real engine with a real Postgres state store and a real Postgres
target. In every cell nothing in the target changes while paused, and the deferred
work runs once after ``resume``. The crash cells (kill -9, a replica frozen past its
lease) run real processes in tests/reliability/test_gate_crash.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Iterator

import pytest

from remediator.clients.database import TargetDatabase
from remediator.runbook_api.context import Clients
from remediator.testing import Harness, make_alert, resolved
from tests.engine import _testbook
from tests.engine.conftest import calls, knobs

ALERT = make_alert("TestAlert", {"service": "checkout", "severity": "page"})
UNTOUCHED = {"throttle": 0, "replicas": 3, "other": 7}


def _rules(**params: str) -> str:
    body = ", ".join(f"{k}: {v}" for k, v in params.items())
    return _testbook.rules(params="{" + body + "}") if params else _testbook.rules()


@pytest.fixture(autouse=True)
def _fresh_holds() -> Iterator[None]:
    """The testbook's holds are module state: other tests wait on GATE being empty."""
    yield
    for event in _testbook.GATE.values():
        event.set()
    _testbook.GATE.clear()
    _testbook.REACHED.clear()
    _testbook.ATTEMPTS.clear()
    _testbook.REACHED_SECOND.clear()


@pytest.fixture
async def harness(
    clients: Clients, pg_schema_dsn: str, request: pytest.FixtureRequest
) -> AsyncIterator[Harness]:
    marker = request.node.get_closest_marker("rules")
    rules = marker.args[0] if marker else _testbook.rules()
    async with Harness(_testbook.registry(), rules, clients=clients, state_url=pg_schema_dsn) as h:
        yield h


async def _reached(key: str) -> None:
    event = _testbook.REACHED.setdefault(key, asyncio.Event())
    await asyncio.wait_for(event.wait(), 10)


def _release(key: str) -> None:
    _testbook.GATE.setdefault(key, asyncio.Event()).set()


async def _only_run(h: Harness) -> dict[str, object]:
    [run] = await h.runs()
    return run


async def _resume(h: Harness) -> None:
    await h.engine.set_paused(False, "alice")
    await h.maintenance()


async def _background(coro: Awaitable[object]) -> asyncio.Task[object]:
    task: asyncio.Task[object] = asyncio.ensure_future(coro)
    await asyncio.sleep(0)
    return task


# ---------------------------------------------------------------- first run


async def test_first_run_paused_before_parks_and_runs_after_resume(
    harness: Harness, target_db: TargetDatabase
) -> None:
    await harness.engine.set_paused(True, "alice")
    await harness.deliver(ALERT)
    assert (await _only_run(harness))["state"] == "parked"
    assert await knobs(target_db) == UNTOUCHED
    await _resume(harness)
    assert (await knobs(target_db))["throttle"] == 1
    assert (await calls(target_db)).count("throttle") == 1


@pytest.mark.rules(_rules(hang_look="true"))
async def test_first_run_paused_during_its_diagnosis_does_not_mutate(
    harness: Harness, target_db: TargetDatabase
) -> None:
    task = await _background(harness.deliver(ALERT))
    run_id = await _running_run_id(harness)
    await _reached(f"{run_id}:look")
    await harness.engine.set_paused(True, "alice")
    _release(f"{run_id}:look")
    await task
    assert (await _only_run(harness))["state"] == "parked"
    assert await knobs(target_db) == UNTOUCHED
    await _resume(harness)
    assert (await knobs(target_db))["throttle"] == 1
    assert (await calls(target_db)).count("throttle") == 1


async def _running_run_id(h: Harness) -> str:
    for _ in range(200):
        runs = await h.runs()
        if runs:
            return str(runs[0]["id"])
        await asyncio.sleep(0.02)
    raise AssertionError("no run was created")


# -------------------------------------------------------------------- retry


@pytest.mark.rules(_rules(flaky_throttle="true"))
async def test_a_retry_after_the_pause_is_deferred_not_attempted(
    harness: Harness, target_db: TargetDatabase
) -> None:
    task = await _background(harness.deliver(ALERT))
    run_id = await _running_run_id(harness)
    await _reached(f"{run_id}:throttle")  # attempt 1 is under way, passed the gate
    await harness.engine.set_paused(True, "alice")
    _release(f"{run_id}:throttle")  # attempt 1 fails as temporary: tenacity retries
    await task
    run = await _only_run(harness)
    assert run["state"] == "parked"
    [throttle] = [s for s in await harness.steps(run_id) if s["name"] == "throttle"]
    assert throttle["state"] == "deferred" and throttle["attempts"] == 2
    assert await knobs(target_db) == UNTOUCHED
    await _resume(harness)
    assert (await knobs(target_db))["throttle"] == 1
    assert (await calls(target_db)).count("throttle") == 1


# ----------------------------------------------------------------- approved


async def test_a_step_approved_while_paused_runs_only_after_resume(
    harness: Harness, target_db: TargetDatabase
) -> None:
    await harness.deliver(ALERT)
    run = await _only_run(harness)
    [approval] = await harness.approvals(str(run["id"]))
    await harness.engine.set_paused(True, "alice")
    await harness.approve(approval["id"])  # decided, and the maintenance pass ran
    await harness.maintenance()
    assert (await knobs(target_db))["replicas"] == 3
    [approval] = await harness.approvals(str(run["id"]))
    assert approval["state"] == "approved"  # the decision stands, waiting
    await _resume(harness)
    assert (await knobs(target_db))["replicas"] == 0
    [approval] = await harness.approvals(str(run["id"]))
    assert approval["state"] == "executed"
    assert (await calls(target_db)).count("scale_down") == 1


async def test_a_step_approved_then_paused_before_it_runs_waits_for_resume(
    harness: Harness, target_db: TargetDatabase
) -> None:
    await harness.deliver(ALERT)
    run = await _only_run(harness)
    [approval] = await harness.approvals(str(run["id"]))
    decision = await harness.engine.decide(approval["id"], "approved", "bob")
    assert decision.status == "ok"
    await harness.engine.set_paused(True, "alice")
    await harness.maintenance()
    assert (await knobs(target_db))["replicas"] == 3
    await _resume(harness)
    assert (await knobs(target_db))["replicas"] == 0


# --------------------------------------------------------------------- undo


async def test_an_undo_on_resolve_while_paused_waits_for_resume(
    harness: Harness, target_db: TargetDatabase
) -> None:
    await harness.deliver(ALERT)
    assert (await knobs(target_db))["throttle"] == 1
    await harness.engine.set_paused(True, "alice")
    await harness.deliver(resolved(ALERT))
    await harness.maintenance()
    assert (await knobs(target_db))["throttle"] == 1
    run = await _only_run(harness)
    assert run["state"] == "waiting" and run["undo_state"] == "requested"
    await _resume(harness)
    assert (await knobs(target_db))["throttle"] == 0
    assert (await _only_run(harness))["undo_state"] == "done"


@pytest.mark.rules(_rules(hang_scale_back="true"))
async def test_an_undo_paused_half_way_leaves_the_rest_for_resume(
    harness: Harness, target_db: TargetDatabase
) -> None:
    await harness.deliver(ALERT)
    run = await _only_run(harness)
    [approval] = await harness.approvals(str(run["id"]))
    await harness.approve(approval["id"])
    assert await knobs(target_db) == {"throttle": 1, "replicas": 0, "other": 7}
    # Undo runs in reverse order of change: scale_back (held here), then unthrottle.
    task = await _background(harness.deliver(resolved(ALERT)))
    await _reached(f"{run['id']}:scale_back")
    await harness.engine.set_paused(True, "alice")
    _release(f"{run['id']}:scale_back")
    await task
    # scale_back had passed the gate before the pause; unthrottle had not.
    assert await knobs(target_db) == {"throttle": 1, "replicas": 3, "other": 7}
    [unthrottle] = [
        s for s in await harness.steps(str(run["id"]), "undo") if s["name"] == "throttle"
    ]
    assert unthrottle["state"] == "deferred"
    await harness.maintenance()
    assert (await knobs(target_db))["throttle"] == 1
    await _resume(harness)
    assert await knobs(target_db) == UNTOUCHED


@pytest.mark.rules(_rules(hang_second="true"))
async def test_an_undo_on_hand_over_while_paused_waits_for_resume(
    harness: Harness, target_db: TargetDatabase
) -> None:
    task = await _background(harness.deliver(ALERT))
    run_id = await _running_run_id(harness)
    for _ in range(200):  # throttle applied, `second` holding
        if (await knobs(target_db))["throttle"] == 1:
            break
        await asyncio.sleep(0.02)
    await harness.deliver(resolved(ALERT))  # the run is still firing: undo at hand-over
    await harness.engine.set_paused(True, "alice")
    _testbook.GATE.setdefault(run_id, asyncio.Event()).set()
    await task
    run = await _only_run(harness)
    assert run["state"] == "waiting" and run["undo_state"] == "requested"
    assert (await knobs(target_db))["throttle"] == 1
    await _resume(harness)
    assert (await knobs(target_db))["throttle"] == 0


@pytest.mark.rules(_testbook.rules(max_duration="200ms"))
async def test_max_duration_undoes_through_the_gate_only_when_not_paused(
    harness: Harness, target_db: TargetDatabase
) -> None:
    await harness.deliver(ALERT)
    assert (await knobs(target_db))["throttle"] == 1
    await harness.engine.set_paused(True, "alice")
    await asyncio.sleep(0.3)
    await harness.maintenance()
    assert (await knobs(target_db))["throttle"] == 1
    await _resume(harness)
    assert (await knobs(target_db))["throttle"] == 0
    run = await _only_run(harness)
    assert run["state"] == "done" and run["undo_reason"] == "max_duration"
    titles = [e.content.title for e in harness.pager.triggers()]
    assert any("max_duration" in t for t in titles), titles
    # The alert never resolved: its incident stays open for a human.
    assert not harness.pager.resolves()


# ------------------------------------------------------------ lease takeover


async def test_a_run_taken_over_after_its_lease_is_parked_by_the_new_owner_and_the_old_one_never_acts(
    clients: Clients, target_db: TargetDatabase, pg_schema_dsn: str
) -> None:
    reg = _testbook.registry()
    rules = _rules(hang_look="true")
    fast = {"engine": {"lease": 0.5}}
    async with (
        Harness(
            reg, rules, clients=clients, state_url=pg_schema_dsn, settings=fast, owner="a"
        ) as a,
        Harness(
            reg, rules, clients=clients, state_url=pg_schema_dsn, settings=fast, owner="b"
        ) as b,
    ):
        task = await _background(a.deliver(ALERT))  # a holds the run in `look`
        run_id = await _running_run_id(a)
        await _reached(f"{run_id}:look")
        await a.engine.set_paused(True, "alice")
        await asyncio.sleep(0.7)  # a's lease runs out (no heartbeat in a harness)
        resumed = await _background(b.maintenance())  # b takes the run over
        for _ in range(200):
            if (await _only_run(b))["owner"] == "b":
                break
            await asyncio.sleep(0.02)
        _release(f"{run_id}:look")  # both a and b go on to `throttle`
        await asyncio.gather(task, resumed)
        run = await _only_run(b)
        assert run["state"] == "parked"
        assert await knobs(target_db) == UNTOUCHED
        await b.engine.set_paused(False, "alice")
        await a.maintenance()
        await b.maintenance()
        assert (await knobs(target_db))["throttle"] == 1
        assert (await calls(target_db)).count("throttle") == 1
