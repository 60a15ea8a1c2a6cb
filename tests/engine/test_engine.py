"""The engine's guarantees, each pinned by its own test (real Postgres target)."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
import respx

from remediator.paging.pagerduty import PagerDutyPager
from remediator.testing import Harness, make_alert, resolved
from tests.engine import _testbook
from tests.engine.conftest import calls, knobs

ALERT = make_alert("TestAlert", {"service": "checkout", "severity": "page"})


async def test_live_run_records_every_step_and_pages_with_context(clients, target_db):
    async with Harness(
        _testbook.registry(),
        _testbook.rules(),
        clients=clients,
        settings={
            "links": {
                "runbooks": "https://runbooks.example/x",
                "grafana": "https://grafana.example/d/r",
            }
        },
    ) as h:
        await h.deliver(ALERT)
        [run] = await h.runs()
        steps = {s["name"]: s for s in await h.steps(run["id"])}
        assert {n: s["outcome"] for n, s in steps.items()} == {
            "look": "applied",
            "throttle": "applied",
            "second": "applied",
            "scale_down": "awaiting_approval",
        }
        assert steps["throttle"]["changes"] == {"throttle": 0}
        assert await knobs(target_db) == {"throttle": 1, "replicas": 3, "other": 7}
        [page] = h.pager.triggers()
        c = page.content
        assert c.dedup_key == f"remediator/{run['id']}"
        assert "Throttle: throttle 0 -> 1" in c.done
        [left] = c.left_for_human
        [approval] = await h.approvals(run["id"])
        assert f"remediator approve {approval['id']}" in left
        hrefs = dict(c.links)
        assert hrefs["Alert source"] == ALERT["generatorURL"]
        assert hrefs["Grafana: remediator"] == "https://grafana.example/d/r"
        assert (
            h.metrics.registry.get_sample_value(
                "remediator_time_to_mitigation_seconds_count", {"runbook": "RB-T"}
            )
            == 1
        )


async def test_dry_run_mutates_nothing_and_records_the_full_plan(clients, target_db):
    async with Harness(
        _testbook.registry(), _testbook.rules(), clients=clients, settings={"mode": "dry-run"}
    ) as h:
        await h.deliver(ALERT)
        [run] = await h.runs()
        steps = {s["name"]: s for s in await h.steps(run["id"])}
        assert steps["throttle"]["outcome"] == "dry_run"
        assert steps["throttle"]["rendered"] == "UPDATE knobs SET value = 1 WHERE name = 'throttle'"
        assert steps["scale_down"]["outcome"] == "awaiting_approval"
        assert set(steps) == {"look", "throttle", "second", "scale_down"}
        assert "throttle" not in await calls(target_db)
        assert await knobs(target_db) == {"throttle": 0, "replicas": 3, "other": 7}
        [page] = h.pager.triggers()
        assert page.content.mode == "dry-run"


async def test_rule_cannot_loosen_global_dry_run(clients, target_db):
    async with Harness(
        _testbook.registry(),
        _testbook.rules(mode="live"),
        clients=clients,
        settings={"mode": "dry-run"},
    ) as h:
        await h.deliver(ALERT)
        assert (await h.runs())[0]["mode"] == "dry-run"
        assert await knobs(target_db) == {"throttle": 0, "replicas": 3, "other": 7}


async def test_resolve_undoes_exactly_what_the_run_recorded_once(clients, target_db):
    async with Harness(_testbook.registry(), _testbook.rules(), clients=clients) as h:
        await h.deliver(ALERT)
        # a human changes an unrelated knob meanwhile: undo must not touch it
        await target_db.execute("UPDATE knobs SET value = 9 WHERE name = 'other'")
        await h.deliver(resolved(ALERT))
        await h.deliver(resolved(ALERT))  # the resolved notification arrives twice
        assert await knobs(target_db) == {"throttle": 0, "replicas": 3, "other": 9}
        assert (await calls(target_db)).count("unthrottle") == 1
        [run] = await h.runs()
        assert run["state"] == "done" and run["undo_state"] == "done"
        assert len(h.pager.resolves()) == 1
        assert h.pager.resolves()[0].content.dedup_key == f"remediator/{run['id']}"


async def test_approve_step_runs_only_after_approval_and_is_undone_on_resolve(clients, target_db):
    async with Harness(_testbook.registry(), _testbook.rules(), clients=clients) as h:
        await h.deliver(ALERT)
        [run] = await h.runs()
        assert "scale_down" not in await calls(target_db)
        [a] = await h.approvals(run["id"])
        await h.approve(a["id"], who="alice")
        assert (await calls(target_db)).count("scale_down") == 1
        assert (await knobs(target_db))["replicas"] == 0
        [a] = await h.approvals(run["id"])
        assert (a["state"], a["decided_by"]) == ("executed", "alice")
        assert a["decided_at"] is not None
        await h.deliver(resolved(ALERT))
        assert await knobs(target_db) == {"throttle": 0, "replicas": 3, "other": 7}


async def test_rejected_step_never_runs(clients, target_db):
    async with Harness(_testbook.registry(), _testbook.rules(), clients=clients) as h:
        await h.deliver(ALERT)
        [run] = await h.runs()
        [a] = await h.approvals(run["id"])
        await h.reject(a["id"])
        await h.maintenance()
        assert "scale_down" not in await calls(target_db)
        d = await h.engine.decide(a["id"], "approved", "mallory")
        assert d.status == "conflict"


async def test_pending_approval_expires_into_a_new_page(clients, target_db):
    async with Harness(
        _testbook.registry(),
        _testbook.rules(),
        clients=clients,
        settings={"engine": {"approval_ttl": "0.2s"}},
    ) as h:
        await h.deliver(ALERT)
        [run] = await h.runs()
        [a] = await h.approvals(run["id"])
        assert h.metrics.registry.get_sample_value("remediator_approvals_pending") in (None, 0.0)
        await asyncio.sleep(0.3)
        await h.maintenance()
        [a] = await h.approvals(run["id"])
        assert a["state"] == "expired"
        triggers = h.pager.triggers()
        assert len(triggers) == 2 and "expired" in triggers[1].content.title
        assert (await h.engine.decide(a["id"], "approved", "late")).status == "conflict"
        assert "scale_down" not in await calls(target_db)


async def test_kill_switch_parks_the_run_before_its_mutation_and_resume_finishes_it(
    clients, target_db
):
    async with Harness(_testbook.registry(), _testbook.rules(), clients=clients) as h:
        await h.engine.set_paused(True, "alice")
        await h.deliver(ALERT)
        [run] = await h.runs()
        assert run["state"] == "parked"
        steps = {s["name"]: s for s in await h.steps(run["id"])}
        assert steps["look"]["outcome"] == "applied"  # reads still run: the page has context
        assert steps["throttle"]["state"] == "deferred"
        assert "kill switch" in steps["throttle"]["reason"]
        assert await knobs(target_db) == {"throttle": 0, "replicas": 3, "other": 7}
        [page] = h.pager.triggers()
        assert "kill switch on" in page.content.title
        assert (
            h.metrics.registry.get_sample_value(
                "remediator_guard_blocks_total", {"guard": "kill_switch"}
            )
            == 1
        )
        await h.maintenance()  # still paused: the run stays parked
        assert (await h.runs())[0]["state"] == "parked"
        assert await knobs(target_db) == {"throttle": 0, "replicas": 3, "other": 7}

        await h.engine.set_paused(False, "alice")
        await h.maintenance()
        [run] = await h.runs()
        assert run["state"] == "waiting" and run["outcome"] == "partial"
        assert (await knobs(target_db))["throttle"] == 1
        assert (await calls(target_db)).count("throttle") == 1


async def test_kill_switch_set_through_one_instance_stops_another(
    clients, target_db, pg_schema_dsn
):
    reg = _testbook.registry()
    async with (
        Harness(reg, _testbook.rules(), clients=clients, state_url=pg_schema_dsn) as a,
        Harness(reg, _testbook.rules(), clients=clients, state_url=pg_schema_dsn) as b,
    ):
        await a.engine.set_paused(True, "alice")
        await b.deliver(ALERT)
        [run] = await b.runs()
        assert run["state"] == "parked"
        assert await knobs(target_db) == {"throttle": 0, "replicas": 3, "other": 7}
        await a.engine.set_paused(False, "alice")
        await a.maintenance()  # any replica goes on with a parked run
        [run] = await b.runs()
        assert run["state"] == "waiting"
        assert (await knobs(target_db))["throttle"] == 1


async def test_cooldown_blocks_a_second_run_on_the_same_target(clients, target_db):
    async with Harness(_testbook.registry(), _testbook.rules(cooldown="30m"), clients=clients) as h:
        await h.deliver(ALERT)
        again = make_alert(
            "TestAlert",
            {"service": "checkout", "severity": "page"},
            starts_at="2026-11-28T01:00:00Z",
        )
        other = make_alert("TestAlert", {"service": "search", "severity": "page"})
        await h.deliver(again, other)
        runs = {(r["alert"]["labels"]["service"], r["starts_at"]): r for r in await h.runs()}
        assert runs[("checkout", "2026-11-28T01:00:00Z")]["blocked_by"] == "cooldown"
        assert runs[("search", other["startsAt"])]["blocked_by"] is None
        assert (
            h.metrics.registry.get_sample_value(
                "remediator_guard_blocks_total", {"guard": "cooldown"}
            )
            == 1
        )
        assert (await calls(target_db)).count("throttle") == 2


async def test_max_runs_per_hour_blocks_and_counts(clients, target_db):
    async with Harness(
        _testbook.registry(), _testbook.rules(max_runs_per_hour="2"), clients=clients
    ) as h:
        alerts = [make_alert("TestAlert", {"service": f"s{i}"}) for i in range(4)]
        for a in alerts:
            await h.deliver(a)
        blocked = [r for r in await h.runs() if r["blocked_by"] == "rate_limit"]
        assert len(blocked) == 2
        assert (
            h.metrics.registry.get_sample_value(
                "remediator_guard_blocks_total", {"guard": "rate_limit"}
            )
            == 2
        )


async def test_lock_blocks_a_concurrent_run_on_the_same_target(clients, target_db):
    async with Harness(_testbook.registry(), _testbook.rules(), clients=clients) as h:
        assert await h.store.acquire_lock("RB-T:checkout", "someone-else", "other", 60)
        await h.deliver(ALERT)
        [run] = await h.runs()
        assert run["blocked_by"] == "lock_busy"
        assert "throttle" not in await calls(target_db)


async def test_circuit_opens_after_n_failed_runs_pages_once_and_blocks(clients, target_db):
    async with Harness(
        _testbook.registry(),
        _testbook.rules(params="{fail: true}"),
        clients=clients,
        settings={"engine": {"circuit_failures": 2}},
    ) as h:
        for i in range(3):
            await h.deliver(make_alert("TestAlert", {"service": f"s{i}"}))
        runs = sorted(await h.runs(), key=lambda r: r["created_at"])
        assert [r["outcome"] for r in runs] == ["failed", "failed", "blocked"]
        assert runs[2]["blocked_by"] == "circuit_open"
        circuit_pages = [
            e for e in h.pager.triggers() if e.content.alertname == "RemediatorCircuitOpen"
        ]
        assert len(circuit_pages) == 1
        # a failed mitigation with stop_on_failure: later steps are skipped, not run
        steps = {s["name"]: s for s in await h.steps(runs[0]["id"])}
        assert steps["second"]["outcome"] == "skipped"
        assert (
            h.metrics.registry.get_sample_value(
                "remediator_guard_blocks_total", {"guard": "circuit_open"}
            )
            == 1
        )


async def test_same_payload_five_times_concurrently_gives_one_run(
    clients, target_db, pg_schema_dsn
):
    reg = _testbook.registry()
    harnesses = [
        Harness(reg, _testbook.rules(), clients=clients, state_url=pg_schema_dsn) for _ in range(5)
    ]
    for h in harnesses:
        await h.__aenter__()
    try:
        await asyncio.gather(*(h.deliver(ALERT) for h in harnesses))
        runs = await harnesses[0].runs()
        assert len(runs) == 1
        assert (await calls(target_db)).count("throttle") == 1
    finally:
        for h in harnesses:
            await h.__aexit__(None, None, None)


async def test_interrupted_run_is_finished_without_redoing_completed_steps(clients, target_db):
    async with Harness(
        _testbook.registry(),
        _testbook.rules(params="{hang_second: true}"),
        clients=clients,
        settings={"engine": {"lease": "0.2s"}},
    ) as h:
        task = asyncio.create_task(h.deliver(ALERT))
        while not _testbook.GATE:
            await asyncio.sleep(0.01)
        task.cancel()  # the process dies inside step 'second'
        with pytest.raises(asyncio.CancelledError):
            await task
        [run] = await h.runs()
        assert run["state"] == "running"
        assert (await calls(target_db)) == ["look", "throttle"]
        for ev in _testbook.GATE.values():
            ev.set()
        await asyncio.sleep(0.3)  # the lease runs out
        for r in await h.store.claim_expired_runs(h.engine.owner, 30):
            await h.engine.resume(r)
        assert await calls(target_db) == ["look", "throttle", "second"]
        steps = {s["name"]: s["outcome"] for s in await h.steps(run["id"])}
        assert steps["second"] == "applied"
        assert (await h.store.get_run(run["id"]))["state"] == "waiting"
    _testbook.GATE.clear()


async def test_page_is_not_lost_across_a_restart(clients, target_db, tmp_path):
    from remediator.paging.base import RetryLater
    from remediator.paging.capture import CapturePager

    state = f"sqlite:///{tmp_path}/state.db"
    first = CapturePager()
    first.fail_next(10, RetryLater("peer down"))
    async with Harness(
        _testbook.registry(), _testbook.rules(), clients=clients, state_url=state, pager=first
    ) as h:
        await h.deliver(ALERT)
        assert first.delivered == []
    # a new process on the same state store delivers what the old one queued
    second = CapturePager()
    async with Harness(
        _testbook.registry(), _testbook.rules(), clients=clients, state_url=state, pager=second
    ) as h2:
        await h2.store._execute("UPDATE outbox SET next_attempt_at = 0")
        await h2.flush_pages()
        await h2.flush_pages()
        assert [e.action for e in second.delivered] == ["trigger"]
        [row] = await h2.store.list_pages()
        assert row["state"] == "sent"


@respx.mock
async def test_outbox_retries_429_and_5xx_and_gives_up_on_400(clients, target_db):
    url = "https://events.pagerduty.example/v2/enqueue"
    route = respx.post(url)
    route.side_effect = [
        httpx.Response(429),
        httpx.Response(500),
        httpx.Response(202, json={"status": "success"}),
        httpx.Response(400, json={"status": "invalid"}),
    ]
    pd = PagerDutyPager("routing-key-1234", url)
    async with Harness(_testbook.registry(), _testbook.rules(), clients=clients) as h:
        h.outbox.pagers = {"pagerduty": pd}
        await h.deliver(ALERT)  # trigger: 429, then retried
        for _ in range(4):
            await h.store._execute("UPDATE outbox SET next_attempt_at = 0 WHERE state = 'pending'")
            await h.outbox.deliver_due()
        await h.deliver(resolved(ALERT))  # resolve: 400 -> failed, not retried
        for _ in range(3):
            await h.store._execute("UPDATE outbox SET next_attempt_at = 0 WHERE state = 'pending'")
            await h.outbox.deliver_due()
        rows = {r["action"]: r for r in await h.store.list_pages()}
        assert rows["trigger"]["state"] == "sent" and rows["trigger"]["attempts"] == 3
        assert rows["resolve"]["state"] == "failed" and rows["resolve"]["attempts"] == 1
        assert route.call_count == 4
        m = h.metrics.registry.get_sample_value
        assert (
            m(
                "remediator_pages_total",
                {"pager": "pagerduty", "event": "trigger", "outcome": "retry"},
            )
            == 2
        )
        assert (
            m(
                "remediator_pages_total",
                {"pager": "pagerduty", "event": "resolve", "outcome": "rejected"},
            )
            == 1
        )
    await pd.aclose()


async def test_p0_runs_stopped_by_a_guard_page_a_human_once_per_rule_guard_and_hour(
    clients, target_db
):
    from dataclasses import replace

    from remediator.runbook_api.registry import Registry

    reg = Registry()
    reg.register(replace(_testbook.RUNBOOK, severity="P0", page_first=True))
    async with Harness(reg, _testbook.rules(max_runs_per_hour="1"), clients=clients) as h:
        for service in ("a", "b", "c"):
            await h.deliver(make_alert("TestAlert", {"service": service}))
        blocked = [r for r in await h.runs() if r["blocked_by"] == "rate_limit"]
        assert len(blocked) == 2
        hour = int(blocked[0]["created_at"] // 3600)
        folded = [
            e
            for e in h.pager.triggers()
            if e.content.dedup_key == f"remediator/guard/test-rule/rate_limit/{hour}"
        ]
        assert len(folded) == 1
        assert folded[0].content.severity == "P0"
        assert "rate_limit engaged" in folded[0].content.title
        # Neither blocked run opened an incident of its own.
        own = {f"remediator/{r['id']}" for r in blocked}
        assert not [e for e in h.pager.triggers() if e.content.dedup_key in own]


async def test_a_notify_level_run_that_outlasts_its_threshold_escalates_to_one_page(
    clients, target_db
):
    from dataclasses import replace

    from remediator.runbook_api.registry import Registry

    reg = Registry()
    reg.register(replace(_testbook.RUNBOOK, severity="P2", escalate_after=lambda p: 0.2))
    async with Harness(reg, _testbook.rules(), clients=clients) as h:
        await h.deliver(ALERT)
        await h.maintenance()  # too early: nothing
        assert [e.content.severity for e in h.pager.triggers()] == ["P2"]
        await asyncio.sleep(0.3)
        await h.maintenance()
        await h.maintenance()  # once, not on every pass
        triggers = h.pager.triggers()
        assert [e.content.severity for e in triggers] == ["P2", "P1"]
        assert "escalated to a page" in triggers[1].content.title
        [run] = await h.runs()
        assert triggers[1].content.dedup_key == f"remediator/{run['id']}"


async def test_a_resolved_run_never_escalates(clients, target_db):
    from dataclasses import replace

    from remediator.runbook_api.registry import Registry

    reg = Registry()
    reg.register(replace(_testbook.RUNBOOK, severity="P2", escalate_after=lambda p: 0.1))
    async with Harness(reg, _testbook.rules(), clients=clients) as h:
        await h.deliver(ALERT)
        await h.deliver(resolved(ALERT))
        await asyncio.sleep(0.2)
        await h.maintenance()
        assert [e.content.severity for e in h.pager.triggers()] == ["P2"]


async def test_a_step_that_waits_parks_its_run_until_the_wake_up_time(clients, target_db):
    rules = _testbook.rules(params="{wait_second: 0.4}")
    async with Harness(_testbook.registry(), rules, clients=clients) as h:
        payload = make_alert("TestAlert", {"service": "checkout", "severity": "page"})
        # Journal and process without the harness driving the wait, as a worker would.
        from remediator.models import WebhookPayload, occurrences
        from remediator.testing import make_payload

        body = WebhookPayload.model_validate(make_payload(payload))
        await h.store.append_occurrences(occurrences(body, time.time()))
        [occ] = await h.store.claim_occurrences("harness", 10, 30.0)
        await h.engine.process(occ)  # returns: the worker is free while the build runs
        [run] = await h.runs()
        assert run["state"] == "parked" and run["retry_at"] > time.time()
        second = next(s for s in await h.steps(run["id"]) if s["name"] == "second")
        assert second["state"] == "waiting"
        await h.maintenance()  # too early: still parked
        assert (await h.runs())[0]["state"] == "parked"
        await h.wake_waits()
        [run] = await h.runs()
        assert run["state"] == "waiting" and run["outcome"] == "partial"
        assert (await calls(target_db)).count("throttle") == 1  # not redone on wake-up
        assert (await calls(target_db)).count("second") == 1


@pytest.mark.parametrize("mode", ["live", "dry-run"])
async def test_past_the_page_budget_a_p0_that_acted_gets_its_own_incident_and_others_fold(
    clients, target_db, mode
):
    """A P0 run's first page (nothing done yet) can fold; once its runbook changed
    something, its page is its own incident whatever the budget. In dry-run nothing
    changed (the diagnosis read is not acting), so past the budget it all folds."""
    from dataclasses import replace

    from remediator.runbook_api.registry import Registry

    reg = Registry()
    reg.register(replace(_testbook.RUNBOOK, severity="P0", page_first=True))
    settings = {"mode": mode, "pagers": {"max_pages_per_hour": 1}}
    async with Harness(reg, _testbook.rules(), clients=clients, settings=settings) as h:
        for service in ("a", "b", "c"):
            await h.deliver(make_alert("TestAlert", {"service": service}))
        runs = sorted(await h.runs(), key=lambda r: r["created_at"])
        own = {f"remediator/{r['id']}" for r in runs}
        opened = {e.content.dedup_key for e in h.pager.triggers()}
        [summary] = [k for k in opened if k.startswith("remediator/folded/capture/")]
        folded = h.metrics.registry.get_sample_value(
            "remediator_pages_folded_total", {"pager": "capture"}
        )
        assert folded == 2  # the first pages of the 2nd and 3rd runs
        if mode == "live":
            assert opened == own | {summary}
            finals = [e for e in h.pager.triggers() if e.content.never_fold]
            assert {e.content.dedup_key for e in finals} == own
            assert all(any(d.startswith("Throttle:") for d in e.content.done) for e in finals)
        else:
            first = f"remediator/{runs[0]['id']}"
            assert opened == {first, summary}
            assert not [e for e in h.pager.triggers() if e.content.never_fold]
