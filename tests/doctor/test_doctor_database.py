"""``remediator doctor`` against real Postgres: an empty schema, a schema with only
the columns the runbooks name, and the full DawsOS fixture."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest
from clients._dawsos_fixtures import fresh_dawsos_database
from doctor_support import check, doctor, step, write_config

from remediator import settings as settings_mod
from remediator.doctor import run
from remediator.runbook_api.registry import load_entry_points

RB01_TO_RB03 = """
rules:
  - {name: pack, matchers: ['alertname="PricingPackBuildSlow"'], runbook: RB-01}
  - {name: provider, matchers: ['alertname="ProviderErrorRateHigh"'], runbook: RB-02,
     params: {providers: [polygon]}}
  - {name: storm, matchers: ['alertname="AlertStorm"'], runbook: RB-03}
"""

# Only what the runbook text's own SQL names (dawsos-operational-runbooks.md).
RUNBOOK_NAMED_COLUMNS = """
CREATE TABLE pricing_pack (id text PRIMARY KEY, date date NOT NULL, is_fresh boolean NOT NULL,
                           created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE alerts (id text PRIMARY KEY, name text NOT NULL, condition_json jsonb NOT NULL,
                     active boolean NOT NULL, cooldown_minutes integer NOT NULL);
CREATE TABLE notifications (id bigserial PRIMARY KEY, user_id uuid NOT NULL,
                            alert_id text NOT NULL, payload_json jsonb NOT NULL,
                            created_at timestamptz NOT NULL DEFAULT now());
"""


async def test_an_empty_database_fails_naming_pricing_pack(
    tmp_path: Path, pg_schema_dsn: str
) -> None:
    config = write_config(tmp_path, {"targets": {"database": pg_schema_dsn}})
    human = await doctor(config)
    assert human.code == 1, human.stderr
    database_line = next(ln for ln in human.stdout.splitlines() if " database " in ln)
    assert "FAIL" in database_line and "pricing_pack" in database_line
    report = (await doctor(config, "--json")).json()
    assert report["ok"] is False
    db = check(report, "targets", "database")
    assert db["ok"] is False and "pricing_pack" in db["detail"]
    packs = step(report, "RB-01", "recent_packs")
    assert packs["runnable"] is False
    assert packs["missing"] == ["pricing_pack"]
    assert "no table pricing_pack" in packs["reason"]
    # Steps that need only the connection (pg_stat_activity) can still run.
    assert step(report, "RB-01", "long_running_queries")["runnable"] is True


async def test_runbook_named_columns_are_enough_for_rb01_to_rb03(
    tmp_path: Path, pg_schema_dsn: str
) -> None:
    conn = await asyncpg.connect(pg_schema_dsn)
    try:
        await conn.execute(RUNBOOK_NAMED_COLUMNS)
    finally:
        await conn.close()
    config = write_config(tmp_path, {"targets": {"database": pg_schema_dsn}}, RB01_TO_RB03)
    outcome = await doctor(config, "--json")
    assert outcome.code == 0, outcome.stdout
    report = outcome.json()
    database = check(report, "targets", "database")
    assert database["ok"] is True
    # Each optional column once, though several steps read it.
    absent = database["detail"].split("optional, absent: ", 1)[1].split(", ")
    assert absent[:2] == ["pricing_pack.status", "pricing_pack.hash"], database
    assert len(absent) == len(set(absent)), database
    for name in ("recent_packs", "serve_last_good", "mark_fresh"):
        s = step(report, "RB-01", name)
        assert s["runnable"] is True, s
        assert s["missing"] == []
    assert step(report, "RB-01", "recent_packs")["optional_missing"] == ["pricing_pack.status"]
    assert step(report, "RB-01", "serve_last_good")["optional_missing"] == [
        "pricing_pack.status",
        "pricing_pack.hash",
    ]
    for name in ("pause_alerts",):
        assert step(report, "RB-02", name)["runnable"] is True
    for name in (
        "confirm_storm",
        "global_cooldown",
        "top_offenders",
        "disable_offenders",
        "check_dedupe",
        "delete_duplicates",
        "review_offenders",
    ):
        s = step(report, "RB-03", name)
        assert s["runnable"] is True and s["optional_missing"] == [], s
    # Targets that are not configured make their steps not runnable, not the run fail.
    logs = step(report, "RB-01", "scheduler_logs")
    assert logs["runnable"] is False and logs["missing"] == ["targets.kubernetes"]


async def test_a_missing_column_names_the_column_and_fails(
    tmp_path: Path, pg_schema_dsn: str
) -> None:
    conn = await asyncpg.connect(pg_schema_dsn)
    try:
        await conn.execute(RUNBOOK_NAMED_COLUMNS)
        await conn.execute("ALTER TABLE alerts DROP COLUMN cooldown_minutes")
    finally:
        await conn.close()
    config = write_config(tmp_path, {"targets": {"database": pg_schema_dsn}}, RB01_TO_RB03)
    outcome = await doctor(config, "--json")
    assert outcome.code == 1
    report = outcome.json()
    assert "alerts.cooldown_minutes" in check(report, "targets", "database")["detail"]
    cool = step(report, "RB-03", "global_cooldown")
    assert cool["runnable"] is False and cool["missing"] == ["alerts.cooldown_minutes"]
    assert step(report, "RB-03", "disable_offenders")["runnable"] is True


async def test_a_user_without_update_cannot_serve_the_last_good_pack(
    tmp_path: Path, pg_schema_dsn: str
) -> None:
    conn = await asyncpg.connect(pg_schema_dsn)
    role = "doctor_ro_" + pg_schema_dsn.rsplit("=", 1)[1]
    schema = pg_schema_dsn.rsplit("=", 1)[1]
    try:
        await conn.execute(RUNBOOK_NAMED_COLUMNS)
        await conn.execute(f'CREATE ROLE "{role}" LOGIN')
        await conn.execute(f'GRANT USAGE ON SCHEMA "{schema}" TO "{role}"')
        await conn.execute(f'GRANT SELECT ON ALL TABLES IN SCHEMA "{schema}" TO "{role}"')
        dsn = pg_schema_dsn.replace("postgres@", f"{role}@", 1)
        settings = settings_mod.from_mapping(
            {"rules": str(write_rules(tmp_path)), "targets": {"database": dsn}}, env={}
        )
        report = await run(settings, load_entry_points())
    finally:
        await conn.execute(f'DROP OWNED BY "{role}"')
        await conn.execute(f'DROP ROLE "{role}"')
        await conn.close()
    assert not report.ok
    serve = next(s for rb in report.runbooks for s in rb.steps if s.step == "serve_last_good")
    assert not serve.runnable
    assert serve.missing == ("UPDATE on pricing_pack.is_fresh",)
    recent = next(s for rb in report.runbooks for s in rb.steps if s.step == "recent_packs")
    assert recent.runnable


def write_rules(tmp_path: Path) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(RB01_TO_RB03)
    return path


async def test_the_full_dawsos_fixture_passes(tmp_path: Path, pytestconfig: pytest.Config) -> None:
    async with fresh_dawsos_database(pytestconfig, seed=False) as dsn:
        config = write_config(tmp_path, {"targets": {"database": dsn}})
        outcome = await doctor(config, "--json")
    assert outcome.code == 0, outcome.stdout
    report = outcome.json()
    assert check(report, "targets", "database")["ok"] is True
    database_only = {
        "RB-01": ("recent_packs", "long_running_queries", "serve_last_good", "mark_fresh"),
        "RB-03": ("confirm_storm", "global_cooldown", "top_offenders", "delete_duplicates"),
        "RB-04": ("inspect_registry", "restrict_exports", "audit_exports", "grant_license"),
        "RB-05": ("long_queries", "blocking_sessions", "terminate_blockers"),
        "RB-06": ("confirm_source", "idor_audit", "force_password_resets", "notify_users"),
    }
    for runbook, names in database_only.items():
        for name in names:
            s = step(report, runbook, name)
            assert s["runnable"] is True and s["missing"] == [], s
    assert step(report, "RB-01", "serve_last_good")["optional_missing"] == []


async def test_refused_credentials_and_an_unreachable_server_fail_the_database_check(
    tmp_path: Path, pg_schema_dsn: str, unused_port: int
) -> None:
    unknown_role = pg_schema_dsn.replace("postgres@", "no_such_role_doctor@", 1)
    settings = settings_mod.from_mapping(
        {"rules": str(write_rules(tmp_path)), "targets": {"database": unknown_role}}, env={}
    )
    refused = await run(settings, load_entry_points())
    database = next(c for c in refused.targets if c.name == "database")
    assert not database.ok and database.detail.startswith("refused credentials"), database
    dead = f"postgresql://postgres@127.0.0.1:{unused_port}/test"
    settings = settings_mod.from_mapping(
        {"rules": str(write_rules(tmp_path)), "targets": {"database": dead}}, env={}
    )
    unreachable = await run(settings, load_entry_points())
    database = next(c for c in unreachable.targets if c.name == "database")
    assert not database.ok and database.detail.startswith("unreachable"), database
    packs = next(s for rb in unreachable.runbooks for s in rb.steps if s.step == "recent_packs")
    assert packs.missing == ("targets.database",) and "unreachable" in packs.reason
