"""Real parts for test_plan_equals_execution: one world every shipped rule can act in
(a seeded DawsOS Postgres, FakeKubeAPI, moto, respx for the providers and the app, real
Redis), the shipped rules as one file, and what the plan and the engine each say.

The plan and the harness read the same rules and the same settings (every target
configured), so any difference between them is the product's, not the test's.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import yaml

from remediator.clients.database import TargetDatabase
from remediator.runbook_api.context import Clients
from remediator.settings import Settings, from_mapping
from remediator.state.records import StepRecord
from remediator.testing import Harness
from tests.fixtures.kube_api import FakeKubeAPI
from tests.runbooks import _rb0103_fixtures as fx13
from tests.runbooks import _rb0406_fixtures as fx46
from tests.support import root_conftest as shared

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "remediator" / "examples"
NS = fx13.NS

# The shipped rules, changed only where a live run in a test needs it; the plan is
# made from exactly these rules, so the comparison stays like for like.
OVERRIDES: Mapping[str, Mapping[str, Any]] = {
    # The engine parks a run between build polls (15 s shipped) and the harness only
    # wakes what is due within 10 s; a statement stuck for 1 s (not 600) makes
    # kill_stuck offered, as it is when something is stuck.
    "RB-01": {"build_poll_seconds": 0.2, "slow_query_seconds": 0.5, "stuck_query_seconds": 1},
    # A test database always has client connections to spare; with this every one
    # counts as taken, so DatabaseDown's claim holds and the run goes on.
    "database-down": {"connection_headroom": 100_000},
    # The shipped list is empty on purpose ("FILL IN"): RB-06 then blocks nothing live.
    "RB-06": {"allow_list": ["198.51.100.0/24"]},
}


def rules_text() -> str:
    rules: list[dict[str, Any]] = []
    for name in ("dawsos.yaml", "dawsos-incidents.yaml"):
        rules += yaml.safe_load((ROOT / "rules" / name).read_text())["rules"]
    for rule in rules:
        for key in (rule["runbook"], rule["name"]):
            rule["params"] = {**rule.get("params", {}), **OVERRIDES.get(key, {})}
    return yaml.safe_dump({"rules": rules})


def alerts_of(path: Path) -> list[dict[str, Any]]:
    return list(json.loads(path.read_text())["alerts"])


@dataclass
class World:
    dsn: str
    db: TargetDatabase
    fake: FakeKubeAPI
    router: Any  # respx.MockRouter
    clients: Clients
    settings: Settings
    targets: dict[str, Any]


@asynccontextmanager
async def world(config: pytest.Config, moto_url: str) -> AsyncIterator[World]:
    """Everything every shipped runbook reads or changes, configured as targets."""
    conf = shared(config)
    async with AsyncExitStack() as stack:
        dsn, db = await stack.enter_async_context(fx13.dawsos_db(config))
        fake = await stack.enter_async_context(FakeKubeAPI())
        fake.add_pod(NS, "scheduler-0", {"app": "scheduler"}, "00:00:01 build_pack start\n")
        for workload in ("scheduler", "worker"):
            fx13.add_workload(fake, workload)
        fake.add_deployment(NS, "api", replicas=3)
        fake.add_secret(NS, "jwt-secret", {"JWT_SECRET": "old-secret"})
        kube = await stack.enter_async_context(fx13.kube_client(fake.url))
        http, router = await stack.enter_async_context(fx13.http_checks())
        aws = await stack.enter_async_context(fx46.aws_client(moto_url))
        cache = fx13.cache_for(config)
        stack.push_async_callback(cache.aclose)
        targets = {
            "database": dsn,
            "redis": conf.REDIS_URL,
            "kubernetes": {"mode": "in-cluster", "namespace": NS, "host": fake.url},
            "aws": {"region": fx46.REGION, "endpoint_url": moto_url},
            "http": {"providers": fx13.PROVIDER_URLS, "app_url": fx13.APP_URL},
        }
        settings = from_mapping({"mode": "live", "targets": targets}, env={})
        clients = Clients(
            database=db, kubernetes=kube, http=http, cache=cache, aws=aws, settings=settings
        )
        yield World(dsn, db, fake, router, clients, settings, targets)


def aws_resources(moto_url: str) -> None:
    """What the shipped params name in AWS: the RDS instance and the exports bucket."""
    rds = fx46.admin_client("rds", moto_url)
    rds.create_db_instance(
        DBInstanceIdentifier="dawsos-prod",
        DBInstanceClass="db.r6g.xlarge",
        Engine="postgres",
        AllocatedStorage=100,
        MasterUsername="dawsos",
        MasterUserPassword="not-a-secret-1",
    )
    fx46.admin_client("s3", moto_url).create_bucket(Bucket="dawsos-exports-prod")


# ------------------------------------------------------------------ scenarios
# What each alert claims is made true before it fires (every runbook first checks its
# alert's symptom, and a run whose claim does not hold skips the rest), so that every
# step runs and records what it called.


async def fire(w: World, h: Harness, alerts: list[dict[str, Any]]) -> None:
    """Deliver the firing alerts with their claim true; the providers recover after."""
    name = alerts[0]["labels"]["alertname"]
    routes = {p: w.router.get(url) for p, url in fx13.PROVIDER_URLS.items()}
    for provider, route in routes.items():
        down = provider == alerts[0]["labels"].get("provider") and name.startswith("Provider")
        route.respond(503 if down else 200, json={"status": "down" if down else "ok"})
    fx13.gate_answers(w.router, 200)
    async with AsyncExitStack() as stack:
        builder = None
        if name.startswith("PricingPack"):  # the Job controller and build_pack itself
            builder = asyncio.create_task(_play_build(w, f"build-pack-{fx13.today()}-1"))
            await stack.enter_async_context(_stuck_statement(w.dsn))
        if name == "SuspiciousRequestRate":  # the IDOR probes the address left
            await w.db.execute(
                "INSERT INTO audit_log (user_id, portfolio_id, action, meta_json, ts)"
                " SELECT $1::uuid, NULL, '403_idor', jsonb_build_object('ip_address',"
                " $2::text), now() - make_interval(mins => i) FROM generate_series(1, 5) i",
                fx46.uid(77),
                alerts[0]["labels"]["source_ip"],
            )
        await h.deliver(*alerts)
        if builder is not None:
            await builder
    for route in routes.values():  # the provider recovered: it may resolve now
        route.respond(200, json={"status": "ok"})


@asynccontextmanager
async def _stuck_statement(dsn: str) -> AsyncIterator[None]:
    """A session running one statement past stuck_query_seconds (1 s)."""
    conn = await asyncpg.connect(dsn, server_settings={"application_name": "batch-report"})
    task = asyncio.create_task(conn.execute("SELECT pg_sleep(120)"))
    try:
        await asyncio.sleep(1.2)
        yield
    finally:
        conn.terminate()
        await asyncio.gather(task, return_exceptions=True)


async def _play_build(w: World, job: str) -> None:
    await fx13.wait_for_job(w.fake, job)
    await w.db.execute(
        "UPDATE pricing_pack SET status = 'ready', hash = 'h-rebuilt' WHERE date = $1",
        fx13.today(),
    )
    w.fake.set_job_status(NS, job, succeeded=1)


# --------------------------------------------------------------- comparing


@dataclass(frozen=True)
class Planned:
    name: str
    phase: str
    kind: str
    mutates: bool
    approval: str
    would: str
    call: str


def planned_steps(run: Mapping[str, Any]) -> list[Planned]:
    return [
        Planned(
            s["name"], s["phase"], s["kind"], s["mutates"], s["approval"], s["would"], s["call"]
        )
        for s in run["steps"]
    ]


def recorded_steps(rows: list[StepRecord], resolved: bool) -> list[StepRecord]:
    """The steps of the phase the payload drives, in the order the engine ran them."""
    if not resolved:
        return sorted((r for r in rows if r.phase == "fire"), key=lambda r: r.seq)
    return [r for r in rows if r.phase in ("resolve", "undo")]  # started_at, id


def undone(planned: list[Planned], rows: list[StepRecord]) -> list[Planned]:
    """The plan with only the undos of steps the firing run applied: the plan lists
    every step that can be undone, "if this step applied"; the run knows which did."""
    applied = {
        r.name
        for r in rows
        if r.phase in ("fire", "approved") and r.outcome == "applied" and r.changes is not None
    }
    return [p for p in planned if p.phase != "undo" or p.name in applied]


def expected_outcome(p: Planned) -> str:
    """What the engine's row says, for what the plan says the step would do."""
    if p.would.startswith("not offered"):
        return "skipped"
    if p.would.startswith("wait for approval"):
        return "awaiting_approval"
    return "ran"


def outcome_of(r: StepRecord) -> str:
    if r.outcome in ("awaiting_approval", "dry_run"):
        return r.outcome
    if r.outcome == "skipped" and (r.reason or "").startswith(("not configured", "not ")):
        return "skipped"  # not offered (unconfigured, withheld) or not run after a stop
    return "ran"


# Calls that name what only the run knows: what earlier steps of the same run found,
# or the run's own id. The plan shows a <placeholder> there; the run's record is the
# plan's text with each placeholder filled in (within its line).
FILLED_AT_RUN_TIME: Mapping[tuple[str, str], str] = {
    ("RB-01", "kill_stuck"): "the sessions long_running_queries listed",
    ("RB-01", "serve_last_good"): "the newest ready pack recent_packs found",
    ("RB-01", "await_build"): "the Job rerun_build started (its attempt number)",
    ("RB-02", "replay_dlq"): "the Job is named after the run",
    ("RB-03", "disable_offenders"): "the offenders top_offenders found",
    ("RB-03", "delete_duplicates"): "how many duplicates check_dedupe counted",
    ("RB-03", "review_offenders"): "the offenders disable_offenders disabled",
    ("RB-04", "notify_users"): "the users audit_exports found",
    ("RB-04", "grant_license"): "the users audit_exports found",
    ("RB-06", "force_password_resets"): "the accounts logins_from_ip found",
    ("RB-06", "notify_users"): "the accounts logins_from_ip found",
}
# Undo calls that put back what their step recorded (the plan cannot know the value).
UNDO_FILLED_AT_RUN_TIME: Mapping[tuple[str, str], str] = {
    ("RB-01", "serve_last_good"): "the pack the step recorded it served",
    ("RB-02", "pause_alerts"): "the alert ids the step recorded it paused",
    ("RB-03", "scale_evaluator_down"): "the replicas the step recorded",
    ("RB-03", "global_cooldown"): "each alert's cooldown the step recorded",
}
# Calls the plan shows as one template line and the run as one filled line per item
# (each line must fill the template's command), for the same reason.
ONE_LINE_EACH: Mapping[tuple[str, str], str] = {
    ("RB-04", "revoke_pdfs"): "one `aws s3 rm` per unlicensed export audit_exports found",
}

PLACEHOLDER = re.compile(r"'?<[^<>\n]*(?:>=[^<>\n]*)?>'?")


def fills(plan_text: str, recorded: str) -> bool:
    """``recorded`` is ``plan_text`` with each <placeholder> filled (within its line)."""
    parts = PLACEHOLDER.split(plan_text)
    pattern = "(?:.+?)".join(re.escape(part) for part in parts)
    return re.fullmatch(pattern, recorded) is not None


def _same_call(key: tuple[str, str], phase: str, plan_text: str, recorded: str) -> bool:
    if key in FILLED_AT_RUN_TIME or (phase == "undo" and key in UNDO_FILLED_AT_RUN_TIME):
        return fills(plan_text, recorded)
    if key in ONE_LINE_EACH:
        command = plan_text.splitlines()[0].split("  #")[0]
        lines = [x for x in recorded.splitlines() if not x.startswith("#")]
        return bool(lines) and all(fills(command, x) for x in lines)
    return recorded == plan_text


def differences(runbook: str, planned: list[Planned], rows: list[StepRecord]) -> list[str]:
    """Each way a recorded step differs from its planned one, one line each."""
    out: list[str] = []
    for p, r in zip(planned, rows, strict=True):
        if (r.kind, r.mutates, r.approval) != (p.kind, p.mutates, p.approval):
            out.append(
                f"{p.name}: {(r.kind, r.mutates, r.approval)} planned as"
                f" {(p.kind, p.mutates, p.approval)}"
            )
        if outcome_of(r) != expected_outcome(p):
            out.append(f"{p.name}: {r.outcome} ({r.reason}) planned as {p.would!r}")
        if not _same_call((runbook, p.name), p.phase, p.call, r.rendered):
            out.append(f"{p.name}: rendered {r.rendered!r}\n    planned {p.call!r}")
    return out
