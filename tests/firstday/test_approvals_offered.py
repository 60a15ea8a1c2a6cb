"""An approval is offered only for a step whose target is configured (DESIGN, CLI).

Real parts: a seeded DawsOS Postgres as the target, the state store on Postgres, RDS
in moto (server mode) through the real AwsClient, the real engine through the Harness
and the capture pager. What is checked is what a human sees: the approval rows that
`remediator approve` acts on, the step rows of the audit trail, and the page.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from remediator import cli
from remediator.clients.aws import AwsClient
from remediator.clients.database import TargetDatabase
from remediator.runbook_api.context import Clients
from remediator.testing import Harness, make_alert
from tests.runbooks import _rb0406_fixtures as fx

ROOT = Path(__file__).resolve().parents[2]
RULES_DIR = ROOT / "rules"
EXAMPLES = ROOT / "remediator" / "examples"
RB05_ALERTS = ("DatabaseDown", "DatabaseSlowQueries", "DatabaseCPUHigh")
RB05_APPROVALS = ("failover", "scale_up", "point_in_time_restore")
SLOW = make_alert(
    "DatabaseSlowQueries",
    {"severity": "page", "service": "dawsos"},
    starts_at="2026-11-28T00:20:04.123Z",
)
TITLES = {
    "failover": "Fail over to the standby (if the primary is down)",
    "scale_up": "Scale the instance up",
    "point_in_time_restore": (
        "Point-in-time restore into a new instance (only if data is corrupt)"
    ),
}


@pytest.fixture(scope="module")
def moto_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with fx.aws_environment(tmp_path_factory.mktemp("aws")), fx.moto_endpoint() as url:
        yield url


@pytest.fixture
async def target(request: pytest.FixtureRequest) -> AsyncIterator[TargetDatabase]:
    async with fx.dawsos_db(request.config) as (_dsn, db):
        yield db


@pytest.fixture
async def aws(moto_url: str) -> AsyncIterator[tuple[AwsClient, Any, str]]:
    rds = fx.admin_client("rds", moto_url)
    instance = fx.unique("dawsos")
    rds.create_db_instance(
        DBInstanceIdentifier=instance,
        DBInstanceClass="db.r6g.xlarge",
        Engine="postgres",
        MultiAZ=True,
        AllocatedStorage=100,
        MasterUsername="dawsos",
        MasterUserPassword="not-a-secret-1",
    )
    async with fx.aws_client(moto_url) as client:
        yield client, rds, instance


def rb05_rules(instance: str = "dawsos-prod") -> str:
    return fx.rules_yaml("RB-05", RB05_ALERTS, {"db_instance_identifier": instance})


async def approval_rows(state_dsn: str) -> list[dict[str, Any]]:
    """The approvals table as `remediator approvals` would read it."""
    conn = await asyncpg.connect(state_dsn)
    try:
        return [dict(r) for r in await conn.fetch("SELECT * FROM approvals ORDER BY id")]
    finally:
        await conn.close()


def harness(state_dsn: str, clients: Clients, rules: str, mode: str = "live") -> Harness:
    return Harness(
        fx.registry(), rules, clients=clients, state_url=state_dsn, settings={"mode": mode}
    )


@pytest.mark.parametrize("mode", ["live", "dry-run"])
async def test_rb05_without_aws_offers_no_approval_and_the_page_names_the_key(
    pg_schema_dsn: str, target: TargetDatabase, mode: str
) -> None:
    async with harness(pg_schema_dsn, Clients(database=target), rb05_rules(), mode) as h:
        await h.deliver(SLOW)
        [run] = await h.runs()
        steps = await fx.steps_by_name(h, run["id"], "fire")
        page = fx.page_text(h.pager.triggers()[-1])

    assert await approval_rows(pg_schema_dsn) == []
    for name in RB05_APPROVALS:
        assert (steps[name]["outcome"], steps[name]["reason"]) == (
            "skipped",
            "not configured: targets.aws",
        )
        assert f"Not offered: {TITLES[name]}: needs targets.aws" in page
    assert "remediator approve" not in page
    assert run["outcome"] != "awaiting_approval"
    # What a human could still do by hand is on the page, as the runbook's own call.
    assert "aws rds modify-db-instance --db-instance-identifier dawsos-prod" in page


@pytest.mark.parametrize("mode", ["live", "dry-run"])
async def test_rb05_with_aws_offers_its_three_approvals(
    pg_schema_dsn: str,
    target: TargetDatabase,
    aws: tuple[AwsClient, Any, str],
    mode: str,
) -> None:
    client, _rds, instance = aws
    clients = Clients(database=target, aws=client)
    async with harness(pg_schema_dsn, clients, rb05_rules(instance), mode) as h:
        await h.deliver(SLOW)
        [run] = await h.runs()
        steps = await fx.steps_by_name(h, run["id"], "fire")
        page = fx.page_text(h.pager.triggers()[-1])

    rows = await approval_rows(pg_schema_dsn)
    assert {r["step"]: r["state"] for r in rows} == dict.fromkeys(RB05_APPROVALS, "pending")
    for name in RB05_APPROVALS:
        assert steps[name]["outcome"] == "awaiting_approval"
    for r in rows:
        assert f"`remediator approve {r['id']} " in page
    assert "Not offered" not in page


async def test_approving_in_dry_run_records_the_decision_and_changes_nothing(
    pg_schema_dsn: str, target: TargetDatabase, aws: tuple[AwsClient, Any, str]
) -> None:
    client, rds, instance = aws
    clients = Clients(database=target, aws=client)
    async with harness(pg_schema_dsn, clients, rb05_rules(instance), "dry-run") as h:
        await h.deliver(SLOW)
        [run] = await h.runs()
        scale_up = await fx.approval_for(h, run["id"], "scale_up")
        await h.approve(scale_up, who="alice")
        approved = await fx.steps_by_name(h, run["id"], "approved")

    [row] = [r for r in await approval_rows(pg_schema_dsn) if r["id"] == scale_up]
    assert row["decided_by"] == "alice"
    assert approved["scale_up"]["outcome"] == "dry_run"
    described = rds.describe_db_instances(DBInstanceIdentifier=instance)["DBInstances"][0]
    assert described["DBInstanceClass"] == "db.r6g.xlarge"
    assert "PendingModifiedValues" not in described or not described["PendingModifiedValues"].get(
        "DBInstanceClass"
    )


async def test_rb03_offers_the_database_approval_but_not_the_kubernetes_one(
    pg_schema_dsn: str, request: pytest.FixtureRequest
) -> None:
    from remediator.runbook_api.registry import Registry
    from remediator.runbooks import rb03_alert_storm

    registry = Registry()
    registry.register(rb03_alert_storm.RUNBOOK)
    rules = fx.rules_yaml("RB-03", ("AlertStorm",), {"storm_per_minute": 1})
    async with fx.dawsos_db(request.config) as (_dsn, db):
        h = Harness(registry, rules, clients=Clients(database=db), state_url=pg_schema_dsn)
        async with h:
            await h.deliver(make_alert("AlertStorm", {"severity": "page", "service": "dawsos"}))
            [run] = await h.runs()
            steps = await fx.steps_by_name(h, run["id"], "fire")
            page = fx.page_text(h.pager.triggers()[-1])

    rows = await approval_rows(pg_schema_dsn)
    assert [r["step"] for r in rows] == ["delete_duplicates"]
    assert steps["delete_duplicates"]["outcome"] == "awaiting_approval"
    assert steps["scale_evaluator_down"]["reason"] == "not configured: targets.kubernetes"
    assert (
        "Not offered: Scale the alert evaluator (scheduler) to 0: needs targets.kubernetes" in page
    )
    assert "kubectl scale deployment/scheduler" in page
    assert f"`remediator approve {rows[0]['id']} " in page


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ("mode: dry-run\n", "not offered: needs targets.aws"),
        ("mode: dry-run\ntargets:\n  aws: {region: us-east-1}\n", "wait for approval"),
    ],
)
def test_replay_plans_an_approval_only_when_its_target_is_configured(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], config: str, expected: str
) -> None:
    (tmp_path / "remediator.yaml").write_text(config + f"rules: {RULES_DIR}\n")
    payload = EXAMPLES / "DatabaseSlowQueries-firing.json"
    code = cli.main(["replay", str(payload), "--config", str(tmp_path / "remediator.yaml")])
    out = capsys.readouterr().out
    assert code == 0, out
    for title in TITLES.values():
        assert f"[mitigate/approve] {title} -> {expected}" in out
