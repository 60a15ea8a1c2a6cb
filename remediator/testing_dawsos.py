"""Test helper: a fresh DawsOS target database per test, and whole-table snapshots.

The schema (``testing_data/dawsos_schema.sql``) is loaded once into a *template*
database named after the schema's hash; each test then gets ``CREATE DATABASE ...
TEMPLATE`` (fast, a file copy) and the seed (``testing_data/dawsos_seed.sql``). The
seed is loaded per database rather than baked into the template because its
timestamps are relative to now(): an alert storm "in the last 5 minutes" must be
recent whenever the test runs, not when the template was built.

Several test processes (and several engineers) may share one server: the template is
built under a unique name and renamed into place (the loser of a race drops its own),
templates refuse connections so cloning never collides with a reader, and databases
from crashed runs are swept after a few hours.

This module must never drop a database it did not create: ``drop_database`` refuses
any name outside its own naming scheme. It is for tests only; nothing in the daemon
imports it.

    dsn = await create_dawsos_database(admin_dsn)
    try:
        db = await TargetDatabase.connect(dsn)
        ...
        assert (await snapshot(dsn, ["alerts"]))["alerts"] == expected
    finally:
        await drop_database(admin_dsn, dsn)
"""

from __future__ import annotations

import hashlib
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from datetime import date, datetime
from importlib import resources
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit
from zoneinfo import ZoneInfo

from remediator.clients.database import QueryRejected, TargetDatabase
from remediator.runbooks import catalog

# --- what the seed holds (see the header of dawsos_seed.sql) ------------------------
# Pack dates are days in the zone of the DawsOS SLO (RB-01's default timezone).
PACK_TIMEZONE = "America/New_York"
STORM_ALERT_COUNTS = {"abc-123": 120, "def-456": 80, "ghi-789": 50}
STORM_ALERT_IDS = tuple(STORM_ALERT_COUNTS)
HUMAN_DISABLED_ALERT_ID = "pgn-103"  # polygon alert a human switched off
FAULTY_RULE_ALERT_ID = "ghi-789"  # condition "value > 0"
SUSPICIOUS_IP = "192.0.2.1"
SUSPICIOUS_LOGIN_USERS = (3, 7, 11, 42, 99)  # logged in from SUSPICIOUS_IP in the last 7 days
IDOR_USER = 42
RIGHTS_VIOLATORS = (11, 13, 14, 15, 21, 22)  # exported FMP data without an export license
TABLE_WITHOUT_POLICY = "portfolio_metrics"
SYSTEM_ALERT_IDS = {"rights": "sys-rights-violation", "security": "sys-security-incident"}
TABLES = (
    "users",
    "pricing_pack",
    "symbol_mapping",
    "prices",
    "fx_rates",
    "alerts",
    "notifications",
    "provider_rights",
    "user_licenses",
    "analytics_events",
    "audit_log",
    "portfolios",
    "portfolio_positions",
    "portfolio_metrics",
)

# The tables and columns the runbooks' own SQL names: all a user's database is known to
# hold (``schema="minimal"``, testing_data/dawsos_schema_minimal.sql).
MINIMAL_COLUMNS = dict(catalog.REQUIRED)
MINIMAL_TABLES = tuple(t for t in TABLES if t not in ("prices", "fx_rates", "symbol_mapping"))
Schema = Literal["full", "minimal"]

_PREFIX_TEST = "dawsos_t_"
_PREFIX_BUILD = "dawsos_build_"
_PREFIX_TEMPLATE = "dawsos_tpl_"
_OURS = re.compile(r"^dawsos_(t|build)_(\d{10})_[0-9a-f]{16}$")
_TABLE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_STALE_AFTER_S = 6 * 3600  # far beyond any test's timeout
_ADMIN_TIMEOUT_MS = 60_000  # CREATE DATABASE waits for a checkpoint on a busy server

_ready_templates: set[tuple[str, str]] = set()  # (admin dsn, template name), per process


def pack_today() -> date:
    """Today's pack date in the seed (and for RB-01 with its default timezone)."""
    return datetime.now(ZoneInfo(PACK_TIMEZONE)).date()


def user_id(n: int) -> uuid.UUID:
    """The id of seeded user ``n`` (1..150)."""
    return uuid.UUID(hashlib.md5(f"dawsos:user:{n}".encode()).hexdigest())  # noqa: S324


def portfolio_id(n: int) -> uuid.UUID:
    """The id of seeded user ``n``'s portfolio (1..40)."""
    return uuid.UUID(hashlib.md5(f"dawsos:portfolio:{n}".encode()).hexdigest())  # noqa: S324


def schema_sql() -> str:
    return _read("dawsos_schema.sql")


def seed_sql() -> str:
    return _read("dawsos_seed.sql")


def minimal_sql() -> str:
    return _read("dawsos_schema_minimal.sql")


def tables(schema: Schema = "full") -> tuple[str, ...]:
    """The fixture's tables in ``schema`` (for ``snapshot``)."""
    return TABLES if schema == "full" else MINIMAL_TABLES


def _read(name: str) -> str:
    return resources.files("remediator").joinpath("testing_data", name).read_text("utf-8")


def dsn_for(admin_dsn: str, database: str) -> str:
    """``admin_dsn`` pointed at another database (a schema search_path is dropped)."""
    parts = urlsplit(admin_dsn)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k not in ("search_path", "options")]
    return urlunsplit(parts._replace(path="/" + database, query=urlencode(query)))


def _database_of(dsn: str) -> str:
    return urlsplit(dsn).path.lstrip("/")


def _new_name(prefix: str) -> str:
    return f"{prefix}{int(time.time()):010d}_{uuid.uuid4().hex[:16]}"


async def _admin(admin_dsn: str) -> TargetDatabase:
    return await TargetDatabase.connect(
        admin_dsn, statement_timeout_ms=_ADMIN_TIMEOUT_MS, min_size=1, max_size=1
    )


async def _ensure_template(admin_dsn: str, admin: TargetDatabase) -> str:
    digest = hashlib.sha256(schema_sql().encode()).hexdigest()[:16]
    name = _PREFIX_TEMPLATE + digest
    if (admin_dsn, name) in _ready_templates:
        return name
    await _sweep_stale(admin)
    exists = await admin.fetchval(
        "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1 AND datistemplate)", name
    )
    if not exists:
        await _build_template(admin_dsn, admin, name)
    _ready_templates.add((admin_dsn, name))
    return name


async def _build_template(admin_dsn: str, admin: TargetDatabase, name: str) -> None:
    build = _new_name(_PREFIX_BUILD)
    await admin.execute(f'CREATE DATABASE "{build}" TEMPLATE template0')
    try:
        db = await TargetDatabase.connect(dsn_for(admin_dsn, build), min_size=1, max_size=1)
        try:
            await db.execute(schema_sql())
        finally:
            await db.aclose()
        # No connections to a template: CREATE DATABASE ... TEMPLATE fails while
        # anyone is connected to the source.
        await admin.execute(
            f'ALTER DATABASE "{build}" WITH IS_TEMPLATE true ALLOW_CONNECTIONS false'
        )
        await admin.execute(f'ALTER DATABASE "{build}" RENAME TO "{name}"')
    except QueryRejected as exc:
        await _drop(admin, build)
        if exc.sqlstate != "42P04":  # duplicate_database: another process won the race
            raise
    except BaseException:
        await _drop(admin, build)
        raise


async def _sweep_stale(admin: TargetDatabase) -> None:
    rows = await admin.fetch(
        "SELECT datname FROM pg_database WHERE datname LIKE 'dawsos\\_t\\_%' "
        "OR datname LIKE 'dawsos\\_build\\_%'"
    )
    now = time.time()
    for row in rows:
        match = _OURS.match(row["datname"])
        if match and now - int(match.group(2)) > _STALE_AFTER_S:
            await _drop(admin, row["datname"])


async def _drop(admin: TargetDatabase, name: str) -> None:
    if not _OURS.match(name):
        raise ValueError(f"refusing to drop {name!r}: not a database this helper created")
    # Builds are marked as templates before their rename, and templates cannot be dropped.
    if await admin.fetchval("SELECT datistemplate FROM pg_database WHERE datname = $1", name):
        await admin.execute(f'ALTER DATABASE "{name}" WITH IS_TEMPLATE false')
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def create_dawsos_database(
    admin_dsn: str, *, seed: bool = True, schema: Schema = "full"
) -> str:
    """A new database with the DawsOS schema (and, by default, the seed); its DSN.

    ``schema="minimal"`` then drops every table and column the runbooks' SQL does not
    name (``MINIMAL_COLUMNS``). ``admin_dsn`` must be allowed to CREATE DATABASE. Drop
    it with ``drop_database``.
    """
    admin = await _admin(admin_dsn)
    try:
        name = _new_name(_PREFIX_TEST)
        template = await _ensure_template(admin_dsn, admin)
        try:
            await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        except QueryRejected as exc:
            if exc.sqlstate != "3D000":  # template dropped behind our back: build again
                raise
            _ready_templates.discard((admin_dsn, template))
            template = await _ensure_template(admin_dsn, admin)
            await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        dsn = dsn_for(admin_dsn, name)
        if seed or schema != "full":
            try:
                db = await TargetDatabase.connect(dsn, min_size=1, max_size=1)
                try:
                    # One batch = one implicit transaction: now() is one instant.
                    if seed:
                        await db.execute(seed_sql())
                    if schema == "minimal":
                        await db.execute(minimal_sql())
                finally:
                    await db.aclose()
            except BaseException:
                await _drop(admin, name)
                raise
        return dsn
    finally:
        await admin.aclose()


async def drop_database(admin_dsn: str, dsn: str) -> None:
    """Drop a database made by ``create_dawsos_database`` (anything else is refused)."""
    name = _database_of(dsn)
    if not (name.startswith(_PREFIX_TEST) and _OURS.match(name)):
        raise ValueError(f"refusing to drop {name!r}: not made by create_dawsos_database")
    admin = await _admin(admin_dsn)
    try:
        await _drop(admin, name)
    finally:
        await admin.aclose()


@asynccontextmanager
async def dawsos_database(
    admin_dsn: str, *, seed: bool = True, schema: Schema = "full"
) -> AsyncIterator[str]:
    """``create_dawsos_database`` ... ``drop_database`` as a context manager."""
    dsn = await create_dawsos_database(admin_dsn, seed=seed, schema=schema)
    try:
        yield dsn
    finally:
        await drop_database(admin_dsn, dsn)


async def snapshot(dsn: str, tables: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
    """Every row of each table in ``public``, as dicts, in a stable order (all columns).

    jsonb comes back decoded. RLS does not hide rows (the test role owns the tables).
    """
    wanted = list(tables)
    for table in wanted:
        if not _TABLE.match(table):
            raise ValueError(f"not a plain table name: {table!r}")
    db = await TargetDatabase.connect(dsn, min_size=1, max_size=1)
    try:
        result: dict[str, list[dict[str, Any]]] = {}
        for table in wanted:
            ncols = await db.fetchval(
                "SELECT count(*) FROM information_schema.columns "
                "WHERE table_schema = 'public' AND table_name = $1",
                table,
            )
            if not ncols:
                raise ValueError(f"no table public.{table}")
            order = ", ".join(str(i) for i in range(1, ncols + 1))
            result[table] = await db.fetch(f'SELECT * FROM public."{table}" ORDER BY {order}')
        return result
    finally:
        await db.aclose()
