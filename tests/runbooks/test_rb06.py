"""RB-06 Security incident on real parts: a seeded DawsOS Postgres, a WAFv2 IP set in moto
(server mode) through the real AwsClient, the official Kubernetes client against
FakeKubeAPI, the real engine through the Harness.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web

from remediator.clients.database import TargetDatabase
from remediator.runbook_api.context import Clients
from remediator.runbook_api.steps import Done, Skip
from remediator.runbooks.rb06_block import WafBlock
from remediator.testing import Harness, make_alert, resolved
from tests.fixtures.dawsos import (
    IDOR_USER,
    SUSPICIOUS_IP,
    SUSPICIOUS_LOGIN_USERS,
    TABLE_WITHOUT_POLICY,
)
from tests.fixtures.kube_api import FakeKubeAPI
from tests.runbooks import _rb0406_fixtures as fx

ALERTS = ("SuspiciousRequestRate", "IdorSpike", "JwtLeakDetected")
OLD_SECRET = "old-jwt-signing-secret-that-leaked"
EXISTING_BLOCK = "203.0.113.99/32"
ALLOWED = "198.51.100.0/24"  # our office
SUSPICIOUS = make_alert(
    "SuspiciousRequestRate", {"source_ip": SUSPICIOUS_IP, "severity": "page", "service": "dawsos"}
)


@pytest.fixture(scope="module")
def moto_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with fx.aws_environment(tmp_path_factory.mktemp("aws")), fx.moto_endpoint() as url:
        yield url


@dataclass
class World:
    dsn: str
    db: TargetDatabase
    clients: Clients
    kube: FakeKubeAPI
    waf: Any
    ip_set: str
    ip_set_id: str

    def rules(self, **extra: Any) -> str:
        params = {
            "waf_ip_set_name": self.ip_set,
            "waf_ip_set_id": self.ip_set_id,
            "allow_list": [ALLOWED],
            **extra.pop("params", {}),
        }
        return fx.rules_yaml("RB-06", ALERTS, params, **extra)

    def blocked(self) -> set[str]:
        got = self.waf.get_ip_set(Name=self.ip_set, Scope="REGIONAL", Id=self.ip_set_id)
        return set(got["IPSet"]["Addresses"])

    def secret(self) -> dict[str, str]:
        return self.kube.secret_data(fx.NS, "jwt-secret")

    def restarted_at(self) -> str | None:
        dep = self.kube.get("deployments", fx.NS, "api")
        assert dep is not None
        annotations = dep["spec"]["template"]["metadata"].get("annotations") or {}
        return annotations.get("kubectl.kubernetes.io/restartedAt")


# RB-06 runs on the runbook-named columns too.
@pytest.fixture(params=("full", "minimal"))
async def world(request: pytest.FixtureRequest, moto_url: str) -> AsyncIterator[World]:
    async with (
        fx.dawsos_db(request.config, request.param) as (dsn, db),
        fx.aws_client(moto_url) as aws,
        FakeKubeAPI() as kube,
        fx.kube_client(kube.url) as k8s,
    ):
        kube.add_secret(fx.NS, "jwt-secret", {"JWT_SECRET": OLD_SECRET, "OTHER": "kept"})
        kube.add_deployment(fx.NS, "api", replicas=3)
        waf = fx.admin_client("wafv2", moto_url)
        name = fx.unique("dawsos-blocked-ips")
        created = waf.create_ip_set(
            Name=name, Scope="REGIONAL", IPAddressVersion="IPV4", Addresses=[EXISTING_BLOCK]
        )
        yield World(
            dsn,
            db,
            Clients(database=db, aws=aws, kubernetes=k8s),
            kube,
            waf,
            name,
            created["Summary"]["Id"],
        )


async def probes_from(db: TargetDatabase, ip: str, n: int = 5) -> None:
    """``n`` recent '403_idor' audit rows from ``ip``: the trace an IDOR probe leaves."""
    await db.execute(
        "INSERT INTO audit_log (user_id, portfolio_id, action, meta_json, ts)"
        " SELECT $1::uuid, NULL, '403_idor', jsonb_build_object('ip_address', $2::text),"
        " now() - make_interval(mins => i) FROM generate_series(1, $3) AS i",
        fx.uid(77),
        ip,
        n,
    )


# ------------------------------------------------------------------ live path


async def test_firing_blocks_the_ip_diagnoses_and_changes_nothing_else(world: World) -> None:
    before = await fx.snapshot(world.dsn)
    async with Harness(fx.registry(), world.rules(), clients=world.clients) as h:
        await h.deliver(SUSPICIOUS)
        assert world.blocked() == {EXISTING_BLOCK, f"{SUSPICIOUS_IP}/32"}
        assert await fx.snapshot(world.dsn) == before
        assert world.secret() == {"JWT_SECRET": OLD_SECRET, "OTHER": "kept"}
        assert world.restarted_at() is None

        [run] = await h.runs()
        steps = await fx.steps_by_name(h, run["id"])
        assert steps["block_source_ip"]["changes"] == {
            "ip_set": world.ip_set,
            "ip_set_id": world.ip_set_id,
            "scope": "REGIONAL",
            "added": [f"{SUSPICIOUS_IP}/32"],
        }
        idor = steps["idor_audit"]["result"]["data"]
        assert idor["count"] == 30 and idor["users"] == [fx.uid(IDOR_USER)]
        assert steps["rls_gaps"]["result"]["data"]["without_policy"] == [TABLE_WITHOUT_POLICY]
        logins = steps["logins_from_ip"]["result"]["data"]["user_ids"]
        assert sorted(logins) == sorted(fx.uid(n) for n in SUSPICIOUS_LOGIN_USERS)
        for s in ("rotate_jwt_secret", "force_password_resets", "notify_users"):
            assert steps[s]["outcome"] == "awaiting_approval", s

        first, last = h.pager.triggers()
        assert (
            first.content.title == "[RB-06] SuspiciousRequestRate: paged first; diagnosis running"
        )
        body = fx.page_text(last)
        done, rest = body.split("Skipped (why)")
        skipped, left = rest.split("Left for you")
        assert (
            f"blocked {SUSPICIOUS_IP}/32 in WAF IP set {world.ip_set}; kept after the alert"
            " resolves, for review" in done
        )
        assert "30 '403_idor' audit rows in the last 24 h from 1 users" in done
        assert f"portfolio-scoped tables WITHOUT an RLS policy: {TABLE_WITHOUT_POLICY}" in done
        assert f"{len(SUSPICIOUS_LOGIN_USERS)} accounts logged in from {SUSPICIOUS_IP}/32" in done
        # The only skip: no web ACL configured for step 2 (tests below read it).
        assert [ln for ln in skipped.splitlines() if ln.startswith("- ")] == [
            "- Read the WAF's sampled requests from the source address: no web ACL configured"
            " (waf_web_acl_name, waf_web_acl_id): read the WAF's sampled requests by hand"
        ]
        for step in ("rotate_jwt_secret", "force_password_resets", "notify_users"):
            assert f"remediator approve {await fx.approval_for(h, run['id'], step)}" in left
        assert "kubectl rollout restart deployment/api -n prod" in left
        assert OLD_SECRET not in body


async def test_dry_run_changes_nothing_and_the_plan_renders_every_step(world: World) -> None:
    before = await fx.snapshot(world.dsn)
    async with Harness(
        fx.registry(), world.rules(), clients=world.clients, settings={"mode": "dry-run"}
    ) as h:
        await h.deliver(SUSPICIOUS)
        assert world.blocked() == {EXISTING_BLOCK}
        assert await fx.snapshot(world.dsn) == before
        assert world.secret()["JWT_SECRET"] == OLD_SECRET
        [run] = await h.runs()
        steps = await fx.steps_by_name(h, run["id"])
        assert list(steps) == [s.name for s in fx.registry().get("RB-06").steps]  # type: ignore[union-attr]
        assert steps["block_source_ip"]["outcome"] == "dry_run"
        assert steps["block_source_ip"]["rendered"] == (
            f"aws wafv2 update-ip-set --name {world.ip_set} --id {world.ip_set_id} --scope"
            f" REGIONAL --addresses <current addresses> {SUSPICIOUS_IP}/32 --lock-token <token>"
        )
        assert steps["rotate_jwt_secret"]["rendered"].startswith(
            "kubectl patch secret jwt-secret -n prod --type merge"
        )
        assert "FROM audit_log" in steps["idor_audit"]["rendered"]
        assert "FROM pg_tables AS t" in steps["rls_gaps"]["rendered"]
        assert f"-- $1 = ['{SUSPICIOUS_IP}']" in steps["logins_from_ip"]["rendered"]
        # The lookup reads, so the plan names the exact accounts.
        for n in SUSPICIOUS_LOGIN_USERS:
            assert fx.uid(n) in steps["force_password_resets"]["rendered"]
            assert fx.uid(n) in steps["notify_users"]["rendered"]
        assert "DRY-RUN: nothing was changed" in fx.page_text(h.pager.triggers()[-1])


# --------------------------------------------------------------- approve steps


async def test_jwt_rotation_waits_for_approval_and_the_secret_is_never_recorded(
    world: World, capfd: pytest.CaptureFixture[str]
) -> None:
    jwt = make_alert("JwtLeakDetected", {"severity": "page", "service": "dawsos"})
    async with Harness(fx.registry(), world.rules(), clients=world.clients) as h:
        await h.deliver(jwt)
        [run] = await h.runs()
        assert world.secret()["JWT_SECRET"] == OLD_SECRET
        assert world.restarted_at() is None

        await h.approve(await fx.approval_for(h, run["id"], "rotate_jwt_secret"))
        secret = world.secret()
        new = secret["JWT_SECRET"]
        assert new != OLD_SECRET and len(new) >= 43  # token_urlsafe(32)
        assert secret["OTHER"] == "kept"
        assert world.restarted_at() is not None

        approved = await fx.steps_by_name(h, run["id"], "approved")
        assert approved["rotate_jwt_secret"]["outcome"] == "applied"
        assert new not in fx.stored_text(h)
        assert all(new not in repr(e) for e in h.pager.sent)
        out, err = capfd.readouterr()
        assert new not in out and new not in err
        body = fx.page_text(h.pager.triggers()[-1])
        assert "rotated JWT_SECRET in secret jwt-secret and restarted deployment api" in body


async def test_password_resets_and_notifications_touch_exactly_the_accounts_from_the_ip(
    world: World,
) -> None:
    accounts = {fx.uid(n) for n in SUSPICIOUS_LOGIN_USERS}
    async with Harness(fx.registry(), world.rules(), clients=world.clients) as h:
        await h.deliver(SUSPICIOUS)
        [run] = await h.runs()
        before = await fx.snapshot(world.dsn)

        await h.approve(await fx.approval_for(h, run["id"], "force_password_resets"))
        mid = await fx.snapshot(world.dsn)
        changed = fx.diff(before, mid)
        assert list(changed) == ["users"]
        old, new = changed["users"]
        assert {r["id"] for r in old} == {r["id"] for r in new} == accounts
        assert all(not r["password_reset_required"] for r in old)
        assert all(r["password_reset_required"] for r in new)
        approved = await fx.steps_by_name(h, run["id"], "approved")
        assert {u["id"] for u in approved["force_password_resets"]["changes"]["users"]} == accounts

        await h.approve(await fx.approval_for(h, run["id"], "notify_users"))
        changed = fx.diff(mid, await fx.snapshot(world.dsn))
        assert list(changed) == ["notifications"]
        gone, added = changed["notifications"]
        assert gone == []
        assert {r["user_id"] for r in added} == accounts and len(added) == len(accounts)
        assert {r["alert_id"] for r in added} == {"sys-security-incident"}
        assert {r["payload_json"]["message"] for r in added} == {
            "Security incident detected. Please reset your password."
        }

        body = fx.page_text(h.pager.triggers()[-1])
        assert f"notified {len(accounts)} accounts" in body
        assert f"forced a password reset for {len(accounts)} accounts" in body


# ----------------------------------------------------------------- resolve


async def test_resolve_keeps_the_block_and_lists_it_for_review(world: World) -> None:
    async with Harness(fx.registry(), world.rules(), clients=world.clients) as h:
        await h.deliver(SUSPICIOUS)
        [run] = await h.runs()
        await h.approve(await fx.approval_for(h, run["id"], "force_password_resets"))
        after = await fx.snapshot(world.dsn)
        await h.deliver(resolved(SUSPICIOUS))
        assert world.blocked() == {EXISTING_BLOCK, f"{SUSPICIOUS_IP}/32"}
        assert await fx.snapshot(world.dsn) == after
        assert await h.steps(run["id"], "undo") == []
        [page] = h.pager.resolves()
        body = fx.page_text(page)
        assert (
            f"kept blocked for review: {SUSPICIOUS_IP}/32 in {world.ip_set}; unblock after"
            " review with aws wafv2 update-ip-set" in body
        )


async def test_the_block_record_is_enough_to_unblock_exactly_what_was_blocked(
    world: World,
) -> None:
    """RB-06 never unblocks; the block's recorded changes build its undo (WafUnblock),
    whose call the review page hands a human, and which lifts only this run's block."""
    async with Harness(fx.registry(), world.rules(), clients=world.clients) as h:
        await h.deliver(SUSPICIOUS)
        [run] = await h.runs()
        [block] = [s for s in await h.steps(run["id"], "fire") if s.name == "block_source_ip"]
        await h.deliver(resolved(SUSPICIOUS))
        body = fx.page_text(h.pager.resolves()[-1])
    assert block.changes is not None
    unblock = WafBlock(world.ip_set, None, "REGIONAL", None, False, 1).undo(block.changes)
    assert unblock.render() == (
        f"aws wafv2 update-ip-set --name {world.ip_set} --id {world.ip_set_id} --scope"
        f" REGIONAL --addresses <current addresses without {SUSPICIOUS_IP}/32> --lock-token"
        " <token>"
    )
    assert f"unblock after review with {unblock.render()}" in body
    # Before a run, the undo's call shows a placeholder for what the block will record.
    planned = WafBlock(world.ip_set, world.ip_set_id, "REGIONAL", None, False, 1).planned_undo()
    assert planned == unblock.render().replace(f"{SUSPICIOUS_IP}/32", "<the addresses added>")
    assert world.blocked() == {EXISTING_BLOCK, f"{SUSPICIOUS_IP}/32"}
    done = await unblock.execute(world.clients)
    assert isinstance(done, Done), done
    assert world.blocked() == {EXISTING_BLOCK}
    again = await unblock.execute(world.clients)
    assert isinstance(again, Skip) and "unblocked since" in again.reason
    assert world.blocked() == {EXISTING_BLOCK}


# ------------------------------------------------------------------- guards


@pytest.mark.parametrize(
    "source_ip",
    [
        "10.0.0.0/8",
        "0.0.0.0/0",
        "127.0.0.1",
        "169.254.169.254",
        "192.168.1.20",
        "::1",
        "198.51.100.7",
        "203.0.112.0/22",
        "192.0.2.1; rm -rf /",
        "../192.0.2.1",
        "1" * 10_240,
    ],
    ids=[
        "private",
        "everything",
        "loopback",
        "link-local",
        "private-host",
        "v6-loopback",
        "allow-listed",
        "too-broad",
        "shell",
        "dotdot",
        "10kB",
    ],
)
async def test_never_blocks_private_allow_listed_or_broad_ranges_and_reports_it(
    world: World, source_ip: str
) -> None:
    before = await fx.snapshot(world.dsn)
    alert = make_alert("SuspiciousRequestRate", {"source_ip": source_ip})
    async with Harness(fx.registry(), world.rules(), clients=world.clients) as h:
        await h.deliver(alert)
        assert world.blocked() == {EXISTING_BLOCK}
        assert await fx.snapshot(world.dsn) == before
        [run] = await h.runs()
        steps = await fx.steps_by_name(h, run["id"])
        assert steps["block_source_ip"]["outcome"] == "failed"
        assert steps["block_source_ip"]["reason"].startswith("rejected input source_ip:")
        body = fx.page_text(h.pager.triggers()[-1])
        assert "Block the source IP in the WAF IP set FAILED: rejected input source_ip:" in body
        assert "1" * 100 not in body


async def test_at_most_n_blocks_per_hour(world: World) -> None:
    ips = ["203.0.113.10", "203.0.113.11", "203.0.113.12"]
    for ip in ips:  # each address really probed portfolios (corroboration)
        await probes_from(world.db, ip)
    async with Harness(fx.registry(), world.rules(max_runs_per_hour=2), clients=world.clients) as h:
        for ip in ips:
            await h.deliver(make_alert("SuspiciousRequestRate", {"source_ip": ip}))
        assert world.blocked() == {EXISTING_BLOCK, f"{ips[0]}/32", f"{ips[1]}/32"}
        runs = {r["alert"]["labels"]["source_ip"]: r for r in await h.runs()}
        assert runs[ips[2]]["blocked_by"] == "rate_limit"
        assert await h.steps(runs[ips[2]]["id"]) == []


async def test_forged_address_without_traces_is_not_blocked(world: World) -> None:
    """203.0.113.50 probed portfolios two days ago, nothing since: an alert about it now
    blocks nothing and offers nothing for approval."""
    alert = make_alert("SuspiciousRequestRate", {"source_ip": "203.0.113.50"})
    before = await fx.snapshot(world.dsn)
    async with Harness(fx.registry(), world.rules(), clients=world.clients) as h:
        await h.deliver(alert)
        [run] = await h.runs()
        steps = await fx.steps_by_name(h, run["id"])
        approvals = await h.approvals(run["id"])
        counted = fx.not_corroborated(h)
    assert world.blocked() == {EXISTING_BLOCK}
    assert await fx.snapshot(world.dsn) == before
    assert world.secret()["JWT_SECRET"] == OLD_SECRET
    assert (run["outcome"], run["blocked_by"]) == ("blocked", "not_corroborated")
    assert counted == 1
    assert approvals == []
    assert steps["confirm_source"]["reason"] == (
        "not corroborated: 203.0.113.50/32 left 0 '403_idor' audit rows and 0 login"
        " events in the last 24 h, fewer than min_evidence=5: not blocked"
    )
    assert {steps[s]["outcome"] for s in steps if s != "confirm_source"} == {"skipped"}


async def test_the_same_address_with_recent_probes_is_blocked(world: World) -> None:
    """The forged alert's counterpart: the address probed portfolios in the last hour."""
    await probes_from(world.db, "203.0.113.50")
    alert = make_alert("SuspiciousRequestRate", {"source_ip": "203.0.113.50"})
    async with Harness(fx.registry(), world.rules(), clients=world.clients) as h:
        await h.deliver(alert)
        [run] = await h.runs()
        steps = await fx.steps_by_name(h, run["id"])
    assert world.blocked() == {EXISTING_BLOCK, "203.0.113.50/32"}
    assert run["blocked_by"] is None
    assert steps["confirm_source"]["result"]["summary"] == (
        "203.0.113.50/32 left 5 '403_idor' audit rows in the last 24 h"
    )


async def test_logins_alone_can_confirm_an_address(world: World) -> None:
    """192.0.2.1's logins (5 accounts, 10 failures) confirm it without any 403 row."""
    await world.db.execute("DELETE FROM audit_log WHERE action = '403_idor'")
    async with Harness(fx.registry(), world.rules(), clients=world.clients) as h:
        await h.deliver(SUSPICIOUS)
        [run] = await h.runs()
        steps = await fx.steps_by_name(h, run["id"])
    assert world.blocked() == {EXISTING_BLOCK, f"{SUSPICIOUS_IP}/32"}
    assert steps["confirm_source"]["result"]["data"]["logins"] == 15


async def test_empty_allow_list_in_live_mode_blocks_nothing_and_says_so(world: World) -> None:
    """Live mode without an allow_list: even a confirmed address is not blocked (the
    confirmation fails visibly); the diagnosis still runs for the human."""
    before = await fx.snapshot(world.dsn)
    async with Harness(
        fx.registry(), world.rules(params={"allow_list": []}), clients=world.clients
    ) as h:
        await h.deliver(SUSPICIOUS)
        [run] = await h.runs()
        steps = await fx.steps_by_name(h, run["id"])
        body = fx.page_text(h.pager.triggers()[-1])
    assert world.blocked() == {EXISTING_BLOCK}
    assert await fx.snapshot(world.dsn) == before
    assert run["outcome"] == "failed" and run["blocked_by"] is None
    assert steps["confirm_source"]["outcome"] == "failed"
    assert (
        "allow_list is empty: RB-06 blocks nothing in live mode"
        in (steps["confirm_source"]["reason"])
    )
    assert steps["block_source_ip"]["outcome"] == "skipped"
    assert steps["idor_audit"]["outcome"] == steps["logins_from_ip"]["outcome"] == "applied"
    assert (
        "Confirm the source address in the audit log and logins FAILED:"
        f" {SUSPICIOUS_IP}/32 is confirmed" in body
    )
    assert f"block {SUSPICIOUS_IP}/32 by hand after checking it is not one of them" in body


async def test_empty_allow_list_in_dry_run_plans_the_block_and_warns(world: World) -> None:
    async with Harness(
        fx.registry(),
        world.rules(params={"allow_list": []}),
        clients=world.clients,
        settings={"mode": "dry-run"},
    ) as h:
        await h.deliver(SUSPICIOUS)
        [run] = await h.runs()
        steps = await fx.steps_by_name(h, run["id"])
    assert world.blocked() == {EXISTING_BLOCK}
    assert steps["block_source_ip"]["outcome"] == "dry_run"
    assert steps["confirm_source"]["result"]["summary"] == (
        f"{SUSPICIOUS_IP}/32 left 30 '403_idor' audit rows in the last 24 h;"
        " allow_list is empty: live mode would refuse to block"
    )


def test_check_rules_hook_warns_only_while_the_allow_list_is_empty() -> None:
    runbook = fx.registry().get("RB-06")
    assert runbook is not None
    [warning] = runbook.warnings(runbook.params.model_validate({}))
    assert warning.startswith("allow_list is empty: in live mode RB-06 refuses to block")
    assert runbook.warnings(runbook.params.model_validate({"allow_list": [ALLOWED]})) == []


async def test_refuses_to_grow_an_unreviewed_ip_set(world: World) -> None:
    async with Harness(
        fx.registry(), world.rules(params={"max_ip_set_size": 1}), clients=world.clients
    ) as h:
        await h.deliver(SUSPICIOUS)
        assert world.blocked() == {EXISTING_BLOCK}
        body = fx.page_text(h.pager.triggers()[-1])
        assert (
            f"{world.ip_set} already holds 1 addresses (max_ip_set_size=1): review the"
            f" blocks, then block {SUSPICIOUS_IP}/32 by hand" in body
        )


async def test_an_alert_without_source_ip_blocks_nothing_and_still_diagnoses(world: World) -> None:
    async with Harness(fx.registry(), world.rules(), clients=world.clients) as h:
        await h.deliver(make_alert("IdorSpike", {"severity": "page", "service": "dawsos"}))
        assert world.blocked() == {EXISTING_BLOCK}
        [run] = await h.runs()
        steps = await fx.steps_by_name(h, run["id"])
        assert steps["block_source_ip"]["outcome"] == "skipped"
        assert steps["idor_audit"]["outcome"] == steps["rls_gaps"]["outcome"] == "applied"
        body = fx.page_text(h.pager.triggers()[-1])
        assert (
            "Block the source IP in the WAF IP set: the alert carries no source_ip label:"
            " nothing to block" in body
        )
        assert "Recent logins from the source IP: the alert carries no source_ip label" in body
        before = await fx.snapshot(world.dsn)
        await h.approve(await fx.approval_for(h, run["id"], "force_password_resets"))
        assert await fx.snapshot(world.dsn) == before
        approved = await fx.steps_by_name(h, run["id"], "approved")
        assert approved["force_password_resets"]["outcome"] == "skipped"
        assert (
            approved["force_password_resets"]["reason"]
            == "no account to reset: no login from the alert's address was found"
        )


async def test_resets_fail_visibly_when_the_login_lookup_failed(world: World) -> None:
    """A failed lookup is not "nobody logged in": the approve step says so, changes nothing."""
    await world.db.execute("ALTER TABLE analytics_events RENAME TO analytics_events_moved")
    try:
        async with Harness(fx.registry(), world.rules(), clients=world.clients) as h:
            await h.deliver(SUSPICIOUS)
            [run] = await h.runs()
            steps = await fx.steps_by_name(h, run["id"])
            assert steps["logins_from_ip"]["outcome"] == "failed"
            users = await world.db.fetch("SELECT id, password_reset_required FROM users")
            await h.approve(await fx.approval_for(h, run["id"], "force_password_resets"))
            assert await world.db.fetch("SELECT id, password_reset_required FROM users") == users
            approved = await fx.steps_by_name(h, run["id"], "approved")
            assert approved["force_password_resets"]["outcome"] == "failed"
            assert (
                "the login lookup has no result in this run"
                in approved["force_password_resets"]["reason"]
            )
    finally:
        await world.db.execute("ALTER TABLE analytics_events_moved RENAME TO analytics_events")


# ---------------------------------------------- step 2: WAF sampled requests

WEB_ACL = "dawsos-acl"
WEB_ACL_ID = "3f6d2c1e-8a4b-4c5d-9e7f-0a1b2c3d4e5f"


def _sample(ip: str, uri: str, action: str = "BLOCK", weight: int = 1) -> dict[str, Any]:
    return {
        "Request": {
            "ClientIP": ip,
            "Country": "NL",
            "URI": uri,
            "Method": "GET",
            "HTTPVersion": "HTTP/1.1",
            "Headers": [],
        },
        "Weight": weight,
        "Timestamp": time.time() - 60,
        "Action": action,
    }


@asynccontextmanager
async def waf_samples_api(samples: dict[str, list[dict[str, Any]]]) -> AsyncIterator[str]:
    """AWS WAFv2's JSON protocol for the two reads step 2 makes; what each rule sampled."""
    calls: list[dict[str, Any]] = []

    async def handle(request: web.Request) -> web.Response:
        op = request.headers["X-Amz-Target"].rsplit(".", 1)[-1]
        body = await request.json()
        calls.append({"op": op, **body})
        if op == "GetWebACL":
            assert (body["Name"], body["Id"], body["Scope"]) == (WEB_ACL, WEB_ACL_ID, "REGIONAL")
            rules = [
                {
                    "Name": rule,
                    "Priority": i,
                    "Statement": {},
                    "VisibilityConfig": {
                        "SampledRequestsEnabled": True,
                        "CloudWatchMetricsEnabled": True,
                        "MetricName": rule,
                    },
                }
                for i, rule in enumerate(samples)
            ]
            acl = {
                "Name": WEB_ACL,
                "Id": WEB_ACL_ID,
                "ARN": f"arn:aws:wafv2:x:1:regional/webacl/{WEB_ACL}/{WEB_ACL_ID}",
                "Rules": rules,
            }
            return web.json_response({"WebACL": acl, "LockToken": "t"})
        if op == "GetSampledRequests":
            assert body["WebAclArn"].endswith(WEB_ACL_ID)
            window = body["TimeWindow"]
            assert 0 < window["EndTime"] - window["StartTime"] <= 3600 + 5
            items = samples[body["RuleMetricName"]]
            return web.json_response(
                {"SampledRequests": items, "PopulationSize": len(items), "TimeWindow": window}
            )
        return web.json_response({"__type": "WAFInvalidOperationException"}, status=400)

    app = web.Application()
    app.router.add_post("/", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_step_2_summarises_what_the_waf_sampled_from_the_source_ip(world: World) -> None:
    """moto does not implement GetSampledRequests: a local server speaking WAFv2's JSON
    protocol answers the real AwsClient instead."""
    samples = {
        "rate-limit": [
            _sample(SUSPICIOUS_IP, "/api/portfolio/1", weight=40),
            _sample(SUSPICIOUS_IP, "/api/portfolio/2", weight=40),
            _sample("203.0.113.7", "/api/portfolio/1", action="ALLOW"),
        ],
        "sqli": [
            _sample(SUSPICIOUS_IP, "/search?q=1'%20OR%201=1--"),
            _sample(SUSPICIOUS_IP, "/x?q=<script>"),
        ],
    }
    async with waf_samples_api(samples) as url, fx.aws_client(url) as waf_only:
        clients = Clients(database=world.db, aws=waf_only, kubernetes=world.clients.kubernetes)
        from remediator.runbook_api.context import AlertView, StepContext
        from remediator.runbooks import rb06_security_incident as rb06
        from remediator.runbooks import waf_samples

        params = rb06.Params(waf_web_acl_name=WEB_ACL, waf_web_acl_id=WEB_ACL_ID)
        alert = AlertView(
            "SuspiciousRequestRate", "f", "2026-01-01T00:00:00Z", {"source_ip": SUSPICIOUS_IP}, {}
        )
        ctx = StepContext("r1", "rule", "RB-06", alert, params, "live", clients)
        done = await waf_samples.waf_sampled_requests.run(ctx=ctx)
    assert done.data["from_source"] == 4 and done.data["sampled"] == 5
    assert done.data["by_rule"] == {"rate-limit BLOCK": 2, "sqli BLOCK": 2}
    assert done.data["sqli"] == ["/search?q=1'%20OR%201=1--"]
    assert done.data["xss"] == ["/x?q=<script>"]
    assert done.summary.startswith(
        f"4 of 5 sampled requests in the last 60 min came from {SUSPICIOUS_IP}/32"
        " (standing for ~82); by rule: rate-limit BLOCK: 2, sqli BLOCK: 2"
    )


async def test_step_2_against_moto_reports_that_samples_are_unavailable(world: World) -> None:
    """moto keeps web ACLs but answers GetSampledRequests with 500 (not implemented): the
    step fails with that reason, and containment and the other diagnosis still run."""
    created = world.waf.create_web_acl(
        Name=fx.unique("dawsos-acl"),
        Scope="REGIONAL",
        DefaultAction={"Allow": {}},
        VisibilityConfig={
            "SampledRequestsEnabled": True,
            "CloudWatchMetricsEnabled": True,
            "MetricName": "dawsos",
        },
        Rules=[
            {
                "Name": "rate",
                "Priority": 1,
                "Action": {"Block": {}},
                "Statement": {"RateBasedStatement": {"Limit": 1000, "AggregateKeyType": "IP"}},
                "VisibilityConfig": {
                    "SampledRequestsEnabled": True,
                    "CloudWatchMetricsEnabled": True,
                    "MetricName": "rate-limit",
                },
            }
        ],
    )["Summary"]
    rules = world.rules(
        params={"waf_web_acl_name": created["Name"], "waf_web_acl_id": created["Id"]}
    )
    async with Harness(fx.registry(), rules, clients=world.clients) as h:
        await h.deliver(SUSPICIOUS)
        [run] = await h.runs()
        steps = await fx.steps_by_name(h, run["id"])
    step = steps["waf_sampled_requests"]
    assert step["outcome"] == "failed"
    assert step["reason"].startswith(
        "WAF sampled requests unavailable: aws.wafv2: get_sampled_requests: 500"
    )
    assert "get-sampled-requests --web-acl-arn" in step["rendered"]
    assert steps["block_source_ip"]["outcome"] == "applied"
    assert steps["idor_audit"]["outcome"] == "applied"
