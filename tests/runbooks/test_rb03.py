"""RB-03 alert storm on the real engine: a real DawsOS Postgres (the seed holds a storm
on abc-123, def-456 and ghi-789) and the official Kubernetes client against FakeKubeAPI."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from remediator.clients.database import TargetDatabase
from remediator.clients.kubernetes import KubernetesClient
from remediator.runbooks import rb03_alert_storm as rb03
from remediator.testing import Harness, make_alert, resolved
from tests.fixtures.kube_api import FakeKubeAPI
from tests.runbooks import _rb0103_fixtures as fx

ALERT = make_alert("AlertStorm", {"severity": "critical", "service": "dawsos"})
OFFENDERS = ["abc-123", "def-456", "ghi-789"]
SCALE_PATH = f"/apis/apps/v1/namespaces/{fx.NS}/deployments/scheduler/scale"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(params=fx.SCHEMAS)
async def target(request: pytest.FixtureRequest) -> AsyncIterator[tuple[str, TargetDatabase]]:
    async with fx.dawsos_db(request.config, request.param) as pair:
        yield pair


@pytest.fixture
async def fake() -> AsyncIterator[FakeKubeAPI]:
    async with FakeKubeAPI() as server:
        server.add_deployment(fx.NS, "scheduler", replicas=2)
        yield server


@pytest.fixture
async def kube(fake: FakeKubeAPI) -> AsyncIterator[KubernetesClient]:
    async with fx.kube_client(fake.url) as client:
        yield client


def harness(
    target: tuple[str, TargetDatabase],
    kube: KubernetesClient,
    *,
    params: dict[str, Any] | None = None,
    **kw: Any,
) -> Harness:
    rules = fx.rules_yaml("RB-03", ["AlertStorm", "NotificationQueueBacklog"], params)
    return Harness(fx.registry(), rules, clients=fx.clients(db=target[1], kube=kube), **kw)


async def steps_of(h: Harness, phase: str | None = None) -> dict[str, dict[str, Any]]:
    [run] = await h.runs()
    return {s["name"]: s for s in await h.steps(run["id"], phase)}


async def approval_for(h: Harness, step: str) -> int:
    [run] = await h.runs()
    return int(next(a["id"] for a in await h.approvals(run["id"]) if a["step"] == step))


def storm_mitigated(
    before: fx.Snapshot, *, disabled: list[str] = OFFENDERS, exempt: tuple[str, ...] = ()
) -> fx.Snapshot:
    """``before`` with every cooldown under 60 raised to 60 and ``disabled`` off."""
    updates: dict[str, dict[str, Any]] = {}
    for row in before["alerts"]:
        if row["cooldown_minutes"] < 60 and row["id"] not in exempt:
            updates[row["id"]] = {"cooldown_minutes": 60}
    for alert_id in disabled:
        updates.setdefault(alert_id, {})["active"] = False
    return fx.changed(before, "alerts", "id", updates)


def replicas(fake: FakeKubeAPI) -> int:
    dep = fake.get("deployments", fx.NS, "scheduler")
    assert dep is not None
    return int(dep["spec"]["replicas"])


async def add_duplicates(db: TargetDatabase) -> list[int]:
    """Lose the unique index and let the notifier write 3 duplicates (same day)."""
    await db.execute(f"DROP INDEX {rb03.UNIQUE_INDEX}")
    rows = await db.fetch(
        "INSERT INTO notifications (user_id, alert_id, payload_json, created_at)"
        " SELECT n.user_id, n.alert_id, n.payload_json, n.created_at"
        " FROM (VALUES ('abc-123', 2), ('def-456', 1)) AS k(alert_id, copies)"
        " CROSS JOIN LATERAL generate_series(1, k.copies)"
        " JOIN notifications n"
        "   ON n.id = (SELECT min(id) FROM notifications WHERE alert_id = k.alert_id)"
        " RETURNING id"
    )
    return sorted(r["id"] for r in rows)


# --------------------------------------------------------------------- live


async def test_live_storm_cools_down_and_disables_top_offenders_only(target, fake, kube) -> None:
    dsn, _db = target
    before = await fx.snapshot(dsn)
    async with harness(target, kube) as h:
        await h.deliver(ALERT)
        steps = await steps_of(h, "fire")
        page = fx.page_text(fx.last(h, "trigger"))
        [run] = await h.runs()
        approvals = await h.approvals(run["id"])
    assert await fx.snapshot(dsn) == storm_mitigated(before)
    previous = steps["global_cooldown"]["changes"]["previous"]
    assert previous["abc-123"] == 5 and previous["pgn-101"] == 30
    assert previous["sys-security-incident"] == 0 and "pgn-102" not in previous
    assert steps["disable_offenders"]["changes"] == {"disabled": OFFENDERS, "previous_active": True}
    assert [o["count"] for o in steps["top_offenders"]["result"]["data"]["offenders"][:3]] == [
        120,
        80,
        50,
    ]
    assert steps["check_dedupe"]["result"]["data"]["index_ok"] is True
    assert {s: steps[s]["outcome"] for s in ("delete_duplicates", "scale_evaluator_down")} == {
        "delete_duplicates": "awaiting_approval",
        "scale_evaluator_down": "awaiting_approval",
    }
    assert {a["step"]: a["state"] for a in approvals} == {
        "delete_duplicates": "pending",
        "scale_evaluator_down": "pending",
    }
    assert replicas(fake) == 2
    assert [r for r in fake.requests if r.method != "GET"] == []
    done = fx.section(page, "Done")
    assert any(
        d.startswith(
            "Raise every alert's cooldown (emergency brake): cooldown raised to 60 min on "
        )
        for d in done
    )
    assert (
        "Disable the top offending alerts: disabled abc-123 (120 in 5 min), def-456 (80 in"
        " 5 min), ghi-789 (50 in 5 min); they stay disabled for review"
    ) in done
    left = fx.section(page, "Left for you")
    ids = {a["step"]: a["id"] for a in approvals}
    assert any(
        item.startswith(
            "Scale the alert evaluator (scheduler) to 0: approve with"
            f" `remediator approve {ids['scale_evaluator_down']} "
        )
        for item in left
    )
    assert any(
        item.startswith(
            "Delete duplicate notifications: approve with"
            f" `remediator approve {ids['delete_duplicates']} "
        )
        and "approving now would delete nothing" in item
        for item in left
    )


async def test_approved_steps_run_after_approval_and_delete_only_duplicates(
    target, fake, kube
) -> None:
    dsn, db = target
    dups = await add_duplicates(db)
    before = await fx.snapshot(dsn)
    async with harness(target, kube) as h:
        await h.deliver(ALERT)
        check = (await steps_of(h, "fire"))["check_dedupe"]
        untouched = await fx.snapshot(dsn)
        assert replicas(fake) == 2 and untouched["notifications"] == before["notifications"]
        await h.approve(await approval_for(h, "delete_duplicates"))
        await h.approve(await approval_for(h, "scale_evaluator_down"))
        approved = await steps_of(h, "approved")
        page = fx.page_text(fx.last(h, "trigger"))
    assert check["result"]["data"]["extra_rows"] == 3
    assert check["result"]["data"]["index_present"] is False
    assert f"unique index {rb03.UNIQUE_INDEX} is MISSING" in check["result"]["summary"]
    expected = fx.changed(storm_mitigated(before), "notifications", "id", {}, deleted=dups)
    assert await fx.snapshot(dsn) == expected
    assert [r["id"] for r in approved["delete_duplicates"]["changes"]["deleted"]] == dups
    assert approved["scale_evaluator_down"]["changes"] == {
        "deployment": "scheduler",
        "previous_replicas": 2,
        "replicas": 0,
    }
    assert replicas(fake) == 0
    assert [(r.path, r.body["spec"]) for r in fake.requests if r.method == "PATCH"] == [
        (SCALE_PATH, {"replicas": 0})
    ]
    assert (
        "Scale the alert evaluator (scheduler) to 0 [approved]: scaled deployment/scheduler"
        " from 2 to 0 replicas" in fx.section(page, "Done")
    )


async def test_resolve_restores_each_alerts_own_cooldown_and_the_replicas(
    target, fake, kube
) -> None:
    dsn, db = target
    before = await fx.snapshot(dsn)
    async with harness(target, kube) as h:
        await h.deliver(ALERT)
        await h.approve(await approval_for(h, "scale_evaluator_down"))
        # A human tunes one alert after our emergency brake: undo must keep it.
        await db.execute("UPDATE alerts SET cooldown_minutes = 90 WHERE id = 'ghi-789'")
        await h.deliver(resolved(ALERT))
        await h.deliver(resolved(ALERT))
        undo = await steps_of(h, "undo")
        review = (await steps_of(h, "resolve"))["review_offenders"]
        page = fx.page_text(fx.last(h, "resolve"))
        [run] = await h.runs()
        approvals = await h.approvals(run["id"])
    expected = fx.changed(
        before,
        "alerts",
        "id",
        {
            "abc-123": {"active": False},
            "def-456": {"active": False},
            "ghi-789": {"active": False, "cooldown_minutes": 90},
        },
    )
    assert await fx.snapshot(dsn) == expected
    assert replicas(fake) == 2
    assert undo["global_cooldown"]["outcome"] == "rolled_back"
    assert undo["global_cooldown"]["result"]["data"]["left_alone"] == ["ghi-789"]
    assert undo["scale_evaluator_down"]["outcome"] == "rolled_back"
    assert set(undo) == {"global_cooldown", "scale_evaluator_down"}  # offenders stay off
    assert review["result"]["data"]["disabled"] == OFFENDERS
    assert {a["step"]: a["state"] for a in approvals}["delete_duplicates"] == "expired"
    done = fx.section(page, "Done")
    assert any(
        d.startswith(
            "Raise every alert's cooldown (emergency brake) [undo]: restored"
            " the previous cooldown of"
        )
        and "ghi-789" in d
        for d in done
    )
    assert (
        "Scale the alert evaluator (scheduler) to 0 [undo]: scaled deployment/scheduler"
        " back to 2 replicas" in done
    )
    assert any(
        d.startswith(
            "List disabled offenders for review [resolve]: still disabled,"
            " for review: abc-123 (VIX Spike), def-456 (Portfolio Loss),"
            " ghi-789 (Portfolio Value Check)"
        )
        for d in done
    )


async def test_resolve_leaves_replicas_someone_else_changed(target, fake, kube) -> None:
    async with harness(target, kube) as h:
        await h.deliver(ALERT)
        await h.approve(await approval_for(h, "scale_evaluator_down"))
        await kube.scale("scheduler", 5)  # a human brought it back with 5
        await h.deliver(resolved(ALERT))
        undo = (await steps_of(h, "undo"))["scale_evaluator_down"]
    assert replicas(fake) == 5
    assert undo["outcome"] == "skipped"
    assert undo["reason"] == "deployment/scheduler now has 5 replicas (changed since); left alone"


# ------------------------------------------------------------------ dry-run


async def test_dry_run_changes_nothing_even_when_approved(target, fake, kube) -> None:
    dsn, db = target
    await add_duplicates(db)
    before = await fx.snapshot(dsn)
    async with harness(target, kube, settings={"mode": "dry-run"}) as h:
        await h.deliver(ALERT)
        await h.approve(await approval_for(h, "delete_duplicates"))
        await h.approve(await approval_for(h, "scale_evaluator_down"))
        fire = await steps_of(h, "fire")
        approved = await steps_of(h, "approved")
        page = fx.page_text(fx.last(h, "trigger"))
    assert await fx.snapshot(dsn) == before
    assert replicas(fake) == 2
    assert [r for r in fake.requests if r.method != "GET"] == []
    assert {n: s["outcome"] for n, s in approved.items()} == {
        "delete_duplicates": "dry_run",
        "scale_evaluator_down": "dry_run",
    }
    calls = {n: s["rendered"] for n, s in fire.items()}
    assert set(calls) == {s.name for s in rb03.RUNBOOK.steps}
    assert (
        "UPDATE alerts SET cooldown_minutes = $1 WHERE id = ANY($2::text[])"
        in calls["global_cooldown"]
    )
    assert "WHERE cooldown_minutes < $1" in calls["global_cooldown"]
    assert "-- $1 = 5\n-- $2 = 10" in calls["top_offenders"]
    assert calls["disable_offenders"] == (
        "UPDATE alerts SET active = FALSE WHERE id = ANY($1::text[]) AND active\n"
        f"-- $1 = {OFFENDERS!r}\n"
        "-- precondition: top_offenders found the top offenders"
    )
    assert "HAVING COUNT(*) > 1" in calls["check_dedupe"]
    assert "i.indexname = $1" in calls["check_dedupe"]
    assert "DELETE FROM notifications WHERE id = ANY($1::bigint[])" in calls["delete_duplicates"]
    assert "check_dedupe found 3 extra rows" in calls["delete_duplicates"]
    assert calls["scale_evaluator_down"].startswith(
        f"kubectl scale deployment/scheduler -n {fx.NS} --replicas=0"
    )
    assert page.startswith("DRY-RUN: nothing was changed")
    skipped = fx.section(page, "Skipped (why)")
    assert any(
        s.startswith(
            "Disable the top offending alerts: dry-run: not executed;"
            " would run: UPDATE alerts SET active = FALSE"
        )
        for s in skipped
    )


# ------------------------------------------------------------------- guards


async def test_only_top_n_above_threshold_are_disabled_and_exempt_alerts_untouched(
    target, fake, kube
) -> None:
    dsn, _db = target
    before = await fx.snapshot(dsn)
    params = {"disable_top_n": 2, "min_notifications": 60, "exempt_alerts": ["abc-123"]}
    async with harness(target, kube, params=params) as h:
        await h.deliver(ALERT)
        steps = await steps_of(h, "fire")
    # abc-123 is exempt, def-456 (80) qualifies, ghi-789 (50) is under the threshold.
    assert await fx.snapshot(dsn) == storm_mitigated(
        before, disabled=["def-456"], exempt=("abc-123",)
    )
    assert steps["disable_offenders"]["changes"]["disabled"] == ["def-456"]


async def test_forged_storm_changes_nothing_and_is_not_corroborated(target, fake, kube) -> None:
    """The storm ended an hour ago: an AlertStorm now is a claim the table does not
    support. No cooldown is raised, no alert disabled, nothing offered for approval."""
    dsn, db = target
    await db.execute(
        "UPDATE notifications SET created_at = created_at - interval '1 hour'"
        " WHERE created_at > now() - interval '10 minutes'"
    )
    before = await fx.snapshot(dsn)
    async with harness(target, kube) as h:
        await h.deliver(ALERT)
        steps = await steps_of(h, "fire")
        [run] = await h.runs()
        approvals = await h.approvals(run["id"])
        counted = fx.not_corroborated(h)
    assert await fx.snapshot(dsn) == before
    assert replicas(fake) == 2 and [r for r in fake.requests if r.method != "GET"] == []
    assert (run["outcome"], run["blocked_by"]) == ("blocked", "not_corroborated")
    assert counted == 1
    assert approvals == []
    assert steps["confirm_storm"]["reason"] == (
        "not corroborated: 0 notifications in the last 5 min, fewer than the 200 of a"
        " storm (40 a minute): no cooldown raised, no alert disabled"
    )
    assert {steps[s]["outcome"] for s in steps if s != "confirm_storm"} == {"skipped"}


async def test_the_storm_in_the_table_is_confirmed_before_the_brake(target, fake, kube) -> None:
    """The forged storm's counterpart: the seed's storm (253 in the window) is seen."""
    dsn, _db = target
    before = await fx.snapshot(dsn)
    async with harness(target, kube) as h:
        await h.deliver(ALERT)
        steps = await steps_of(h, "fire")
    assert steps["confirm_storm"]["outcome"] == "applied"
    assert steps["confirm_storm"]["result"]["data"] == {"notifications": 253, "threshold": 200}
    assert await fx.snapshot(dsn) == storm_mitigated(before)


async def test_shipped_exempt_alerts_keep_their_cooldown_and_stay_active(
    target, fake, kube
) -> None:
    """With the shipped params, the security and rights notices are neither cooled down
    nor disabled, even when they are among the noisiest alerts of the storm."""
    dsn, db = target
    # The security notice went to 60 users in the storm window: a top offender.
    await db.execute(
        "INSERT INTO notifications (user_id, alert_id, payload_json, created_at)"
        " SELECT md5('dawsos:user:' || u)::uuid, 'sys-security-incident', '{}'::jsonb,"
        " now() - interval '1 minute' FROM generate_series(1, 60) AS u"
    )
    shipped = yaml.safe_load((ROOT / "rules" / "dawsos.yaml").read_text())
    [params] = [r["params"] for r in shipped["rules"] if r["name"] == "alert-storm"]
    exempt = tuple(params["exempt_alerts"])
    assert set(exempt) == {"sys-security-incident", "sys-rights-violation"}
    before = await fx.snapshot(dsn)
    async with harness(target, kube, params=params) as h:
        await h.deliver(ALERT)
        steps = await steps_of(h, "fire")
    assert await fx.snapshot(dsn) == storm_mitigated(before, exempt=exempt)
    rows = {r["id"]: r for r in (await fx.snapshot(dsn))["alerts"]}
    assert all(rows[i]["cooldown_minutes"] == 0 and rows[i]["active"] for i in exempt)
    assert not set(exempt) & set(steps["global_cooldown"]["changes"]["previous"])
    offenders = [o["id"] for o in steps["top_offenders"]["result"]["data"]["offenders"]]
    assert offenders[:2] == ["abc-123", "def-456"] and "sys-security-incident" in offenders
    assert steps["disable_offenders"]["changes"]["disabled"] == OFFENDERS


async def test_delete_refuses_more_than_max_delete(target, fake, kube) -> None:
    dsn, db = target
    await add_duplicates(db)
    async with harness(target, kube, params={"max_delete": 2}) as h:
        await h.deliver(ALERT)
        after_fire = await fx.snapshot(dsn)
        await h.approve(await approval_for(h, "delete_duplicates"))
        step = (await steps_of(h, "approved"))["delete_duplicates"]
    assert await fx.snapshot(dsn) == after_fire
    assert step["outcome"] == "failed"
    assert step["reason"].startswith("more than max_delete=2 duplicates; nothing deleted")


async def test_hostile_labels_never_reach_sql_or_the_cluster(target, fake, kube) -> None:
    dsn, _db = target
    hostile = {
        "provider": "polygon' OR '1'='1",
        "namespace": "../kube-system",
        "deployment": "../scheduler",
        "source_ip": "0.0.0.0/0",
        "note": "z" * 10_240,
    }
    before = await fx.snapshot(dsn)
    async with harness(target, kube) as h:
        await h.deliver(make_alert("NotificationQueueBacklog", hostile))
        await h.approve(await approval_for(h, "scale_evaluator_down"))
        steps = {**await steps_of(h, "fire"), **await steps_of(h, "approved")}
        page = fx.page_text(fx.last(h, "trigger"))
    # Exactly what a clean storm run does: RB-03 reads no label.
    assert await fx.snapshot(dsn) == storm_mitigated(before)
    assert [r.path for r in fake.requests if r.method == "PATCH"] == [SCALE_PATH]
    for s in steps.values():
        for value in ("'1'='1", "../", "0.0.0.0/0", "zzzz"):
            assert value not in (s["rendered"] or "")
    assert "zzzz" * 100 not in page


def test_params_refuse_unsafe_values() -> None:
    for bad in (
        {"evaluator_deployment": "../scheduler"},
        {"cooldown_minutes": 0},
        {"disable_top_n": 50},
        {"exempt_alerts": ["x" * 65]},
        {"storm_per_minute": 0},
        {"max_delete": 0},
        {"cooldown": 60},
    ):
        with pytest.raises(ValueError):
            rb03.Params.model_validate(bad)


async def test_disabling_waits_for_top_offenders_a_failed_read_disables_nothing(
    target, fake, kube
) -> None:
    """The precondition the plan shows is checked at run time: with the offenders'
    read failing (the alerts table's join column is gone), nothing is disabled and
    the step says which precondition was not met."""
    _dsn, db = target
    await db.execute("ALTER TABLE notifications RENAME COLUMN alert_id TO alert_ref")
    active_before = await db.fetch("SELECT id FROM alerts WHERE active ORDER BY id")
    async with harness(target, kube) as h:
        await h.deliver(ALERT)
        fire = await steps_of(h, "fire")
    assert fire["top_offenders"]["outcome"] == "failed"
    assert fire["disable_offenders"]["outcome"] == "skipped"
    assert fire["disable_offenders"]["reason"].startswith(
        "precondition not met: top_offenders found the top offenders"
    )
    assert await db.fetch("SELECT id FROM alerts WHERE active ORDER BY id") == active_before
