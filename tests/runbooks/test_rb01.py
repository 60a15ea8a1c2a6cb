"""RB-01 pricing pack build failure on the real engine: a real DawsOS Postgres, the
official Kubernetes client against FakeKubeAPI, respx for the providers and the app."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import respx
import yaml

from remediator.clients.database import TargetDatabase
from remediator.clients.http import HttpChecks
from remediator.clients.kubernetes import KubernetesClient
from remediator.engine import replay
from remediator.engine import rules as rules_mod
from remediator.errors import NotCorroborated
from remediator.models import WebhookPayload
from remediator.runbooks import rb01_pricing_pack as rb01
from remediator.settings import from_mapping
from remediator.testing import Harness, make_alert, make_payload, resolved
from tests.fixtures.kube_api import FakeKubeAPI
from tests.runbooks import _rb0103_fixtures as fx

D = fx.today()
TODAY, YESTERDAY = f"PP-{D}", f"PP-{D - timedelta(days=1)}"
ALERT = make_alert(
    "PricingPackBuildSlow",
    {"severity": "critical", "service": "dawsos", "instance": "scheduler-0:9100"},
)
FAST = {"build_poll_seconds": 0.05, "build_wait_seconds": 5}
RULES = fx.rules_yaml("RB-01", ["PricingPackBuildSlow", "PricingPackNotReady"], FAST)
SCHEDULER_LOG = (
    f"00:00:01 build_pack start date={D}\n00:02:10 build_pack prices fetched 8/22\n"
    "00:02:11 build_pack ERROR fmp timeout after 30s\nunrelated line\n"
)


@pytest.fixture(params=fx.SCHEMAS)
def schema(request: pytest.FixtureRequest) -> Any:
    return request.param


@pytest.fixture
async def target(
    request: pytest.FixtureRequest, schema: Any
) -> AsyncIterator[tuple[str, TargetDatabase]]:
    async with fx.dawsos_db(request.config, schema) as pair:
        yield pair


@pytest.fixture
async def fake() -> AsyncIterator[FakeKubeAPI]:
    async with FakeKubeAPI() as server:
        server.add_pod(fx.NS, "scheduler-0", {"app": "scheduler"}, SCHEDULER_LOG)
        fx.add_workload(server, "scheduler")
        yield server


@pytest.fixture
async def kube(fake: FakeKubeAPI) -> AsyncIterator[KubernetesClient]:
    async with fx.kube_client(fake.url) as client:
        yield client


@pytest.fixture
async def http() -> AsyncIterator[tuple[HttpChecks, respx.MockRouter]]:
    async with fx.http_checks() as pair:
        yield pair


def harness(
    target: tuple[str, TargetDatabase], kube: KubernetesClient, http: HttpChecks, **kw: Any
) -> Harness:
    return Harness(
        fx.registry(),
        kw.pop("rules", RULES),
        clients=fx.clients(db=target[1], kube=kube, http=http),
        **kw,
    )


async def play_build(
    fake: FakeKubeAPI, db: TargetDatabase, name: str, *, succeed: bool = True
) -> None:
    """The Job controller and build_pack itself: the pack is written, the Job ends."""
    await fx.wait_for_job(fake, name)
    if succeed:
        # On a database without the status and hash columns the row is all there is.
        if "status" in await db.columns("pricing_pack"):
            await db.execute(
                "UPDATE pricing_pack SET status = 'ready', hash = 'h-rebuilt' WHERE date = $1", D
            )
        fake.set_job_status(fx.NS, name, succeeded=1)
    else:
        fake.set_job_status(fx.NS, name, failed=1)


async def steps_by_name(h: Harness, phase: str = "fire") -> dict[str, dict[str, Any]]:
    [run] = await h.runs()
    return {s["name"]: s for s in await h.steps(run["id"], phase)}


async def no_pack_fresh(db: TargetDatabase) -> None:
    await db.execute("UPDATE pricing_pack SET is_fresh = FALSE")


# --------------------------------------------------------------------- live


async def test_live_run_rebuilds_marks_new_pack_fresh_and_changes_nothing_else(
    target, fake, kube, http, schema
) -> None:
    dsn, db = target
    checks, router = http
    fx.providers_answer(router)
    gate = fx.gate_answers(router, 200)
    before = await fx.snapshot(dsn)
    job = f"build-pack-{D}-1"
    async with harness(target, kube, checks) as h:
        builder = asyncio.create_task(play_build(fake, db, job))
        await h.deliver(ALERT)
        await builder
        steps = await steps_by_name(h)
        page = fx.page_text(fx.last(h, "trigger"))

    assert {n: s["outcome"] for n, s in steps.items()} == {
        "scheduler_logs": "applied",
        "provider_health": "applied",
        "recent_packs": "applied",
        "long_running_queries": "applied",
        "kill_stuck": "skipped",  # nothing is stuck: not even offered
        "serve_last_good": "skipped",
        "rerun_build": "applied",
        "await_build": "applied",
        "mark_fresh": "applied",
        "freshness_gate": "applied",
    }
    # The whole database: the simulated build wrote today's pack; the runbook only
    # flipped is_fresh on today's and yesterday's rows.
    expected = fx.changed(
        before,
        "pricing_pack",
        "id",
        {
            TODAY: fx.pack_row(schema, is_fresh=True, status="ready", hash="h-rebuilt"),
            YESTERDAY: {"is_fresh": False},
        },
    )
    assert await fx.snapshot(dsn) == expected
    assert steps["mark_fresh"]["changes"] == {
        "rows": [
            {"id": YESTERDAY, "previous_is_fresh": True, "is_fresh": False},
            {"id": TODAY, "previous_is_fresh": False, "is_fresh": True},
        ]
    }
    [post] = fx.job_posts(fake)
    assert post.path == f"/apis/batch/v1/namespaces/{fx.NS}/jobs"
    fx.assert_job_runs_in_workload(
        post.body, "scheduler", ["python", "-m", "jobs.build_pack", "--date", str(D), "--force"]
    )
    assert post.body["metadata"]["labels"]["remediator/pack-date"] == str(D)
    assert gate.call_count == 1
    assert "1 with errors" in steps["scheduler_logs"]["result"]["summary"]
    assert f"{YESTERDAY} is fresh already" in steps["serve_last_good"]["reason"]
    assert (
        f"Mark the new pack fresh, unmark older packs: marked {TODAY} fresh; unmarked"
        f" {YESTERDAY}" in fx.section(page, "Done")
    )
    assert (
        "Verify the freshness gate (POST /execute): POST /execute answered 200:"
        " valuations are served" in fx.section(page, "Done")
    )
    assert any(
        s.startswith("Serve the last-good pricing pack: ")
        for s in fx.section(page, "Skipped (why)")
    )
    assert fx.section(page, "Left for you") == []
    assert steps["kill_stuck"]["reason"] == (
        "not offered: no query has run for 600 s or more: nothing is stuck"
    )


async def test_no_fresh_pack_and_provider_down_serves_last_good_only(
    target, fake, kube, http
) -> None:
    dsn, db = target
    checks, router = http
    fx.providers_answer(router, down={"fmp": 503})
    fx.gate_answers(router, 200)
    await no_pack_fresh(db)
    before = await fx.snapshot(dsn)
    async with harness(target, kube, checks) as h:
        await h.deliver(ALERT)
        steps = await steps_by_name(h)
        page = fx.page_text(fx.last(h, "trigger"))

    assert await fx.snapshot(dsn) == fx.changed(
        before, "pricing_pack", "id", {YESTERDAY: {"is_fresh": True}}
    )
    assert steps["serve_last_good"]["changes"] == {
        "pack_date": str(D),
        "flipped": [{"id": YESTERDAY, "previous_is_fresh": False}],
    }
    assert steps["rerun_build"]["outcome"] == "skipped"
    assert "providers unhealthy (fmp)" in steps["rerun_build"]["reason"]
    assert fx.job_posts(fake) == []
    assert steps["mark_fresh"]["outcome"] == "skipped"
    done, skipped = fx.section(page, "Done"), fx.section(page, "Skipped (why)")
    assert (
        f"Serve the last-good pricing pack: marked last-good pack {YESTERDAY} fresh"
        " (temporary; no pack was fresh)" in done
    )
    assert any("fmp DOWN (HTTP 503" in d for d in done)
    assert any(
        s.startswith("Rerun the pack build as a Kubernetes Job: providers unhealthy")
        for s in skipped
    )
    assert any(
        s.startswith("Mark the new pack fresh, unmark older packs: the pack for") for s in skipped
    )


async def test_resolve_keeps_last_good_fresh_when_no_newer_pack_is_fresh(
    target, fake, kube, http
) -> None:
    dsn, db = target
    checks, router = http
    fx.providers_answer(router, down={"polygon": 503})
    fx.gate_answers(router, 200)
    await no_pack_fresh(db)
    async with harness(target, kube, checks) as h:
        await h.deliver(ALERT)
        after_fire = await fx.snapshot(dsn)
        await h.deliver(resolved(ALERT))
        undo = (await steps_by_name(h, "undo"))["serve_last_good"]
        page = fx.page_text(fx.last(h, "resolve"))
    assert await fx.snapshot(dsn) == after_fire
    assert undo["outcome"] == "skipped"
    assert any(
        s.startswith(
            f"Serve the last-good pricing pack [undo]: kept {YESTERDAY} fresh:"
            " no newer pack is fresh"
        )
        and s.endswith("unmark it by hand once a new pack is fresh")
        for s in fx.section(page, "Left for you")  # at resolve, it reaches a human
    )


async def test_resolve_unmarks_last_good_once_a_newer_pack_is_fresh(
    target, fake, kube, http, schema
) -> None:
    dsn, db = target
    checks, router = http
    fx.providers_answer(router, down={"polygon": 503})
    fx.gate_answers(router, 200)
    await no_pack_fresh(db)
    before = await fx.snapshot(dsn)
    async with harness(target, kube, checks) as h:
        await h.deliver(ALERT)
        # A human finished the build by hand and marked today's pack fresh, leaving
        # yesterday's marked too.
        if schema == "full":
            await db.execute(
                "UPDATE pricing_pack SET status = 'ready', hash = 'by-hand' WHERE id = $1", TODAY
            )
        await db.execute("UPDATE pricing_pack SET is_fresh = TRUE WHERE id = $1", TODAY)
        await h.deliver(resolved(ALERT))
        undo = (await steps_by_name(h, "undo"))["serve_last_good"]
    assert undo["outcome"] == "rolled_back"
    assert await fx.snapshot(dsn) == fx.changed(
        before,
        "pricing_pack",
        "id",
        {TODAY: fx.pack_row(schema, status="ready", hash="by-hand", is_fresh=True)},
    )


async def test_resolve_restores_nothing_a_verified_build_replaced(
    target, fake, kube, http, schema
) -> None:
    dsn, db = target
    checks, router = http
    fx.providers_answer(router)
    fx.gate_answers(router, 200)
    await no_pack_fresh(db)
    before = await fx.snapshot(dsn)
    async with harness(target, kube, checks) as h:
        builder = asyncio.create_task(play_build(fake, db, f"build-pack-{D}-1"))
        await h.deliver(ALERT)
        await builder
        fired = await steps_by_name(h)
        after_fire = await fx.snapshot(dsn)
        await h.deliver(resolved(ALERT))
        undo = await steps_by_name(h, "undo")
        page = fx.page_text(fx.last(h, "resolve"))
    assert fired["serve_last_good"]["outcome"] == "applied"
    assert fired["mark_fresh"]["changes"]["rows"] == [
        {"id": YESTERDAY, "previous_is_fresh": True, "is_fresh": False},
        {"id": TODAY, "previous_is_fresh": False, "is_fresh": True},
    ]
    assert after_fire == fx.changed(
        before,
        "pricing_pack",
        "id",
        {TODAY: fx.pack_row(schema, is_fresh=True, status="ready", hash="h-rebuilt")},
    )
    assert await fx.snapshot(dsn) == after_fire
    assert set(undo) == {"serve_last_good"}  # marking the verified pack is never undone
    assert undo["serve_last_good"]["outcome"] == "skipped"
    assert any(
        f"replaced by our verified build {TODAY}" in s for s in fx.section(page, "Skipped (why)")
    )


# ------------------------------------------------------------ kill if stuck


@asynccontextmanager
async def sleeping_sessions(dsn: str, apps: list[str]) -> AsyncIterator[dict[str, int]]:
    """One session per application name, as a plain (non-superuser) role, each running
    a long statement; app -> pid."""
    role = f"rb01_app_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(dsn)
    await admin.execute(f'CREATE ROLE "{role}" LOGIN')
    conns, tasks, pids = [], [], {}
    try:
        for app in apps:
            conn = await asyncpg.connect(dsn, user=role, server_settings={"application_name": app})
            conns.append(conn)
            pids[app] = await conn.fetchval("SELECT pg_backend_pid()")
            tasks.append(asyncio.create_task(conn.execute("SELECT pg_sleep(60)")))
        while await admin.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1::int[])"
            " AND state = 'active' AND now() - query_start > interval '300 ms'",
            list(pids.values()),
        ) < len(pids):
            await asyncio.sleep(0.05)
        yield pids
    finally:
        for conn in conns:
            conn.terminate()
        await asyncio.gather(*tasks, return_exceptions=True)
        await admin.execute(f'DROP ROLE "{role}"')
        await admin.close()


async def active(dsn: str, pid: int) -> bool:
    conn = await asyncpg.connect(dsn)
    try:
        for _ in range(250):  # pg_terminate_backend signals; the backend exits soon after
            if not await conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1)", pid
            ):
                return False
            await asyncio.sleep(0.02)
        return True
    finally:
        await conn.close()


async def test_a_stuck_query_is_terminated_only_after_approval_and_never_a_protected_one(
    target, fake, kube, http
) -> None:
    dsn, _db = target
    checks, router = http
    fx.providers_answer(router, down={"fmp": 503})
    fx.gate_answers(router, 503)
    rules = fx.rules_yaml(
        "RB-01",
        ["PricingPackBuildSlow"],
        {**FAST, "slow_query_seconds": 0.1, "stuck_query_seconds": 0.2, "max_terminations": 1},
    )
    async with (
        sleeping_sessions(dsn, ["build_pack", "pg_dump"]) as pids,
        harness(target, kube, checks, rules=rules) as h,
    ):
        await h.deliver(ALERT)
        [run] = await h.runs()
        fired = await steps_by_name(h)
        page = fx.page_text(fx.last(h, "trigger"))
        assert fired["kill_stuck"]["outcome"] == "awaiting_approval"
        approval = next(a["id"] for a in await h.approvals(run["id"]) if a["step"] == "kill_stuck")
        assert f"remediator approve {approval}" in page
        listed = {q["pid"] for q in fired["long_running_queries"]["result"]["data"]["queries"]}
        assert set(pids.values()) <= listed
        assert await active(dsn, pids["build_pack"])  # nothing terminated before approval
        await h.approve(int(approval))
        approved = (await h.steps(run["id"], "approved"))[0]
        assert not await active(dsn, pids["build_pack"])
        assert await active(dsn, pids["pg_dump"])
    assert approved["outcome"] == "applied"
    assert [t["pid"] for t in approved["changes"]["terminated"]] == [pids["build_pack"]]
    summary = approved["result"]["summary"]
    assert summary.startswith(f"terminated pid {pids['build_pack']} (")
    assert f"spared pid {pids['pg_dump']} (" in summary and "protected application" in summary


# ------------------------------------------------------------------ dry-run


async def test_provider_health_plans_only_the_providers_it_probes(target, kube, http) -> None:
    """A build provider missing from targets.http.providers is not probed; the plan and
    the run's audit row say so alike, and show no GET that does not happen."""
    checks, router = http
    fx.providers_answer(router)
    fx.gate_answers(router, 200)
    wanted = {**FAST, "build_providers": ["polygon", "fmp", "fred", "tiingo"]}
    rules = fx.rules_yaml("RB-01", ["PricingPackBuildSlow"], wanted)
    async with harness(target, kube, checks, rules=rules, settings={"mode": "dry-run"}) as h:
        await h.deliver(ALERT)
        step = (await steps_by_name(h))["provider_health"]
        payload = WebhookPayload.model_validate(make_payload(ALERT))
        [entry] = replay.plan(payload, h.ruleset, fx.registry(), fx.settings())
    [planned] = [s for s in entry["runs"][0]["steps"] if s["name"] == "provider_health"]
    assert step["rendered"] == planned["call"]
    assert planned["call"].splitlines() == [
        *(
            f"GET <targets.http.providers.{n}>  # expect 2xx and status ok"
            for n in fx.PROVIDER_URLS
        ),
        "# tiingo: not in targets.http.providers, not probed",
    ]
    assert step["outcome"] == "applied"
    assert "tiingo" not in step["result"]["summary"]
    assert sorted(step["result"]["data"]["providers"]) == sorted(fx.PROVIDER_URLS)


async def test_dry_run_changes_nothing_and_plans_every_step_with_its_call(
    target, fake, kube, http
) -> None:
    dsn, db = target
    checks, router = http
    fx.providers_answer(router)
    fx.gate_answers(router, 503)
    await no_pack_fresh(db)
    before = await fx.snapshot(dsn)
    async with harness(target, kube, checks, settings={"mode": "dry-run"}) as h:
        await h.deliver(ALERT)
        steps = await steps_by_name(h)
        page = fx.page_text(fx.last(h, "trigger"))
    assert await fx.snapshot(dsn) == before
    assert fx.job_posts(fake) == []
    assert [n for n, s in steps.items() if s["outcome"] == "dry_run"] == [
        "serve_last_good",
        "rerun_build",
        "mark_fresh",
    ]
    calls = {n: s["rendered"] for n, s in steps.items()}
    assert set(calls) == {s.name for s in rb01.RUNBOOK.steps}
    assert calls["scheduler_logs"] == (
        f"kubectl logs -l app=scheduler -n {fx.NS} --tail=200 --prefix | grep build_pack"
    )
    assert "GET <targets.http.providers.fmp>" in calls["provider_health"]
    assert "FROM pricing_pack\nORDER BY date DESC\nLIMIT 5" in calls["recent_packs"]
    assert "FROM pg_stat_activity" in calls["long_running_queries"]
    assert (
        "UPDATE pricing_pack SET is_fresh = TRUE WHERE id = $1 AND NOT is_fresh\n"
        f"-- $1 = '{YESTERDAY}' (newest ready pack before {D})" in calls["serve_last_good"]
    )
    assert calls["rerun_build"].startswith(
        f"# Job build-pack-{D}-<attempt 1..2>: deployment/scheduler's pod template (env,"
    )
    assert (
        f"kubectl exec deployment/scheduler -n {fx.NS} -- python -m jobs.build_pack --date {D}"
        " --force" in calls["rerun_build"]
    )
    assert f"kubectl get job build-pack-{D}-<attempt> -n {fx.NS}" in calls["await_build"]
    assert (
        "UPDATE pricing_pack SET is_fresh = (date = $1) WHERE id = ANY($2::text[])"
        f"\n-- $1 = '{D}'" in calls["mark_fresh"]
    )
    assert calls["freshness_gate"].startswith(f"POST {fx.APP_URL}/execute")
    assert page.startswith("DRY-RUN: nothing was changed")
    assert any(
        s.startswith("Serve the last-good pricing pack: dry-run: not executed; would run:")
        for s in fx.section(page, "Skipped (why)")
    )
    assert any("answered 503 (pack warming" in s for s in fx.section(page, "Left for you"))


# ------------------------------------------------------------------- guards


async def test_rerun_attempts_are_bounded_per_date(target, fake, kube, http) -> None:
    dsn, db = target
    checks, router = http
    fx.providers_answer(router)
    fx.gate_answers(router, 503)
    # Attempt 1 ran (and failed) before: an earlier run's Job record.
    await kube.create_job(
        f"build-pack-{D}-1",
        "dawsos/scheduler:stable",
        ["true"],
        labels={"remediator/run": "earlier"},
    )
    fake.set_job_status(fx.NS, f"build-pack-{D}-1", failed=1)
    before = await fx.snapshot(dsn)
    second = make_alert(
        "PricingPackBuildSlow", {"service": "dawsos"}, starts_at="2026-11-28T01:09:04Z"
    )
    async with harness(target, kube, checks) as h:
        builder = asyncio.create_task(play_build(fake, db, f"build-pack-{D}-2", succeed=False))
        await h.deliver(ALERT)
        await builder
        first_run = await steps_by_name(h)
        await h.deliver(second)
        runs = await h.runs()
        later = {s["name"]: s for s in await h.steps(runs[0]["id"], "fire")}
        page = fx.page_text(fx.last(h, "trigger"))
    assert first_run["rerun_build"]["result"]["data"]["attempt"] == 2
    assert first_run["await_build"]["outcome"] == "failed"
    assert f"build job build-pack-{D}-2 failed" in first_run["await_build"]["reason"]
    assert later["rerun_build"]["outcome"] == "skipped"
    assert f"rerun limit reached for {D}: 2 of 2 attempts used" in later["rerun_build"]["reason"]
    assert [p.body["metadata"]["name"] for p in fx.job_posts(fake)] == [
        f"build-pack-{D}-1",
        f"build-pack-{D}-2",
    ]  # the setup's and the first run's only
    assert await fx.snapshot(dsn) == before
    assert any("rerun limit reached" in s for s in fx.section(page, "Skipped (why)"))


async def test_without_the_workload_deployment_no_bare_job_is_started(
    target, fake, kube, http
) -> None:
    """A Job without the scheduler's environment would have no database URL: the step
    fails, naming the Deployment, and nothing is created."""
    checks, router = http
    fx.providers_answer(router)
    fx.gate_answers(router, 503)
    rules = fx.rules_yaml("RB-01", ["PricingPackBuildSlow"], {**FAST, "build_deployment": "nope"})
    async with harness(target, kube, checks, rules=rules) as h:
        await h.deliver(ALERT)
        steps = await steps_by_name(h)
    assert steps["rerun_build"]["outcome"] == "failed"
    assert steps["rerun_build"]["reason"].startswith(
        f"deployment nope not found in namespace {fx.NS}: the Job copies its pod template"
    )
    assert fx.job_posts(fake) == []


async def test_a_refused_app_token_is_named_in_the_page(target, fake, kube, http) -> None:
    """The freshness gate answers 401: the page says the token is the problem, not the
    pack (the token itself is sent as Bearer, see tests/clients/test_http_auth.py)."""
    checks, router = http
    fx.providers_answer(router, down={"fmp": 503})
    fx.gate_answers(router, 200)
    router.post(fx.GATE_URL).respond(401, json={"detail": "invalid token"})
    async with harness(target, kube, checks) as h:
        await h.deliver(ALERT)
        steps = await steps_by_name(h)
    assert steps["freshness_gate"]["outcome"] == "failed"
    assert steps["freshness_gate"]["reason"].startswith(
        "POST /execute answered 401 (the app refused targets.http.app_token: set or renew it)"
    )


async def test_no_second_build_while_one_is_running(target, fake, kube, http) -> None:
    checks, router = http
    fx.providers_answer(router)
    fx.gate_answers(router, 503)
    await kube.create_job(
        f"build-pack-{D}-1",
        "dawsos/scheduler:stable",
        ["true"],
        labels={"remediator/run": "earlier"},
    )
    async with harness(target, kube, checks) as h:
        await h.deliver(ALERT)
        steps = await steps_by_name(h)
    assert steps["rerun_build"]["outcome"] == "skipped"
    assert f"build job build-pack-{D}-1 is still running" in steps["rerun_build"]["reason"]
    assert len(fx.job_posts(fake)) == 1


@pytest.mark.parametrize(
    "date_label", [f"../{D}", f"{D}' OR '1'='1", "x" * 10_240, "1999-01-01", f"{D}\n"]
)
async def test_hostile_date_label_changes_nothing_and_is_reported(
    target, fake, kube, http, date_label: str
) -> None:
    dsn, db = target
    checks, router = http
    fx.providers_answer(router)
    fx.gate_answers(router, 503)
    await no_pack_fresh(db)
    before = await fx.snapshot(dsn)
    alert = make_alert("PricingPackNotReady", {"service": "dawsos", "date": date_label})
    async with harness(target, kube, checks) as h:
        await h.deliver(alert)
        steps = await steps_by_name(h)
        page = fx.page_text(fx.last(h, "trigger"))
        [run] = await h.runs()
    assert await fx.snapshot(dsn) == before
    assert fx.job_posts(fake) == []
    assert run["target"] == "RB-01:PricingPackNotReady:invalid"
    for name in ("serve_last_good", "rerun_build", "await_build", "mark_fresh"):
        assert steps[name]["outcome"] == "failed"
        assert steps[name]["reason"].startswith("rejected input date: ")
    left = fx.section(page, "Left for you")
    assert any(
        item.startswith("Serve the last-good pricing pack FAILED: rejected input date:")
        for item in left
    )
    assert all(len(item) < 1200 for item in left)  # the 10 kB label is never echoed whole


# ------------------------------------------------------------ corroboration


@pytest.mark.parametrize(
    ("day", "params", "why"),
    [
        (D + timedelta(days=1), {}, "is in the future"),
        (D - timedelta(days=2), {}, "is past: only today's pack"),
        (D - timedelta(days=1), {"late_grace_minutes": 0}, "is past: only today's pack"),
    ],
    ids=["future", "older", "yesterday-without-grace"],
)
async def test_forged_date_that_cannot_be_late_changes_nothing(
    target, fake, kube, http, day, params: dict[str, Any], why: str
) -> None:
    """A date label within the accepted window but whose pack cannot be late now: the
    run is not corroborated, builds no Job and flips no pack."""
    dsn, db = target
    checks, router = http
    fx.providers_answer(router)
    gate = fx.gate_answers(router, 503)
    await no_pack_fresh(db)
    before = await fx.snapshot(dsn)
    alert = make_alert("PricingPackNotReady", {"service": "dawsos", "date": str(day)})
    rules = fx.rules_yaml("RB-01", ["PricingPackNotReady"], {**FAST, **params})
    async with harness(target, kube, checks, rules=rules) as h:
        await h.deliver(alert)
        steps = await steps_by_name(h)
        [run] = await h.runs()
        counted = fx.not_corroborated(h)
    assert await fx.snapshot(dsn) == before
    assert fx.job_posts(fake) == []
    assert gate.call_count == 0
    assert (run["outcome"], run["blocked_by"]) == ("blocked", "not_corroborated")
    assert counted == 1
    assert steps["recent_packs"]["reason"].startswith(f"not corroborated: {day} {why}")
    for name in ("serve_last_good", "rerun_build", "await_build", "mark_fresh"):
        assert steps[name]["outcome"] == "skipped", name
        assert steps[name]["reason"] == "not run: blocked by guard not_corroborated"


async def test_a_pack_that_is_fresh_already_is_not_late_and_nothing_changes(
    target, fake, kube, http
) -> None:
    """The alert claims today's pack is missing, but it is built and fresh."""
    dsn, db = target
    checks, router = http
    fx.providers_answer(router)
    fx.gate_answers(router, 200)
    if "status" in await db.columns("pricing_pack"):
        await db.execute("UPDATE pricing_pack SET status = 'ready', hash = 'built'")
    await db.execute("UPDATE pricing_pack SET is_fresh = (id = $1)", TODAY)
    before = await fx.snapshot(dsn)
    async with harness(target, kube, checks) as h:
        await h.deliver(ALERT)
        steps = await steps_by_name(h)
        [run] = await h.runs()
    assert await fx.snapshot(dsn) == before
    assert fx.job_posts(fake) == []
    assert run["blocked_by"] == "not_corroborated"
    assert steps["recent_packs"]["reason"] == (
        f"not corroborated: {TODAY} is fresh already: the pack for {D} is not late;"
        " nothing built or marked"
    )


async def test_the_same_date_while_its_pack_is_late_is_mitigated(target, fake, kube, http) -> None:
    """The forged-date tests' counterpart: today's date, its pack still building."""
    dsn, db = target
    checks, router = http
    fx.providers_answer(router, down={"fmp": 503})
    fx.gate_answers(router, 200)
    await no_pack_fresh(db)
    before = await fx.snapshot(dsn)
    alert = make_alert("PricingPackNotReady", {"service": "dawsos", "date": str(D)})
    async with harness(target, kube, checks) as h:
        await h.deliver(alert)
        steps = await steps_by_name(h)
        [run] = await h.runs()
    assert run["blocked_by"] is None
    assert steps["recent_packs"]["result"]["data"]["late"] == str(D)
    assert await fx.snapshot(dsn) == fx.changed(
        before, "pricing_pack", "id", {YESTERDAY: {"is_fresh": True}}
    )


def test_yesterdays_pack_is_late_only_within_the_grace_after_midnight() -> None:
    params = rb01.Params(late_grace_minutes=120)
    today = date(2026, 11, 28)
    just_after = datetime(2026, 11, 28, 1, 59, tzinfo=UTC)
    later = datetime(2026, 11, 28, 2, 0, tzinfo=UTC)
    rb01.corroborate_date(today, params, just_after)
    rb01.corroborate_date(today, params, later)
    rb01.corroborate_date(today - timedelta(days=1), params, just_after)
    for day, now in (
        (today - timedelta(days=1), later),
        (today - timedelta(days=2), just_after),
        (today + timedelta(days=1), just_after),
    ):
        with pytest.raises(NotCorroborated):
            rb01.corroborate_date(day, params, now)


def test_pack_date_is_the_day_in_the_slo_zone_not_utc() -> None:
    """03:00 UTC is still the evening before in New York: tonight's pack is that day's."""
    late_evening = datetime(2026, 11, 28, 3, 0, tzinfo=UTC)
    assert rb01.Params().timezone == "America/New_York"
    assert rb01.pack_date({}, rb01.Params(), late_evening) == date(2026, 11, 27)
    utc = rb01.Params(timezone="UTC")
    assert rb01.pack_date({}, utc, late_evening) == date(2026, 11, 28)
    # A date label is checked against the same day.
    assert rb01.pack_date({"date": "2026-11-27"}, rb01.Params(), late_evening) == date(2026, 11, 27)


def test_params_refuse_unsafe_values() -> None:
    for bad in (
        {"rerun_max_attempts": 0},
        {"build_image": "x; rm -rf /"},
        {"timezone": "Mars/Olympus"},
        {"build_wait_seconds": 3600},
        {"build_poll_seconds": 60, "build_wait_seconds": 30},
        {"late_grace_minutes": -1},
        {"late_grace_minutes": 24 * 60},
        {"unknown": 1},
    ):
        with pytest.raises(ValueError):
            rb01.Params.model_validate(bad)


# ------------------------------------------- shipped rules and example payloads

ROOT = Path(__file__).resolve().parents[2]
OURS = {
    "RB-01": ["PricingPackBuildSlow", "PricingPackNotReady"],
    "RB-02": ["ProviderErrorRateHigh", "ProviderCircuitBreakerOpen"],
    "RB-03": ["AlertStorm", "NotificationQueueBacklog"],
}


def shipped_rules(tmp_path: Path) -> Any:
    """rules/dawsos.yaml restricted to RB-01..RB-03 (RB-04..06 are registered elsewhere)."""
    doc = yaml.safe_load((ROOT / "rules" / "dawsos.yaml").read_text())
    assert {r["runbook"] for r in doc["rules"]} <= {f"RB-0{i}" for i in range(1, 7)}
    mine = [r for r in doc["rules"] if r["runbook"] in OURS]
    path = tmp_path / "dawsos.yaml"
    path.write_text(yaml.safe_dump({"rules": mine}))
    ruleset, errors = rules_mod.load(path, fx.registry())
    assert errors == []
    assert ruleset is not None
    return ruleset, mine


def test_shipped_rules_load_and_bind_each_alert_to_its_runbook(tmp_path: Path) -> None:
    ruleset, raw = shipped_rules(tmp_path)
    for runbook, names in OURS.items():
        for name in names:
            labels = {
                "alertname": name,
                "service": "dawsos",
                "severity": "critical",
                "provider": "polygon",
            }
            assert [r.runbook for r in ruleset.select(labels)] == [runbook], name
    assert all("mode" not in r for r in raw)  # the global mode decides
    assert all(r.cooldown > 0 and r.max_runs_per_hour for r in ruleset.rules)
    # Another team's alert of the same name does not drive DawsOS runbooks.
    assert ruleset.select({"alertname": "AlertStorm", "severity": "critical"}) == []


@pytest.mark.parametrize(
    "example",
    sorted(
        p.name
        for p in (ROOT / "remediator" / "examples").glob("*.json")
        if p.name.split("-")[0] in {n for names in OURS.values() for n in names}
    ),
)
def test_example_payloads_replay_as_a_readable_plan(tmp_path: Path, example: str) -> None:
    ruleset, _raw = shipped_rules(tmp_path)
    raw = (ROOT / "remediator" / "examples" / example).read_bytes()
    payload = WebhookPayload.model_validate_json(raw)
    assert json.loads(raw)["version"] == "4"
    [entry] = replay.plan(payload, ruleset, fx.registry(), from_mapping({}, env={}))
    [run] = entry["runs"]
    runbook = fx.registry().get(run["runbook"])
    assert runbook is not None and payload.alerts[0].alertname in OURS[runbook.id]
    if example.endswith("-firing.json"):
        assert [s["name"] for s in run["steps"]] == [s.name for s in runbook.steps]
        assert all(s["call"] and "not rendered" not in s["call"] for s in run["steps"])
    else:
        assert entry["status"] == "resolved"
        # As the engine runs a resolve: the resolve steps, then the undos (latest first).
        undoable = [s for s in reversed(runbook.steps) if s.undo is not None]
        undoable.sort(key=lambda s: s.approval != "approve")
        assert [(s["name"], s["phase"]) for s in run["steps"]] == [
            *((s.name, "resolve") for s in runbook.resolve_steps),
            *((s.name, "undo") for s in undoable),
        ]
    timeline = replay.format_timeline([entry])
    assert f"-> {runbook.id} {runbook.title}" in timeline
