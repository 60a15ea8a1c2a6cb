"""RB-04 Rights registry violation on real parts: a seeded DawsOS Postgres, S3 in moto
(server mode) through the real AwsClient, the real engine through the Harness.

Also: the shipped rules/dawsos-incidents.yaml loads against RB-04..RB-06, and every
example payload of those alerts replays into a plan naming every step.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from remediator.clients.database import TargetDatabase
from remediator.engine import replay, rules
from remediator.models import WebhookPayload
from remediator.runbook_api.context import Clients
from remediator.runbooks import rb04_rights_violation as rb04
from remediator.settings import from_mapping
from remediator.testing import Harness, make_alert, resolved
from tests.fixtures.dawsos import RIGHTS_VIOLATORS
from tests.fixtures.kube_api import FakeKubeAPI
from tests.runbooks import _rb0406_fixtures as fx

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ("RightsExportViolation",)
FMP = make_alert(
    "RightsExportViolation", {"provider": "fmp", "severity": "critical", "service": "dawsos"}
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
    s3: Any
    bucket: str
    exports: dict[str, str]  # S3 key -> user id, for every export_pdf event

    def rules(self, **params: Any) -> str:
        return fx.rules_yaml("RB-04", ALERTS, {"exports_bucket": self.bucket, **params})

    def objects(self) -> set[str]:
        resp = self.s3.list_objects_v2(Bucket=self.bucket)
        return {o["Key"] for o in resp.get("Contents", [])}


# RB-04 runs on the runbook-named columns too (no analytics_events.id, no attribution).
@pytest.fixture(params=("full", "minimal"))
async def world(request: pytest.FixtureRequest, moto_url: str) -> AsyncIterator[World]:
    async with (
        fx.dawsos_db(request.config, request.param) as (dsn, db),
        fx.aws_client(moto_url) as aws,
    ):
        s3 = fx.admin_client("s3", moto_url)
        bucket = fx.unique("dawsos-exports")
        s3.create_bucket(Bucket=bucket)
        rows = await db.fetch(
            "SELECT user_id, payload_json->>'export_id' AS export_id"
            " FROM analytics_events WHERE event_type = 'export_pdf'"
        )
        exports = {f"{r['user_id']}/{r['export_id']}.pdf": str(r["user_id"]) for r in rows}
        for key in [*exports, "reports/quarterly.pdf"]:
            s3.put_object(Bucket=bucket, Key=key, Body=b"%PDF-1.7 test")
        yield World(dsn, db, Clients(database=db, aws=aws), s3, bucket, exports)


async def violating_keys(db: TargetDatabase) -> set[str]:
    """The seed's documented violators' exports of the last 7 days that carry FMP."""
    rows = await db.fetch(
        "SELECT user_id, payload_json->>'export_id' AS export_id FROM analytics_events"
        " WHERE event_type = 'export_pdf' AND created_at > now() - interval '7 days'"
        " AND payload_json->'providers' ? 'FMP' AND user_id = ANY($1::uuid[])",
        [fx.uid(n) for n in RIGHTS_VIOLATORS],
    )
    return {f"{r['user_id']}/{r['export_id']}.pdf" for r in rows}


# ------------------------------------------------------------------ live path


async def test_firing_blocks_the_provider_and_lists_violations_and_changes_nothing_else(
    world: World,
) -> None:
    before, objects = await fx.snapshot(world.dsn), world.objects()
    async with Harness(fx.registry(), world.rules(), clients=world.clients) as h:
        await h.deliver(FMP)
        [run] = await h.runs()
        steps = await fx.steps_by_name(h, run["id"])
        after = await fx.snapshot(world.dsn)

        # Exactly one row changed: FMP's, to restricted with a license required.
        changed = fx.diff(before, after)
        assert list(changed) == ["provider_rights"]
        [old], [new] = changed["provider_rights"]
        assert (old["provider"], old["export"], old["require_license"]) == ("FMP", "allow", False)
        assert new == {**old, "export": "restricted", "require_license": True}
        assert steps["restrict_exports"]["changes"] == {
            "provider_rights": [{"provider": "FMP", "export": "allow", "require_license": False}]
        }
        # Nothing that needs approval ran: every object is still there.
        assert world.objects() == objects

        audit = steps["audit_exports"]["result"]["data"]
        assert set(audit["users"]) == {fx.uid(n) for n in RIGHTS_VIOLATORS}
        assert {v["key"] for v in audit["violations"]} == await violating_keys(world.db)
        assert {
            s: steps[s]["outcome"] for s in ("revoke_pdfs", "notify_users", "grant_license")
        } == {
            "revoke_pdfs": "awaiting_approval",
            "notify_users": "awaiting_approval",
            "grant_license": "awaiting_approval",
        }

        [page] = h.pager.triggers()
        body = fx.page_text(page)
        done, rest = body.split("Skipped (why)")
        skipped, left = rest.split("Left for you")
        assert "FMP: export=allow, require_license=false: MISCONFIGURED" in done
        assert (
            "blocked FMP exports (was export=allow, require_license=false); kept after"
            " the alert resolves: compliance lifts the block" in done
        )
        assert f"by {len(RIGHTS_VIOLATORS)} users" in done
        assert "Check the reported user's licenses: the alert names no reported user" in skipped
        for step in ("revoke_pdfs", "notify_users", "grant_license"):
            assert f"remediator approve {await fx.approval_for(h, run['id'], step)}" in left
        assert f"aws s3 rm s3://{world.bucket}/{fx.uid(11)}/" in left


async def test_dry_run_changes_nothing_and_the_plan_renders_every_step(world: World) -> None:
    before, objects = await fx.snapshot(world.dsn), world.objects()
    async with Harness(
        fx.registry(), world.rules(), clients=world.clients, settings={"mode": "dry-run"}
    ) as h:
        await h.deliver(FMP)
        [run] = await h.runs()
        steps = await fx.steps_by_name(h, run["id"])
        assert await fx.snapshot(world.dsn) == before
        assert world.objects() == objects
        assert list(steps) == [s.name for s in fx.registry().get("RB-04").steps]  # type: ignore[union-attr]
        assert steps["restrict_exports"]["outcome"] == "dry_run"
        assert (
            "UPDATE provider_rights\nSET export = 'restricted', require_license = TRUE"
            in steps["restrict_exports"]["rendered"]
        )
        assert "-- $1 = 'FMP'" in steps["restrict_exports"]["rendered"]
        assert "FROM analytics_events AS e" in steps["audit_exports"]["rendered"]
        assert "INSERT INTO user_licenses" in steps["grant_license"]["rendered"]
        assert "INSERT INTO notifications" in steps["notify_users"]["rendered"]
        # The audit reads, so even the dry-run plan names the exact objects.
        for key in await violating_keys(world.db):
            assert f"aws s3 rm s3://{world.bucket}/{key}" in steps["revoke_pdfs"]["rendered"]
        [page] = h.pager.triggers()
        assert page.content.mode == "dry-run"
        assert "DRY-RUN: nothing was changed" in fx.page_text(page)
        assert "dry-run: not executed; would run: BEGIN;" in fx.page_text(page)


# --------------------------------------------------------------- approve steps


async def test_revoke_deletes_exactly_the_violating_pdfs_and_notify_tells_those_users(
    world: World,
) -> None:
    expected = await violating_keys(world.db)
    async with Harness(fx.registry(), world.rules(), clients=world.clients) as h:
        await h.deliver(FMP)
        [run] = await h.runs()
        objects = world.objects()
        before = await fx.snapshot(world.dsn)

        await h.approve(await fx.approval_for(h, run["id"], "revoke_pdfs"))
        assert world.objects() == objects - expected
        assert await fx.snapshot(world.dsn) == before  # S3 only

        await h.approve(await fx.approval_for(h, run["id"], "notify_users"))
        changed = fx.diff(before, await fx.snapshot(world.dsn))
        assert list(changed) == ["notifications"]
        gone, added = changed["notifications"]
        assert gone == []
        assert {r["user_id"] for r in added} == {fx.uid(n) for n in RIGHTS_VIOLATORS}
        assert {r["alert_id"] for r in added} == {"sys-rights-violation"}
        assert all(
            r["payload_json"]["message"]
            == "Your export has been revoked due to licensing restrictions"
            for r in added
        )

        approved = await fx.steps_by_name(h, run["id"], "approved")
        assert approved["revoke_pdfs"]["outcome"] == "applied"
        assert set(approved["revoke_pdfs"]["changes"]["deleted"]) == expected
        body = fx.page_text(h.pager.triggers()[-1])
        assert f"notified {len(RIGHTS_VIOLATORS)} users that their export was revoked" in body
        assert f"deleted {len(expected)} PDFs from s3://{world.bucket}" in body


async def test_notify_waits_for_the_revocation_and_tells_nobody_before(world: World) -> None:
    async with Harness(fx.registry(), world.rules(), clients=world.clients) as h:
        await h.deliver(FMP)
        [run] = await h.runs()
        before = await fx.snapshot(world.dsn)
        await h.approve(await fx.approval_for(h, run["id"], "notify_users"))
        assert await fx.snapshot(world.dsn) == before
        approved = await fx.steps_by_name(h, run["id"], "approved")
        assert approved["notify_users"]["outcome"] == "skipped"
        assert "approve the revocation first" in approved["notify_users"]["reason"]


async def test_grant_for_the_reported_user_only_and_revoke_then_spares_them(world: World) -> None:
    reported = fx.uid(21)  # holds an FMP view license, exported anyway
    alert = make_alert("RightsExportViolation", {"provider": "FMP", "user_id": reported})
    expected = await violating_keys(world.db)
    theirs = {k for k in expected if k.startswith(reported)}
    assert theirs
    async with Harness(fx.registry(), world.rules(), clients=world.clients) as h:
        await h.deliver(alert)
        [run] = await h.runs()
        steps = await fx.steps_by_name(h, run["id"])
        assert (
            steps["check_reported_user"]["result"]["summary"]
            == f"user {reported} holds FMP licenses: view"
        )
        before = await fx.snapshot(world.dsn)

        await h.approve(await fx.approval_for(h, run["id"], "grant_license"))
        changed = fx.diff(before, await fx.snapshot(world.dsn))
        assert list(changed) == ["user_licenses"]
        gone, [row] = changed["user_licenses"]
        assert gone == []
        assert (row["user_id"], row["provider"], row["license_type"]) == (reported, "FMP", "export")

        objects = world.objects()
        await h.approve(await fx.approval_for(h, run["id"], "revoke_pdfs"))
        assert world.objects() == objects - (expected - theirs)
        approved = await fx.steps_by_name(h, run["id"], "approved")
        assert (
            "1 kept: the user holds a license now" in approved["revoke_pdfs"]["result"]["summary"]
        )


async def test_revoke_never_deletes_outside_the_users_own_prefix(world: World) -> None:
    licensed_key = next(k for k, u in world.exports.items() if u == fx.uid(1))
    await world.db.execute(
        "INSERT INTO analytics_events (user_id, event_type, payload_json) VALUES"
        " ($1, 'export_pdf', $2), ($1, 'export_pdf', $3)",
        fx.uid(13),
        {"export_id": "exp-evil", "s3_key": licensed_key, "providers": ["FMP"]},
        {"export_id": "../../reports/quarterly", "providers": ["FMP"]},
    )
    expected = await violating_keys(world.db)
    async with Harness(fx.registry(), world.rules(), clients=world.clients) as h:
        await h.deliver(FMP)
        [run] = await h.runs()
        objects = world.objects()
        await h.approve(await fx.approval_for(h, run["id"], "revoke_pdfs"))
        assert world.objects() == objects - expected
        assert licensed_key in world.objects() and "reports/quarterly.pdf" in world.objects()
        summary = (await fx.steps_by_name(h, run["id"], "approved"))["revoke_pdfs"]["result"][
            "summary"
        ]
        assert "2 NOT revoked, no safe key" in summary
        assert "s3_key is not a PDF under the user's own prefix" in summary
        assert "no usable export_id in the event payload" in summary


async def test_revoke_is_bounded_per_run(world: World) -> None:
    expected = await violating_keys(world.db)
    async with Harness(fx.registry(), world.rules(max_revocations=2), clients=world.clients) as h:
        await h.deliver(FMP)
        [run] = await h.runs()
        objects = world.objects()
        await h.approve(await fx.approval_for(h, run["id"], "revoke_pdfs"))
        deleted = objects - world.objects()
        assert len(deleted) == 2 and deleted <= expected
        body = fx.page_text(h.pager.triggers()[-1])
        assert f"{len(expected) - 2} over the limit of 2 left for a human" in body


async def test_grant_refuses_more_users_than_the_limit(world: World) -> None:
    before = await fx.snapshot(world.dsn)
    async with Harness(
        fx.registry(), world.rules(max_license_grants=3), clients=world.clients
    ) as h:
        await h.deliver(FMP)
        [run] = await h.runs()
        mid = await fx.snapshot(world.dsn)
        await h.approve(await fx.approval_for(h, run["id"], "grant_license"))
        assert await fx.snapshot(world.dsn) == mid
        assert list(fx.diff(before, mid)) == ["provider_rights"]
        body = fx.page_text(h.pager.triggers()[-1])
        assert (
            f"FAILED: {len(RIGHTS_VIOLATORS)} users would be licensed, more than"
            " max_license_grants=3" in body
        )


# ------------------------------------------------------------ corroboration


async def test_forged_alert_without_violating_exports_changes_nothing(world: World) -> None:
    """Every FMP exporter holds an export license: the alert's violation is not there."""
    await world.db.execute(
        "INSERT INTO user_licenses (user_id, provider, license_type)"
        " SELECT u, 'FMP', 'export' FROM unnest($1::uuid[]) AS t(u)",
        [fx.uid(n) for n in RIGHTS_VIOLATORS],
    )
    before, objects = await fx.snapshot(world.dsn), world.objects()
    async with Harness(fx.registry(), world.rules(), clients=world.clients) as h:
        await h.deliver(FMP)
        [run] = await h.runs()
        steps = await fx.steps_by_name(h, run["id"])
        assert await h.approvals(run["id"]) == []
        counted = fx.not_corroborated(h)
    assert await fx.snapshot(world.dsn) == before
    assert world.objects() == objects
    assert (run["outcome"], run["blocked_by"]) == ("blocked", "not_corroborated")
    assert counted == 1
    assert steps["confirm_violation"]["reason"] == (
        "not corroborated: no export_pdf event in the last 7 days carried FMP data"
        " without an export license; exports left open"
    )
    assert steps["restrict_exports"]["outcome"] == "skipped"


async def test_a_provider_whose_data_needs_no_license_is_never_blocked(world: World) -> None:
    """FRED's public data is exported by unlicensed users all the time: with FRED left
    out of licensed_providers (as the shipped rule does), that is no violation."""
    before = await fx.snapshot(world.dsn)
    alert = make_alert("RightsExportViolation", {"provider": "FRED"})
    rules = world.rules(licensed_providers=["FMP", "POLYGON", "NEWS"])
    async with Harness(fx.registry(), rules, clients=world.clients) as h:
        await h.deliver(alert)
        [run] = await h.runs()
        steps = await fx.steps_by_name(h, run["id"])
    assert await fx.snapshot(world.dsn) == before
    assert run["blocked_by"] == "not_corroborated"
    assert steps["confirm_violation"]["reason"].startswith(
        "not corroborated: FRED is not in licensed_providers"
    )


async def test_the_violation_seen_in_the_events_is_confirmed_and_blocked(world: World) -> None:
    """The forged alert's counterpart: the seed's FMP exports without a license."""
    async with Harness(fx.registry(), world.rules(), clients=world.clients) as h:
        await h.deliver(FMP)
        [run] = await h.runs()
        steps = await fx.steps_by_name(h, run["id"])
    assert run["blocked_by"] is None
    confirmed = steps["confirm_violation"]["result"]["data"]
    assert confirmed == {
        "violations": len(await violating_keys(world.db)),
        "providers_unknown": 0,
    }
    assert steps["restrict_exports"]["outcome"] == "applied"


def test_licensed_providers_must_be_known_providers() -> None:
    with pytest.raises(ValueError, match="licensed_providers"):
        rb04.Params(providers=("FMP",), licensed_providers=("FMP", "BLOOMBERG"))
    assert rb04.Params(providers=("FMP",), licensed_providers=("fmp",)).licensed_providers
    assert rb04.Params(providers=("ACME",)).licensed_providers is None  # all of them


def test_shipped_rule_leaves_public_fred_data_out_of_licensed_providers() -> None:
    ruleset, _ = rules.load(ROOT / "rules" / "dawsos-incidents.yaml", fx.registry())
    assert ruleset is not None
    rule = ruleset.get("rights-export-violation")
    assert rule is not None
    assert rule.params.licensed_providers == ("FMP", "POLYGON", "NEWS")  # type: ignore[attr-defined]


# ----------------------------------------------------------------- resolve


async def test_resolve_lifts_nothing_and_says_compliance_lifts_the_block(world: World) -> None:
    async with Harness(fx.registry(), world.rules(), clients=world.clients) as h:
        await h.deliver(FMP)
        after_fire = await fx.snapshot(world.dsn)
        await h.deliver(resolved(FMP))
        assert await fx.snapshot(world.dsn) == after_fire
        [run] = await h.runs()
        assert await h.steps(run["id"], "undo") == []
        assert {a["state"] for a in await h.approvals(run["id"])} == {"expired"}
        [page] = h.pager.resolves()
        body = fx.page_text(page)
        assert (
            "FMP stays export=restricted, require_license=true: nothing is lifted"
            " automatically; compliance lifts the block" in body
        )


# ------------------------------------------------------------- hostile labels


@pytest.mark.parametrize(
    "provider",
    [
        "polygon' OR '1'='1",
        "x" * 10_240,
        "../fmp",
        "FMP\n",
        "fmp; DROP TABLE users",
        "",
    ],
    ids=["sql-quote", "10kB", "dotdot", "newline", "statement", "empty"],
)
async def test_hostile_provider_changes_nothing_and_is_reported(
    world: World, provider: str
) -> None:
    before, objects = await fx.snapshot(world.dsn), world.objects()
    alert = make_alert("RightsExportViolation", {"provider": provider})
    async with Harness(fx.registry(), world.rules(), clients=world.clients) as h:
        await h.deliver(alert)
        [run] = await h.runs()
        steps = await fx.steps_by_name(h, run["id"])
        assert await fx.snapshot(world.dsn) == before
        assert world.objects() == objects
        assert await h.approvals(run["id"]) == []
        assert steps["inspect_registry"]["outcome"] == "failed"
        assert steps["inspect_registry"]["reason"].startswith("rejected input provider:")
        assert {steps[s]["outcome"] for s in steps if s != "inspect_registry"} == {"skipped"}
        body = fx.page_text(h.pager.triggers()[-1])
        assert "Inspect the provider's rights registry row FAILED: rejected input provider:" in body
        assert (
            "Block exports of the provider (kept after resolve: compliance lifts it):"
            " not run: inspect_registry failed" in body
        )
        assert "x" * 100 not in body


async def test_hostile_user_label_is_rejected_and_licenses_nobody(world: World) -> None:
    """The grant reads the user_id label: refused, it is not offered for approval (an
    approval of it could only fail), and no license is granted."""
    alert = make_alert(
        "RightsExportViolation", {"provider": "fmp", "user_id": "../../etc/passwd' OR 1=1"}
    )
    before = await fx.snapshot(world.dsn)
    async with Harness(fx.registry(), world.rules(), clients=world.clients) as h:
        await h.deliver(alert)
        [run] = await h.runs()
        approvals = {a["step"] for a in await h.approvals(run["id"])}
        steps = await fx.steps_by_name(h, run["id"])
        body = fx.page_text(h.pager.triggers()[-1])
    assert fx.diff(before, await fx.snapshot(world.dsn)).keys() == {"provider_rights"}
    assert approvals == {"revoke_pdfs", "notify_users"}
    assert steps["check_reported_user"]["reason"].startswith("rejected input user_id:")
    assert steps["grant_license"]["outcome"] == "skipped"
    assert steps["grant_license"]["reason"].startswith("not offered: rejected input user_id:")
    assert (
        "- Grant the missing license (only if legitimate): not offered: rejected input"
        " user_id:" in body
    )


# ----------------------------------------------------- shipped rules, examples


INCIDENT_ALERTS = {
    "RightsExportViolation": "RB-04",
    "DatabaseDown": "RB-05",
    "DatabaseSlowQueries": "RB-05",
    "DatabaseCPUHigh": "RB-05",
    "SuspiciousRequestRate": "RB-06",
    "IdorSpike": "RB-06",
    "JwtLeakDetected": "RB-06",
}


def test_shipped_incident_rules_load_and_bind_each_alert() -> None:
    reg = fx.registry()
    ruleset, errors = rules.load(ROOT / "rules" / "dawsos-incidents.yaml", reg)
    assert errors == [] and ruleset is not None
    assert all(r.mode is None for r in ruleset.rules)
    assert all(r.cooldown > 0 and r.max_runs_per_hour for r in ruleset.rules)
    for alertname, runbook in INCIDENT_ALERTS.items():
        labels = {
            "alertname": alertname,
            "service": "dawsos",
            "provider": "fmp",
            "source_ip": "203.0.113.7",
        }
        assert [r.runbook for r in ruleset.select(labels)] == [runbook], alertname
        # Another team's alert of the same name does not drive our runbooks.
        assert ruleset.select({**labels, "service": "billing"}) == []


@pytest.mark.parametrize("alertname", sorted(INCIDENT_ALERTS))
def test_example_payloads_replay_into_a_plan_naming_every_step(alertname: str) -> None:
    reg = fx.registry()
    ruleset, _ = rules.load(ROOT / "rules" / "dawsos-incidents.yaml", reg)
    assert ruleset is not None
    settings = from_mapping({}, env={})
    runbook = reg.get(INCIDENT_ALERTS[alertname])
    assert runbook is not None
    for status in ("firing", "resolved"):
        path = ROOT / "remediator" / "examples" / f"{alertname}-{status}.json"
        payload = WebhookPayload.model_validate_json(path.read_bytes())
        assert payload.alerts[0].status == status
        [entry] = replay.plan(payload, ruleset, reg, settings)
        [run] = entry["runs"]
        assert run["runbook"] == runbook.id
        timeline = replay.format_timeline([entry])
        if status == "firing":
            assert [s["name"] for s in run["steps"]] == [s.name for s in runbook.steps]
            assert all(
                s["call"] and not s["call"].startswith("(not rendered") for s in run["steps"]
            ), run["steps"]
            for step in runbook.steps:
                assert step.title in timeline


# ------------------------------------------------ step 1: the registry YAML

REGISTRY = """\
# .ops/RIGHTS_REGISTRY.yaml
FMP:
  export: allow
  require_license: true
  attribution: "Financial data © Financial Modeling Prep"
POLYGON:
  export: restricted
  require_license: true
"""


async def _registry_step(world: World, rules: str, **clients: Any) -> tuple[dict[str, Any], str]:
    with_kube = Clients(database=world.db, aws=world.clients.aws, **clients)
    async with Harness(fx.registry(), rules, clients=with_kube) as h:
        await h.deliver(FMP)
        [run] = await h.runs()
        steps = await fx.steps_by_name(h, run["id"])
        page = fx.page_text(h.pager.triggers()[-1])
    return steps["read_rights_registry"], page


async def test_the_registry_file_entry_of_the_provider_is_shown_in_the_page(
    world: World, tmp_path: Path
) -> None:
    path = tmp_path / "RIGHTS_REGISTRY.yaml"
    path.write_text(REGISTRY, encoding="utf-8")
    step, page = await _registry_step(world, world.rules(rights_registry_path=str(path)))
    assert step["outcome"] == "applied"
    summary = step["result"]["summary"]
    assert summary == (
        f"{path} FMP: export: 'allow', require_license: True, attribution: 'Financial data ©"
        " Financial Modeling Prep': export is ALLOWED: change it to restricted in the"
        " registry (by hand, in the app's repository)"
    )
    assert step["result"]["data"]["allow"] is True
    assert f"Show the provider's entry in the rights registry YAML: {summary}" in page
    assert path.read_text(encoding="utf-8") == REGISTRY  # only read, never written


async def test_the_registry_can_come_from_a_configmap(world: World) -> None:
    async with FakeKubeAPI() as fake, fx.kube_client(fake.url) as kube:
        fake.add_config_map(
            fx.NS, "rights", {"RIGHTS_REGISTRY.yaml": REGISTRY.replace("allow", "restricted")}
        )
        step, _page = await _registry_step(
            world, world.rules(rights_registry_configmap="rights"), kubernetes=kube
        )
    assert step["outcome"] == "applied"
    assert step["result"]["summary"].startswith(
        "configmap rights/RIGHTS_REGISTRY.yaml FMP: export: 'restricted'"
    )
    assert step["result"]["summary"].endswith(": as expected")


async def test_without_a_registry_configured_the_step_says_how_to_set_one(world: World) -> None:
    step, _page = await _registry_step(world, world.rules())
    assert step["outcome"] == "skipped"
    assert step["reason"].startswith("no rights registry configured: set the rule's")


def test_registry_params_refuse_relative_paths() -> None:
    with pytest.raises(ValueError):
        rb04.Params(rights_registry_path=".ops/RIGHTS_REGISTRY.yaml")
    with pytest.raises(ValueError):
        rb04.Params(rights_registry_configmap="a/b/c")
