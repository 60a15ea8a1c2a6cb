"""The bench world: shipped runbooks against a real DawsOS database, and the audit.

Load is the shipped RB-02 (provider outage), one provider per alert: provider
``relNNNN`` has two alert rows in a fresh DawsOS database (``testing_dawsos``), its
status page (a loopback server here, slow on purpose so that runs are in flight
when a replica dies) reports it down, so each firing alert pauses exactly its
provider's two rows and each resolve re-enables them. RB-03 (alert storm) is there
for approvals. Every change to ``alerts.active``, ``alerts.cooldown_minutes`` and
every DELETE on ``notifications`` is logged by database triggers into
``rel_changes``, so "a mitigation applied twice" is observable in the target
database itself, not only in the audit trail.

``audit()`` compares three records (what got a 202, the state store, the target
database) and lists every lost alert, doubled action, unfinished run and lost undo.

This module never touches a database it did not create (``testing_dawsos`` refuses)
and never listens off loopback.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson
import pytest
import redis.asyncio as aioredis
import yaml
from aiohttp import web

from remediator.testing import make_alert
from tests.fixtures import dawsos as testing_dawsos
from tests.reliability._cluster import Sender
from tests.support import root_conftest

PROVIDER_ALERT = "ProviderErrorRateHigh"
STORM_ALERT = "AlertStorm"
RULE = "provider-outage"
STORM_RULE = "alert-storm"
ROWS_PER_PROVIDER = 2

_TRIGGERS = """
CREATE TABLE rel_changes (
    id bigserial PRIMARY KEY,
    tbl text NOT NULL,
    row_id text,
    col text NOT NULL,
    old text,
    new text,
    n integer,
    txid bigint NOT NULL DEFAULT txid_current()
);
CREATE FUNCTION rel_alerts_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.active IS DISTINCT FROM OLD.active THEN
        INSERT INTO rel_changes (tbl, row_id, col, old, new)
        VALUES ('alerts', OLD.id, 'active', OLD.active::text, NEW.active::text);
    END IF;
    IF NEW.cooldown_minutes IS DISTINCT FROM OLD.cooldown_minutes THEN
        INSERT INTO rel_changes (tbl, row_id, col, old, new)
        VALUES ('alerts', OLD.id, 'cooldown_minutes', OLD.cooldown_minutes::text,
                NEW.cooldown_minutes::text);
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER rel_alerts_changed AFTER UPDATE ON alerts
    FOR EACH ROW EXECUTE FUNCTION rel_alerts_changed();
CREATE FUNCTION rel_notifications_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO rel_changes (tbl, col, n)
    SELECT 'notifications', 'deleted', count(*) FROM gone HAVING count(*) > 0;
    RETURN NULL;
END $$;
CREATE TRIGGER rel_notifications_deleted AFTER DELETE ON notifications
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT
    EXECUTE FUNCTION rel_notifications_deleted();
"""


def provider(i: int) -> str:
    return f"rel{i:04d}"


def rows_of(name: str) -> list[str]:
    return [f"{name}-{k}" for k in range(ROWS_PER_PROVIDER)]


class StatusServer:
    """Provider status pages on loopback: every provider is down, answered after ``delay``."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.hits = 0
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def _status(self, request: web.Request) -> web.Response:
        self.hits += 1
        await asyncio.sleep(self.delay)
        return web.json_response({"status": "down"}, status=503)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/status/{name}", self._status)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/status/{name}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@dataclass
class World:
    target_dsn: str
    providers: list[str]
    cache_key: str
    status: StatusServer
    redis_url: str
    base_time: datetime = field(default_factory=lambda: datetime.now(UTC).replace(microsecond=0))

    def rules_yaml(self, *, cooldown: str = "1h") -> str:
        rules = [
            {
                "name": RULE,
                "matchers": [f'alertname="{PROVIDER_ALERT}"', 'service="dawsos"', 'provider=~".+"'],
                "runbook": "RB-02",
                "params": {"providers": self.providers, "cache_keys": [self.cache_key]},
                "cooldown": cooldown,
            },
            {
                "name": STORM_RULE,
                "matchers": [f'alertname="{STORM_ALERT}"', 'service="dawsos"'],
                "runbook": "RB-03",
                "params": {"cooldown_minutes": 60, "disable_top_n": 3, "min_notifications": 50},
                "cooldown": "30m",
            },
        ]
        return yaml.safe_dump({"rules": rules}, sort_keys=False)

    def targets(self) -> dict[str, Any]:
        return {
            "database": self.target_dsn,
            "redis": self.redis_url,
            "kubernetes": {"mode": "off"},
            "http": {"providers": {p: self.status.url(p) for p in self.providers}},
        }

    def alert(self, i: int, *, instance: str = "exporter-1", wave: int = 0) -> dict[str, Any]:
        """The firing alert of provider i; a new ``wave`` is a new occurrence (startsAt)."""
        starts = self.base_time + timedelta(seconds=i, minutes=wave)
        return make_alert(
            PROVIDER_ALERT,
            {"service": "dawsos", "provider": self.providers[i], "instance": instance},
            # Nanoseconds, as Alertmanager sends them: the journal keeps them as text.
            starts_at=starts.strftime("%Y-%m-%dT%H:%M:%S") + f".{123456789 + i}Z",
        )

    async def changes(self) -> list[dict[str, Any]]:
        conn = await asyncpg.connect(self.target_dsn, timeout=5)
        try:
            return [dict(r) for r in await conn.fetch("SELECT * FROM rel_changes ORDER BY id")]
        finally:
            await conn.close()


@asynccontextmanager
async def world(
    config: pytest.Config, n_providers: int, *, delay: float = 0.0
) -> AsyncIterator[World]:
    """A fresh DawsOS database with ``n_providers`` providers, the cache key, the status pages."""
    shared = root_conftest(config)
    try:
        dsn = await testing_dawsos.create_dawsos_database(shared.PG_DSN)
    except (OSError, asyncpg.PostgresError) as exc:
        shared.service_missing("PostgreSQL", exc)
        raise
    names = [provider(i) for i in range(n_providers)]
    cache = aioredis.from_url(shared.REDIS_URL)
    key = f"remediator-test:{uuid.uuid4().hex}:fundamentals:AAPL"
    status = StatusServer(delay)
    try:
        try:
            await cache.set(key, b"last-good", ex=3600)
        except (OSError, aioredis.RedisError) as exc:
            shared.service_missing("Redis", exc)
            raise
        conn = await asyncpg.connect(dsn, timeout=5)
        try:
            await conn.execute(_TRIGGERS)
            await conn.executemany(
                "INSERT INTO alerts (id, name, condition_json, active, cooldown_minutes)"
                " VALUES ($1, $2, $3::jsonb, TRUE, 15)",
                [
                    (row, f"{p} feed stale", orjson.dumps({"provider": p}).decode())
                    for p in names
                    for row in rows_of(p)
                ],
            )
        finally:
            await conn.close()
        await status.start()
        yield World(dsn, names, key, status, shared.REDIS_URL)
    finally:
        await status.stop()
        await cache.delete(key)
        await cache.aclose()
        await testing_dawsos.drop_database(shared.PG_DSN, dsn)


# ----------------------------------------------------------------------- audit


@dataclass
class Audit:
    accepted: int = 0  # occurrences that got a 202
    journaled: int = 0
    runs: int = 0
    applied: int = 0  # mitigations applied (pause steps)
    undone: int = 0  # undos applied (rows re-enabled)
    lost: list[str] = field(default_factory=list)
    doubled: list[str] = field(default_factory=list)
    unfinished: list[str] = field(default_factory=list)
    undo_lost: list[str] = field(default_factory=list)
    inconsistent: list[str] = field(default_factory=list)
    # Steps a kill -9 interrupted mid-call: marked failed "outcome unknown" and paged,
    # by design never repeated blindly. Not lost, not doubled; counted.
    unknown: list[str] = field(default_factory=list)
    # Runs that did not mitigate (blocked by a guard, paused, a failed diagnosis), why.
    not_applied: list[str] = field(default_factory=list)
    owners: dict[str, int] = field(default_factory=dict)

    def problems(self) -> dict[str, list[str]]:
        return {
            k: v
            for k, v in {
                "lost": self.lost,
                "doubled": self.doubled,
                "unfinished": self.unfinished,
                "undo_lost": self.undo_lost,
                "inconsistent": self.inconsistent,
            }.items()
            if v
        }

    def figures(self) -> dict[str, Any]:
        return {
            "alerts": self.accepted,
            "runs": self.runs,
            "applied": self.applied,
            "undone": self.undone,
            "lost": len(self.lost) + len(self.undo_lost),
            "doubled": len(self.doubled),
            "unfinished": len(self.unfinished),
            "outcome_unknown": len(self.unknown),
        }


def _provider_of(run: Mapping[str, Any]) -> str:
    return str(orjson.loads(run["alert"])["labels"].get("provider", ""))


async def audit(w: World, state_dsn: str, sender: Sender, *, rule: str = RULE) -> Audit:
    """Check every occurrence that got a 202 against the journal, the runs and the target."""
    a = Audit(accepted=len(sender.accepted))
    conn = await asyncpg.connect(state_dsn, timeout=5)
    try:
        journal = {
            (r["fingerprint"], r["starts_at"], r["status"]): dict(r)
            for r in await conn.fetch(
                "SELECT fingerprint, starts_at, status, state, error FROM occurrences"
            )
        }
        runs = [dict(r) for r in await conn.fetch("SELECT * FROM runs WHERE rule = $1", rule)]
        steps = [
            dict(r)
            for r in await conn.fetch(
                "SELECT s.* FROM steps s JOIN runs r ON r.id = s.run_id WHERE r.rule = $1", rule
            )
        ]
    finally:
        await conn.close()
    a.journaled = len(journal)
    a.runs = len(runs)

    # 1. Every 202 is in the journal and was processed.
    for k in sorted(sender.accepted):
        row = journal.get(k)
        if row is None:
            a.lost.append(f"{k}: answered 202 but not in the journal")
        elif row["state"] != "done":
            a.lost.append(f"{k}: journal state {row['state']} ({row['error']})")

    # 2. Exactly one run per (rule, fingerprint, startsAt); one per accepted firing.
    by_key: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for run in runs:
        by_key[(run["fingerprint"], run["starts_at"])].append(run)
        owner = str(run["owner"]).split(":")[1] if run["owner"] else "-"
        a.owners[owner] = a.owners.get(owner, 0) + 1
    for (fp, starts), group in by_key.items():
        if len(group) > 1:
            a.doubled.append(f"{len(group)} runs for ({rule}, {fp}, {starts})")
    resolved = {(fp, st) for fp, st, status in sender.accepted if status == "resolved"}
    for fp, st, status in sender.accepted:
        if status == "firing" and (fp, st) not in by_key:
            a.lost.append(f"({fp}, {st}) firing got a 202 but has no run")

    # 3. Target database against the audit trail, run by run.
    changes = await w.changes()
    flips: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for c in changes:
        if c["tbl"] == "alerts" and c["col"] == "active":
            flips[c["row_id"]].append((c["old"], c["new"]))
    steps_of: dict[str, dict[tuple[str, str], dict[str, Any]]] = defaultdict(dict)
    for s in steps:
        steps_of[s["run_id"]][(s["phase"], s["name"])] = s
        if s["state"] != "done":
            a.unfinished.append(f"run {s['run_id']} step {s['phase']}/{s['name']} {s['state']}")
    per_row: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    runs_of_row: dict[str, list[str]] = defaultdict(list)
    for run in runs:
        rid = run["id"]
        if run["state"] not in ("waiting", "done"):
            a.unfinished.append(f"run {rid} is {run['state']}")
        fire = steps_of[rid].get(("fire", "pause_alerts"))
        undo = steps_of[rid].get(("undo", "pause_alerts"))
        applied = fire is not None and fire["outcome"] == "applied"
        paused: list[str] = orjson.loads(fire["changes"])["paused"] if applied and fire else []
        rows = rows_of(_provider_of(run))
        for r in rows:
            per_row[r]["runs"] += 1
            runs_of_row[r].append(rid)
        if applied:
            a.applied += 1
            for r in paused:
                per_row[r]["applied"] += 1
        elif fire is not None and "interrupted" in (fire["reason"] or ""):
            # Failed "outcome unknown": the step may or may not have committed.
            a.unknown.append(f"run {rid}: {fire['reason']}")
            for r in rows:
                per_row[r]["unknown"] += 1
        else:
            why = {k: (v["outcome"], v["reason"]) for k, v in steps_of[rid].items()}
            a.not_applied.append(f"run {rid} {run['outcome']} {run['blocked_by']}: {why}")
        if (run["fingerprint"], run["starts_at"]) in resolved and run["blocked_by"] is None:
            if run["state"] != "done" or run["undo_state"] != "done":
                a.undo_lost.append(f"run {rid}: resolved but {run['state']}/{run['undo_state']}")
            # "skipped" is an undo run again after a crash cut it short, finding its
            # rows already restored by the first pass; the target shows which it was.
            elif applied and (undo is None or undo["outcome"] not in ("rolled_back", "skipped")):
                a.undo_lost.append(f"run {rid}: undo step {undo and undo['outcome']}")
            elif applied:
                a.undone += 1
                for r in paused:
                    per_row[r]["undone"] += 1
    # Each target row: paused once per applied step (a step whose outcome a crash hid
    # may or may not have committed), re-enabled once per recorded undo. Anything
    # more is an action taken twice; anything less is an action the trail invents.
    for r in sorted(set(flips) | set(per_row)):
        if not r.startswith("rel"):
            continue
        n = per_row[r]
        pauses = sum(1 for f in flips[r] if f == ("true", "false"))
        restores = sum(1 for f in flips[r] if f == ("false", "true"))
        trail = {
            rid: {
                f"{ph}/{nm}": (st["state"], st["outcome"], st["reason"])
                for (ph, nm), st in steps_of[rid].items()
            }
            for rid in runs_of_row[r]
        }
        if pauses > n["applied"] + n["unknown"] or restores > n["undone"]:
            a.doubled.append(f"row {r}: flipped {flips[r]} for {dict(n)}; trail {trail}")
        elif pauses < n["applied"]:
            a.inconsistent.append(f"row {r}: {pauses} pauses for {dict(n)}; trail {trail}")
        elif restores < n["undone"]:
            a.undo_lost.append(f"row {r}: undo recorded but {restores} restores; trail {trail}")
    return a


def batches(alerts: list[dict[str, Any]], size: int) -> Iterable[list[dict[str, Any]]]:
    for i in range(0, len(alerts), size):
        yield alerts[i : i + size]
