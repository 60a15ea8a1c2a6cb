"""docs/dawsos-schema.md cannot drift from the runbooks, the fixture or deploy/dawsos.

- Every column the page lists (required or optional) exists in the test fixture
  schema, loaded into a real PostgreSQL.
- Every fixture column that a runbook module's SQL uses is listed on the page.
- deploy/dawsos/schema.sql holds exactly the required columns, table by table.
- The runbooks' own statements, quoted below, run on deploy/dawsos/schema.sql with
  its seed, and the columns they name are exactly the required ones.
"""

from __future__ import annotations

import ast
import re
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import asyncpg
import pytest

from tests.clients._dawsos_fixtures import fresh_dawsos_database

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "dawsos-schema.md"
DEPLOY = ROOT / "deploy" / "dawsos"
# The runbook modules and the helpers they share (packs.py, sessions.py ...).
RUNBOOK_MODULES = sorted(
    p for p in (ROOT / "remediator" / "runbooks").glob("*.py") if p.name != "__init__.py"
)

Columns = dict[str, set[str]]

# The runbooks' SQL (DawsOS operational runbooks RB-01..RB-06), as written there.
# Placeholders become values of the seed: 'user-uuid' is user 1, the notification
# alert ids are the seed's system alerts, and "IN (...)" lists users 1 and 2.
USER = "md5('dawsos:user:1')::uuid"
USERS = f"({USER}, md5('dawsos:user:2')::uuid)"
RUNBOOK_SQL = (
    # RB-01 step 3
    "SELECT id, date, is_fresh, created_at FROM pricing_pack ORDER BY date DESC LIMIT 5",
    # RB-01 step 4
    "UPDATE pricing_pack SET is_fresh = TRUE WHERE id = 'PP-2025-10-20'",
    "SELECT id, date, is_fresh FROM pricing_pack WHERE is_fresh = TRUE",
    # RB-01 step 6
    "UPDATE pricing_pack SET is_fresh = FALSE WHERE date < '2025-10-21'",
    "UPDATE pricing_pack SET is_fresh = TRUE WHERE id = 'PP-2025-10-21'",
    # RB-02 steps 3 and 7
    "UPDATE alerts SET active = FALSE WHERE condition_json->>'provider' = 'polygon'",
    "UPDATE alerts SET active = FALSE WHERE condition_json->>'entity' = 'VIX'",
    "UPDATE alerts SET active = TRUE WHERE condition_json->>'provider' = 'polygon'",
    # RB-03 step 1
    "UPDATE alerts SET cooldown_minutes = 60 WHERE cooldown_minutes < 60",
    # RB-03 step 2
    """SELECT a.id, a.name, a.condition_json, COUNT(*) as notification_count
    FROM notifications n
    JOIN alerts a ON n.alert_id = a.id
    WHERE n.created_at > NOW() - INTERVAL '5 minutes'
    GROUP BY a.id, a.name, a.condition_json
    ORDER BY notification_count DESC
    LIMIT 10""",
    # RB-03 step 3
    "UPDATE alerts SET active = FALSE WHERE id IN ('abc-123', 'def-456', 'ghi-789')",
    # RB-03 step 4
    """SELECT user_id, alert_id, date_trunc('day', created_at) AS day, COUNT(*)
    FROM notifications
    GROUP BY user_id, alert_id, day
    HAVING COUNT(*) > 1""",
    """DELETE FROM notifications
    WHERE id NOT IN (
      SELECT MIN(id)
      FROM notifications
      GROUP BY user_id, alert_id, date_trunc('day', created_at)
    )""",
    # RB-03 step 6
    """UPDATE alerts
    SET condition_json = '{"type":"portfolio","metric":"value","op":">","value":1000000}'::jsonb
    WHERE condition_json->>'value' = '0'""",
    # RB-04 step 2
    f"SELECT * FROM user_licenses WHERE user_id = {USER} AND provider = 'FMP'",
    # RB-04 step 3
    "UPDATE provider_rights SET export = 'restricted', require_license = TRUE"
    " WHERE provider = 'FMP'",
    # RB-04 step 4
    """SELECT user_id, created_at, payload_json
    FROM analytics_events
    WHERE event_type = 'export_pdf'
      AND created_at > NOW() - INTERVAL '7 days'
    ORDER BY created_at DESC""",
    # RB-04 step 5
    f"""INSERT INTO notifications (user_id, alert_id, payload_json)
    VALUES (
      {USER},
      'sys-rights-violation',
      '{{"message": "Your export has been revoked due to licensing restrictions"}}'::jsonb
    )""",
    # RB-04 step 6
    f"""INSERT INTO user_licenses (user_id, provider, license_type, granted_at)
    VALUES ({USER}, 'FMP', 'export', NOW())""",
    # RB-05 step 6 (on the restored instance)
    "SELECT COUNT(*) FROM portfolios",
    # RB-06 step 3
    """SELECT user_id, portfolio_id, action, meta_json, ts
    FROM audit_log
    WHERE action = '403_idor'
      AND ts > NOW() - INTERVAL '24 hours'
    ORDER BY ts DESC
    LIMIT 100""",
    """SELECT tablename FROM pg_tables
    WHERE schemaname = 'public'
      AND tablename LIKE '%portfolio%'
      AND tablename NOT IN (
        SELECT tablename FROM pg_policies WHERE schemaname = 'public'
      )""",
    # RB-06 step 5
    """SELECT user_id, created_at, meta_json->>'ip_address' AS ip
    FROM analytics_events
    WHERE event_type = 'login'
      AND meta_json->>'ip_address' = '192.0.2.1'
      AND created_at > NOW() - INTERVAL '7 days'""",
    f"UPDATE users SET password_reset_required = TRUE WHERE id IN {USERS}",
    # RB-06 step 6. The runbook selects "user_id" from users; its key is users.id
    # everywhere else (step 5 above), which is what the page documents.
    f"""INSERT INTO notifications (user_id, alert_id, payload_json)
    SELECT id, 'sys-security-incident',
      '{{"message": "Security incident detected. Please reset your password."}}'::jsonb
    FROM users
    WHERE id IN {USERS}""",
)

# ---------------------------------------------------------------- reading SQL

_WORDS = {
    "select", "from", "where", "join", "on", "as", "and", "or", "not", "in", "is",
    "null", "order", "by", "group", "limit", "set", "values", "returning", "for",
    "having", "using", "lateral", "cross", "left", "inner", "with", "update",
}  # fmt: skip
_TABLE_REF = re.compile(r"\b(?:FROM|JOIN|UPDATE|INTO)\s+(\w+)(?:\s+(?:AS\s+)?(\w+))?", re.I)


def columns_named(sql: str, tables: Mapping[str, set[str]]) -> set[tuple[str, str]]:
    """(table, column) pairs of ``tables`` that ``sql`` names.

    A qualified name (``n.created_at``) counts for the table its alias stands for;
    a bare name for every table of the statement that has such a column.
    """
    aliases: dict[str, str] = {}
    for m in _TABLE_REF.finditer(sql):
        table, alias = m.group(1), m.group(2)
        if table in tables:
            aliases[table] = table
            if alias and alias.lower() not in _WORDS:
                aliases[alias] = table
    named: set[tuple[str, str]] = set()
    for table in set(aliases.values()):
        for column in tables[table]:
            for m in re.finditer(rf"(?:\b(\w+)\s*\.\s*)?\b{column}\b", sql):
                qualifier = m.group(1)
                if qualifier is None or aliases.get(qualifier) == table:
                    named.add((table, column))
    return named


def module_sql(path: Path) -> list[str]:
    """The SQL text in a runbook module: string constants, and the literal parts of
    f-strings, that contain a statement keyword."""
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        text = None
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
        elif isinstance(node, ast.JoinedStr):
            text = " ".join(
                v.value
                for v in node.values
                if isinstance(v, ast.Constant) and isinstance(v.value, str)
            )
        if text and re.search(r"\b(SELECT|UPDATE|INSERT|DELETE)\b", text):
            found.append(text)
    return found


def documented() -> dict[str, dict[str, str]]:
    """Table -> column -> "required" | "optional", from the page's tables."""
    tables: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for line in DOC.read_text().splitlines():
        if m := re.match(r"^### `(\w+)`$", line):
            current = tables.setdefault(m.group(1), {})
        elif line.startswith("## "):
            current = None
        elif current is not None and (
            m := re.match(r"^\| `(\w+)` \| (required|optional) \|", line)
        ):
            assert m.group(1) not in current, f"{m.group(1)} listed twice"
            current[m.group(1)] = m.group(2)
    return tables


def required() -> Columns:
    return {
        t: {c for c, need in cols.items() if need == "required"} for t, cols in documented().items()
    }


async def catalog(dsn: str) -> Columns:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT c.relname AS table, a.attname AS column"
            " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0"
            "  AND NOT a.attisdropped"
            " WHERE n.nspname = current_schema() AND c.relkind = 'r'"
        )
    finally:
        await conn.close()
    out: Columns = {}
    for r in rows:
        cols = out.setdefault(r["table"], set())
        if r["column"] is not None:
            cols.add(r["column"])
    return out


@pytest.fixture
async def fixture_columns(request: pytest.FixtureRequest) -> AsyncIterator[Columns]:
    """The test fixture schema (tests/fixtures/dawsos_schema.sql), as loaded."""
    async with fresh_dawsos_database(request.config, seed=False) as dsn:
        yield await catalog(dsn)


@pytest.fixture
async def deploy_dsn(pg_schema_dsn: str) -> str:
    """deploy/dawsos/schema.sql and seed.sql, loaded as a user would."""
    conn = await asyncpg.connect(pg_schema_dsn)
    try:
        for name in ("schema.sql", "seed.sql"):
            await conn.execute((DEPLOY / name).read_text())
    finally:
        await conn.close()
    return pg_schema_dsn


# ---------------------------------------------------------------------- tests


def test_the_page_lists_tables_and_both_kinds_of_column() -> None:
    tables = documented()
    assert {"pricing_pack", "alerts", "notifications", "users", "portfolios"} <= set(tables)
    assert tables["pricing_pack"]["status"] == "optional"
    assert tables["pricing_pack"]["hash"] == "optional"
    assert tables["pricing_pack"]["is_fresh"] == "required"


async def test_every_documented_column_is_in_the_fixture(fixture_columns: Columns) -> None:
    for table, cols in documented().items():
        assert table in fixture_columns, table
        missing = set(cols) - fixture_columns[table]
        assert not missing, f"{table}: {sorted(missing)} documented, not in the fixture"


async def test_every_fixture_column_the_runbooks_use_is_documented(
    fixture_columns: Columns,
) -> None:
    used: dict[tuple[str, str], set[str]] = {}
    for path in RUNBOOK_MODULES:
        for sql in module_sql(path):
            for pair in columns_named(sql, fixture_columns):
                used.setdefault(pair, set()).add(path.stem)
    assert ("pricing_pack", "is_fresh") in used  # the reading finds what it must
    docs = documented()
    undocumented = {
        f"{t}.{c}": sorted(mods) for (t, c), mods in used.items() if c not in docs.get(t, {})
    }
    assert not undocumented, f"used by the runbooks, not in {DOC.name}: {undocumented}"


async def test_deploy_schema_has_exactly_the_required_columns(deploy_dsn: str) -> None:
    assert await catalog(deploy_dsn) == required()


async def test_the_runbooks_sql_runs_on_the_deploy_schema_and_names_the_required_columns(
    deploy_dsn: str,
) -> None:
    tables = required()
    named: set[tuple[str, str]] = set()
    conn = await asyncpg.connect(deploy_dsn)
    try:
        for sql in RUNBOOK_SQL:
            tx = conn.transaction()
            await tx.start()
            try:
                await conn.execute(sql)
            finally:
                await tx.rollback()
            named |= columns_named(sql, tables)
    finally:
        await conn.close()
    assert named == {(t, c) for t, cols in tables.items() for c in cols}
