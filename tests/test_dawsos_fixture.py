"""The DawsOS fixture database: schema and seed satisfy what the runbooks' SQL expects.

Queries quoted from the runbooks are kept verbatim (placeholders become parameters),
so a schema that drifts from the runbooks fails here first.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from clients._dawsos_fixtures import admin_dsn, fresh_dawsos_database

from remediator.clients.database import QueryRejected, TargetDatabase
from tests.fixtures import dawsos as td

RB03_TOP_OFFENDERS = """
SELECT a.id, a.name, a.condition_json, COUNT(*) as notification_count
FROM notifications n
JOIN alerts a ON n.alert_id = a.id
WHERE n.created_at > NOW() - INTERVAL '5 minutes'
GROUP BY a.id, a.name, a.condition_json
ORDER BY notification_count DESC
LIMIT 10
"""
RB03_DUPLICATES = """
SELECT user_id, alert_id, date_trunc('day', created_at) AS day, COUNT(*)
FROM notifications
GROUP BY user_id, alert_id, day
HAVING COUNT(*) > 1
"""
RB06_TABLES_WITHOUT_POLICY = """
SELECT tablename FROM pg_tables
WHERE schemaname = 'public'
  AND tablename LIKE '%portfolio%'
  AND tablename NOT IN (
    SELECT tablename FROM pg_policies WHERE schemaname = 'public'
  )
"""
RB06_IDOR = """
SELECT user_id, portfolio_id, action, meta_json, ts
FROM audit_log
WHERE action = '403_idor'
  AND ts > NOW() - INTERVAL '24 hours'
ORDER BY ts DESC
LIMIT 100
"""
RB06_LOGINS_FROM_IP = """
SELECT user_id, created_at, meta_json->>'ip_address' AS ip
FROM analytics_events
WHERE event_type = 'login'
  AND meta_json->>'ip_address' = $1
  AND created_at > NOW() - INTERVAL '7 days'
"""
RB04_EXPORTS = """
SELECT user_id, created_at, payload_json
FROM analytics_events
WHERE event_type = 'export_pdf'
  AND created_at > NOW() - INTERVAL '7 days'
ORDER BY created_at DESC
"""


class Rollback(Exception):
    pass


@pytest.fixture
async def dawsos_dsn(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    async with fresh_dawsos_database(request.config) as dsn:
        yield dsn


@pytest.fixture
async def db(dawsos_dsn: str) -> AsyncIterator[TargetDatabase]:
    database = await TargetDatabase.connect(dawsos_dsn)
    yield database
    await database.aclose()


def utc_today() -> date:
    """The seed's pack dates are days in the DawsOS SLO's zone, not UTC."""
    return td.pack_today()


async def test_five_packs_over_five_days_and_only_yesterdays_is_fresh(db: TargetDatabase) -> None:
    rows = await db.fetch(
        "SELECT id, date, is_fresh, status, created_at FROM pricing_pack ORDER BY date DESC LIMIT 5"
    )
    today = utc_today()
    assert [r["date"] for r in rows] == [today - timedelta(days=k) for k in range(5)]
    assert [r["id"] for r in rows] == [f"PP-{r['date'].isoformat()}" for r in rows]
    assert [r["is_fresh"] for r in rows] == [False, True, False, False, False]
    assert rows[0]["status"] == "building"
    assert all(r["created_at"] <= datetime.now(UTC) for r in rows)


async def test_tonights_pack_is_missing_prices_and_fx(db: TargetDatabase) -> None:
    counts = await db.fetch(
        "SELECT p.status, count(DISTINCT pr.symbol) AS prices, count(DISTINCT fx.base || fx.quote)"
        " AS fx FROM pricing_pack p LEFT JOIN prices pr ON pr.pack_id = p.id"
        " LEFT JOIN fx_rates fx ON fx.pack_id = p.id GROUP BY p.id, p.status ORDER BY p.id"
    )
    building = [c for c in counts if c["status"] == "building"]
    ready = [c for c in counts if c["status"] == "ready"]
    assert len(building) == 1 and building[0]["fx"] == 0
    assert all(building[0]["prices"] < r["prices"] and r["fx"] > 0 for r in ready)
    unmapped = await db.fetch("SELECT symbol FROM symbol_mapping WHERE figi IS NULL ORDER BY 1")
    assert unmapped == [{"symbol": "ARM"}, {"symbol": "RDDT"}]


async def test_rb03_top_offenders_are_the_three_storm_alerts(db: TargetDatabase) -> None:
    rows = await db.fetch(RB03_TOP_OFFENDERS)
    top = {r["id"]: r["notification_count"] for r in rows[:3]}
    assert top == td.STORM_ALERT_COUNTS
    assert rows[3:], "ordinary alerts also fired in the window"
    assert all(r["notification_count"] < min(top.values()) for r in rows[3:])
    faulty = next(r for r in rows if r["id"] == td.FAULTY_RULE_ALERT_ID)
    assert faulty["condition_json"]["value"] == 0


@pytest.mark.parametrize("zone", ["UTC", "Pacific/Kiritimati", "America/Adak"])
async def test_rb03_duplicate_query_is_empty_in_any_session_time_zone(
    db: TargetDatabase, zone: str
) -> None:
    async with db.transaction() as tx:
        await tx.execute("SELECT set_config('TimeZone', $1, true)", zone)
        assert await tx.fetch(RB03_DUPLICATES) == []


async def test_unique_index_rejects_a_second_notification_the_same_utc_day(
    db: TargetDatabase,
) -> None:
    assert await db.fetchval(
        "SELECT indexdef FROM pg_indexes WHERE indexname = 'uq_notify_user_alert_day'"
    ) == (
        "CREATE UNIQUE INDEX uq_notify_user_alert_day ON public.notifications USING btree "
        "(user_id, alert_id, date_trunc('day'::text, (created_at AT TIME ZONE 'UTC'::text)))"
    )
    system_alert = td.SYSTEM_ALERT_IDS["security"]
    insert = "INSERT INTO notifications (user_id, alert_id, created_at) VALUES ($1, $2, $3)"
    noon = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    await db.execute(insert, td.user_id(5), system_alert, noon)

    with pytest.raises(QueryRejected) as caught:
        await db.execute(insert, td.user_id(5), system_alert, noon + timedelta(hours=11))
    assert caught.value.sqlstate == "23505"
    # The idempotent form writers use.
    tag = await db.execute(
        insert + " ON CONFLICT (user_id, alert_id, date_trunc('day', created_at AT TIME ZONE"
        " 'UTC')) DO NOTHING",
        td.user_id(5),
        system_alert,
        noon - timedelta(hours=11),
    )
    assert tag == "INSERT 0 0"
    # The next UTC day is a new day.
    await db.execute(insert, td.user_id(5), system_alert, noon + timedelta(hours=12))


async def test_rb06_rls_query_finds_the_table_without_a_policy(db: TargetDatabase) -> None:
    assert await db.fetch(RB06_TABLES_WITHOUT_POLICY) == [{"tablename": td.TABLE_WITHOUT_POLICY}]
    with_policy = await db.fetch(
        "SELECT DISTINCT tablename FROM pg_policies WHERE schemaname = 'public' ORDER BY 1"
    )
    assert with_policy == [{"tablename": "portfolio_positions"}, {"tablename": "portfolios"}]


async def test_rb02_provider_alerts_include_one_a_human_disabled(db: TargetDatabase) -> None:
    rows = await db.fetch(
        "SELECT condition_json->>'provider' AS provider, active, count(*) AS n FROM alerts"
        " GROUP BY 1, 2 ORDER BY 1, 2"
    )
    by_key = {(r["provider"], r["active"]): r["n"] for r in rows}
    assert by_key[("polygon", False)] == 1
    assert by_key[("polygon", True)] >= 3
    assert by_key[("fmp", True)] >= 2 and by_key[("fred", True)] >= 2
    disabled = await db.fetchrow(
        "SELECT condition_json->>'provider' AS provider, active FROM alerts WHERE id = $1",
        td.HUMAN_DISABLED_ALERT_ID,
    )
    assert disabled == {"provider": "polygon", "active": False}


async def test_rb03_cooldowns_vary_from_5_to_120_minutes(db: TargetDatabase) -> None:
    rows = await db.fetch(
        "SELECT DISTINCT cooldown_minutes FROM alerts WHERE user_id IS NOT NULL"
        " OR id = ANY($1::text[])",
        list(td.STORM_ALERT_IDS),
    )
    assert {r["cooldown_minutes"] for r in rows} == {5, 15, 30, 60, 120}


async def test_rb04_exports_without_license_are_the_documented_violators(
    db: TargetDatabase,
) -> None:
    exports = await db.fetch(RB04_EXPORTS)
    licensed = {
        r["user_id"]
        for r in await db.fetch(
            "SELECT user_id FROM user_licenses WHERE provider = 'FMP' AND license_type = 'export'"
        )
    }
    violators = {
        e["user_id"] for e in exports if "FMP" in e["payload_json"]["providers"]
    } - licensed
    assert violators == {td.user_id(n) for n in td.RIGHTS_VIOLATORS}
    assert {e["user_id"] for e in exports} & licensed, "licensed exporters exist too"
    rights = await db.fetchrow(
        "SELECT export, require_license FROM provider_rights WHERE provider = 'FMP'"
    )
    assert rights == {"export": "allow", "require_license": False}


async def test_rb06_recent_logins_from_the_suspicious_ip(db: TargetDatabase) -> None:
    rows = await db.fetch(RB06_LOGINS_FROM_IP, td.SUSPICIOUS_IP)
    assert sorted(r["user_id"] for r in rows) == sorted(
        td.user_id(n) for n in td.SUSPICIOUS_LOGIN_USERS
    )
    assert {r["ip"] for r in rows} == {td.SUSPICIOUS_IP}


async def test_rb06_idor_rows_in_the_last_24_hours(db: TargetDatabase) -> None:
    rows = await db.fetch(RB06_IDOR)
    assert len(rows) == 30
    assert {r["user_id"] for r in rows} == {td.user_id(td.IDOR_USER)}
    assert {r["meta_json"]["ip_address"] for r in rows} == {td.SUSPICIOUS_IP}
    total = await db.fetchval("SELECT count(*) FROM audit_log WHERE action = '403_idor'")
    assert total > len(rows), "older rows exist outside the window"


async def test_each_test_database_is_fresh_and_independent(
    dawsos_dsn: str, request: pytest.FixtureRequest
) -> None:
    before = await td.snapshot(dawsos_dsn, ["alerts", "notifications"])
    db = await TargetDatabase.connect(dawsos_dsn)
    try:
        await db.execute("UPDATE alerts SET active = FALSE")
        await db.execute("DELETE FROM notifications")
    finally:
        await db.aclose()
    changed = await td.snapshot(dawsos_dsn, ["alerts", "notifications"])
    assert not any(r["active"] for r in changed["alerts"]) and changed["notifications"] == []

    async with fresh_dawsos_database(request.config) as other:
        assert other != dawsos_dsn
        again = await td.snapshot(other, ["alerts", "notifications"])
    assert [(r["id"], r["active"]) for r in again["alerts"]] == [
        (r["id"], r["active"]) for r in before["alerts"]
    ]
    assert len(again["notifications"]) == len(before["notifications"]) > 0


async def test_unseeded_database_has_the_schema_and_no_rows(request: pytest.FixtureRequest) -> None:
    async with fresh_dawsos_database(request.config, seed=False) as dsn:
        tables = await td.snapshot(dsn, td.TABLES)
    assert tables == {t: [] for t in td.TABLES}


async def test_snapshot_refuses_malformed_or_unknown_tables(dawsos_dsn: str) -> None:
    with pytest.raises(ValueError, match="plain table name"):
        await td.snapshot(dawsos_dsn, ['alerts"; DROP TABLE users; --'])
    with pytest.raises(ValueError, match="no table"):
        await td.snapshot(dawsos_dsn, ["no_such_table"])


async def test_drop_database_refuses_databases_it_did_not_create(
    request: pytest.FixtureRequest,
) -> None:
    admin = admin_dsn(request.config)
    with pytest.raises(ValueError, match="refusing"):
        await td.drop_database(admin, admin)
    with pytest.raises(ValueError, match="refusing"):
        await td.drop_database(admin, td.dsn_for(admin, "postgres"))


def runbook_statements() -> list[tuple[str, str, tuple[Any, ...], bool]]:
    """(label, SQL, args, expects a change or rows) for every SQL block in the runbooks."""
    today = utc_today()
    yesterday_id = f"PP-{today - timedelta(days=1)}"
    violator = td.user_id(td.RIGHTS_VIOLATORS[0])
    return [
        (
            "RB-01.3 last packs",
            "SELECT id, date, is_fresh, created_at FROM pricing_pack ORDER BY date DESC LIMIT 5",
            (),
            True,
        ),
        (
            "RB-01.3 long queries",
            "SELECT pid, now() - query_start AS duration, query "
            "FROM pg_stat_activity WHERE state = 'active' AND query NOT LIKE '%pg_stat_activity%' "
            "ORDER BY duration DESC",
            (),
            False,
        ),
        (
            "RB-01.4 serve last good",
            "UPDATE pricing_pack SET is_fresh = TRUE WHERE id = $1",
            (yesterday_id,),
            True,
        ),
        (
            "RB-01.4 verify",
            "SELECT id, date, is_fresh FROM pricing_pack WHERE is_fresh = TRUE",
            (),
            True,
        ),
        (
            "RB-01.6 unmark old",
            "UPDATE pricing_pack SET is_fresh = FALSE WHERE date < $1",
            (today,),
            True,
        ),
        (
            "RB-01.6 mark new",
            "UPDATE pricing_pack SET is_fresh = TRUE WHERE id = $1",
            (f"PP-{today}",),
            True,
        ),
        (
            "RB-02.3 pause provider",
            "UPDATE alerts SET active = FALSE WHERE condition_json->>'provider' = 'polygon'",
            (),
            True,
        ),
        (
            "RB-02.3 pause VIX",
            "UPDATE alerts SET active = FALSE WHERE condition_json->>'entity' = 'VIX'",
            (),
            True,
        ),
        (
            "RB-02.7 re-enable",
            "UPDATE alerts SET active = TRUE WHERE condition_json->>'provider' = 'polygon'",
            (),
            True,
        ),
        (
            "RB-03.1 cooldown",
            "UPDATE alerts SET cooldown_minutes = 60 WHERE cooldown_minutes < 60",
            (),
            True,
        ),
        ("RB-03.2 top offenders", RB03_TOP_OFFENDERS, (), True),
        (
            "RB-03.3 disable offenders",
            "UPDATE alerts SET active = FALSE WHERE id IN ('abc-123', 'def-456', 'ghi-789')",
            (),
            True,
        ),
        ("RB-03.4 duplicates", RB03_DUPLICATES, (), False),
        (
            "RB-03.4 dedupe",
            "DELETE FROM notifications WHERE id NOT IN (SELECT MIN(id) "
            "FROM notifications GROUP BY user_id, alert_id, date_trunc('day', created_at))",
            (),
            False,
        ),
        (
            "RB-03.6 fix rule",
            "UPDATE alerts SET condition_json = "
            '\'{"type":"portfolio","metric":"value","op":">","value":1000000}\'::jsonb '
            "WHERE condition_json->>'value' = '0'",
            (),
            True,
        ),
        (
            "RB-04.2 licenses",
            "SELECT * FROM user_licenses WHERE user_id = $1 AND provider = 'FMP'",
            (td.user_id(1),),
            True,
        ),
        (
            "RB-04.3 block exports",
            "UPDATE provider_rights SET export = 'restricted', "
            "require_license = TRUE WHERE provider = 'FMP'",
            (),
            True,
        ),
        ("RB-04.4 audit exports", RB04_EXPORTS, (), True),
        (
            "RB-04.5 notify user",
            "INSERT INTO notifications (user_id, alert_id, payload_json) "
            'VALUES ($1, $2, \'{"message": "Your export has been revoked due to licensing '
            "restrictions\"}'::jsonb)",
            (violator, td.SYSTEM_ALERT_IDS["rights"]),
            True,
        ),
        (
            "RB-04.6 grant license",
            "INSERT INTO user_licenses (user_id, provider, license_type, "
            "granted_at) VALUES ($1, 'FMP', 'export', NOW())",
            (violator,),
            True,
        ),
        (
            "RB-05.3 slow query example",
            "SELECT * FROM portfolio_metrics WHERE twr > 0.05",
            (),
            True,
        ),
        (
            "RB-05.4 queries over 30 s",
            "SELECT pid, now() - query_start AS duration, query "
            "FROM pg_stat_activity WHERE state = 'active' AND query NOT LIKE '%pg_stat_activity%' "
            "AND now() - query_start > INTERVAL '30 seconds' ORDER BY duration DESC",
            (),
            False,
        ),
        ("RB-05.6 count portfolios", "SELECT COUNT(*) FROM portfolios", (), True),
        ("RB-06.3 idor", RB06_IDOR, (), True),
        ("RB-06.3 rls gaps", RB06_TABLES_WITHOUT_POLICY, (), True),
        ("RB-06.5 logins from ip", RB06_LOGINS_FROM_IP, (td.SUSPICIOUS_IP,), True),
        (
            "RB-06.5 force reset",
            "UPDATE users SET password_reset_required = TRUE WHERE id = ANY($1::uuid[])",
            ([td.user_id(n) for n in td.SUSPICIOUS_LOGIN_USERS],),
            True,
        ),
        # The runbook selects "user_id" FROM users, which has "id": corrected here.
        (
            "RB-06.6 notify users",
            "INSERT INTO notifications (user_id, alert_id, payload_json) "
            'SELECT id, $2, \'{"message": "Security incident detected. Please reset your '
            "password.\"}'::jsonb FROM users WHERE id = ANY($1::uuid[])",
            ([td.user_id(n) for n in td.SUSPICIOUS_LOGIN_USERS], td.SYSTEM_ALERT_IDS["security"]),
            True,
        ),
    ]


async def test_every_runbook_statement_runs_against_the_seed(db: TargetDatabase) -> None:
    """Each statement runs in its own rolled-back transaction (RB-05's pg_stat_statements
    query needs an extension the target may lack; the runbook says "when present")."""
    outcomes: dict[str, str] = {}
    for label, sql, args, expects_effect in runbook_statements():
        try:
            async with db.transaction() as tx:
                if sql.lstrip().upper().startswith(("UPDATE", "INSERT", "DELETE")):
                    tag = await tx.execute(sql, *args)
                    effect = int(tag.rsplit(" ", 1)[1])
                else:
                    effect = len(await tx.fetch(sql, *args))
                outcomes[label] = "ok" if effect or not expects_effect else "no effect"
                raise Rollback
        except Rollback:
            pass
        except QueryRejected as exc:
            outcomes[label] = f"failed: {exc}"
    assert {k: v for k, v in outcomes.items() if v != "ok"} == {}
    assert len(outcomes) == len(runbook_statements())
