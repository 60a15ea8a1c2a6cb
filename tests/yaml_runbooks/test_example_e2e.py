"""The shipped YAML example (runbooks/examples: WORKER-STUCK and its rule) end to end,
through ``remediator serve`` as a child process, exactly as a user runs it.

    state store          the real Postgres, a schema of its own
    targets.database     the real Postgres, another schema, holding ``job_queue``
    targets.kubernetes   FakeKubeAPI over HTTP, reached through a kubeconfig
    mode                 live; ``rules:`` and ``runbooks:`` are the shipped files,
                         copied unchanged next to the config and named relative to it

In order, on one daemon: the alert fires (backlog confirmed, worker restarted, scale-up
offered, on-call told); a human approves the scale-up with ``remediator approve``; the
alert comes back within the hour and the cooldown holds the robot back; an alert whose
queue is not backed up is not corroborated and changes nothing; the first alert
resolves and the scale-up is undone. Every step is read back from the audit trail
(``GET /api/v1/actions``), with the call it rendered. A second test checks that
``remediator replay`` shows, step by step, the calls the live run recorded.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import httpx
import pytest

from remediator.testing import make_alert, make_payload, resolved
from tests.conftest import PG_DSN
from tests.fixtures.kube_api import FakeKubeAPI, RecordedRequest
from tests.reliability._faults_fixtures import ServeProcess, eventually
from tests.reliability.test_hostile import (
    OPERATOR,
    WEBHOOK,
    internal_errors,
    serve_config,
    serving,
)

pytestmark = pytest.mark.timeout(90)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "runbooks" / "examples"
NS = "prod"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
ALERT = "WorkerQueueBacklog"
FIRE_STEPS = ("backlog", "restart_worker", "scale_up", "tell")
SCALE_CALL = (
    f"kubectl scale deployment/mailer -n {NS} --replicas=6"
    "  # previous replicas recorded  # undone on resolve"
)
TELL = (
    "page: Queue emails of worker mailer backed up; the steps above say whether the"
    " worker was restarted (a dry-run only plans it). If it recurs within the hour, the"
    " cooldown holds the robot and pages you."
)

Entry = dict[str, Any]  # one line of GET /api/v1/actions, as JSON
T = TypeVar("T")


def _stamp(ago: timedelta) -> str:
    return (datetime.now(UTC) - ago).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@pytest.fixture
async def target_dsn(pg_schema_dsn: str) -> AsyncIterator[str]:
    """The database the runbook reads: a schema next to the state store's, with a
    queue ``emails`` backed up for 25 minutes and a queue ``sms`` that is not."""
    schema = pg_schema_dsn.rsplit("search_path=", 1)[1] + "_target"
    conn = await asyncpg.connect(PG_DSN, timeout=5)
    try:
        await conn.execute(f'CREATE SCHEMA "{schema}"')
        await conn.execute(
            f'CREATE TABLE "{schema}".job_queue (queue text, state text, enqueued_at timestamptz)'
        )
        await conn.execute(
            f'INSERT INTO "{schema}".job_queue VALUES'
            " ('emails', 'pending', now() - interval '25 minutes'),"
            " ('emails', 'pending', now() - interval '15 minutes'),"
            " ('emails', 'pending', now() - interval '1 minute'),"
            " ('emails', 'done', now() - interval '2 hours'),"
            " ('sms', 'pending', now() - interval '1 minute'),"
            " ('sms', 'done', now() - interval '3 hours')"
        )
    finally:
        await conn.close()
    try:
        yield f"{PG_DSN.split('?')[0]}?search_path={schema}"
    finally:
        conn = await asyncpg.connect(PG_DSN, timeout=5)
        try:
            await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        finally:
            await conn.close()


@pytest.fixture
def kube() -> Iterator[FakeKubeAPI]:
    """The cluster, in a thread: the CLI subprocesses the test waits on never stall it."""
    with FakeKubeAPI() as fake:
        fake.add_deployment(NS, "mailer", replicas=2, image="acme/mailer:1")
        fake.add_deployment(NS, "texter", replicas=3, image="acme/texter:1")
        yield fake


@dataclass
class World:
    proc: ServeProcess
    client: httpx.AsyncClient
    kube: FakeKubeAPI

    async def post(self, *alerts: dict[str, Any]) -> None:
        r = await self.client.post("/api/v1/alerts", json=make_payload(*alerts), headers=WEBHOOK)
        assert r.status_code == 202, r.text

    async def trail(self) -> list[Entry]:
        r = await self.client.get("/api/v1/actions", params={"limit": "500"}, headers=OPERATOR)
        assert r.status_code == 200, r.text
        entries: list[Entry] = r.json()["actions"]
        return entries

    async def steps(self, fingerprint: str, phase: str = "fire") -> dict[str, Entry]:
        """The finished steps of ``phase`` for the runs of this alert, by name."""
        return {
            e["name"]: e
            for e in await self.trail()
            if e["fingerprint"] == fingerprint and e["phase"] == phase and e["state"] == "done"
        }

    def replicas(self, deployment: str) -> int:
        dep = self.kube.get("deployments", NS, deployment)
        assert dep is not None
        return int(dep["spec"]["replicas"])

    def patches(self, deployment: str) -> list[RecordedRequest]:
        """The changes that reached the cluster for this Deployment (itself, its scale)."""
        base = f"/apis/apps/v1/namespaces/{NS}/deployments/{deployment}"
        return [
            r
            for r in list(self.kube.requests)
            if r.method in ("PATCH", "PUT") and r.path in (base, base + "/scale")
        ]

    def restarts(self, deployment: str) -> list[RecordedRequest]:
        return [
            r
            for r in self.patches(deployment)
            if RESTARTED_AT
            in str(((r.body or {}).get("spec") or {}).get("template", {}).get("metadata"))
        ]

    def diagnostics(self) -> str:
        return self.proc.output()[-4000:]

    async def until(self, check: Callable[[], Awaitable[T | None]], what: str) -> T:
        """Poll ``check`` until it finds something; on a timeout, the daemon's log."""
        found = await eventually(check, what, diagnostics=self.diagnostics)
        assert found is not None
        return found

    async def fired(self, fingerprint: str, names: tuple[str, ...]) -> dict[str, Entry]:
        """The fire-phase steps of this alert's run, once ``names`` are all finished."""

        async def check() -> dict[str, Entry] | None:
            steps = await self.steps(fingerprint)
            return steps if set(names) <= set(steps) else None

        return await self.until(check, f"steps {names} of {fingerprint}")


def _config_dir(tmp_path: Path) -> Path:
    """The shipped rule and runbook, copied unchanged next to the config."""
    home = tmp_path / "remediator"
    for sub, src in (
        ("rules", EXAMPLES / "rules" / "worker-stuck.yaml"),
        ("runbooks", EXAMPLES / "worker-stuck.yaml"),
    ):
        (home / sub).mkdir(parents=True)
        copied = Path(shutil.copy(src, home / sub / src.name))
        assert copied.read_bytes() == src.read_bytes()
    return home


@asynccontextmanager
async def running(
    tmp_path: Path, state_dsn: str, target_dsn: str, kube: FakeKubeAPI
) -> AsyncIterator[World]:
    home = _config_dir(tmp_path)
    kubeconfig = kube.write_kubeconfig(home / "kubeconfig", namespace=NS)
    # Relative to the config file, as a user writes them.
    config = serve_config(
        state_dsn,
        Path("rules"),
        mode="live",
        runbooks="runbooks",
        targets={
            "database": target_dsn,
            "kubernetes": {"mode": "kubeconfig", "namespace": NS, "kubeconfig": str(kubeconfig)},
        },
        engine={"poll_interval": "0.1s"},
    )
    async with (
        serving(home, config) as proc,
        httpx.AsyncClient(base_url=proc.url, timeout=30) as client,
    ):
        yield World(proc, client, kube)
        assert internal_errors(proc) == []


async def _cli(*args: str) -> str:
    """``remediator ARGS`` as a user types it; its stdout (a failure shows stderr)."""
    env = {k: v for k, v in os.environ.items() if k != "REMEDIATOR_CONFIG"}
    env["PYTHONPATH"] = str(ROOT)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "remediator",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, f"remediator {' '.join(args)}: {proc.returncode}\n{err.decode()}"
    return out.decode()


async def _run_row(dsn: str, run_id: str) -> asyncpg.Record:
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow("SELECT * FROM runs WHERE id = $1", run_id)
    finally:
        await conn.close()
    assert row is not None, run_id
    return row


def _assert_backlog_call(rendered: str, queue: str) -> None:
    lines = rendered.splitlines()
    assert lines[0] == "-- read-only transaction", rendered
    assert "FROM job_queue" in rendered and "WHERE queue = $1 AND state = 'pending'" in rendered
    assert lines[-1] == f"-- $1 = {queue!r}", rendered  # bound, never spliced in
    assert queue not in "\n".join(lines[:-1]), rendered


async def test_worker_stuck_example_end_to_end_through_a_real_daemon(
    tmp_path: Path, pg_schema_dsn: str, target_dsn: str, kube: FakeKubeAPI
) -> None:
    labels = {"deployment": "mailer", "queue": "emails"}
    first = make_alert(ALERT, labels, starts_at=_stamp(timedelta(minutes=12)))
    fp = first["fingerprint"]
    async with running(tmp_path, pg_schema_dsn, target_dsn, kube) as w:
        # 1. fire: backlog confirmed, worker restarted, scale-up offered, on-call told.
        await w.post(first)
        steps = await w.fired(fp, FIRE_STEPS)
        assert {s["run_id"] for s in steps.values()} == {steps["backlog"]["run_id"]}
        run_id = steps["backlog"]["run_id"]
        outcomes = {n: steps[n]["outcome"] for n in FIRE_STEPS}
        assert outcomes == {
            "backlog": "applied",
            "restart_worker": "applied",
            "scale_up": "awaiting_approval",
            "tell": "applied",
        }, steps
        backlog = steps["backlog"]
        assert backlog["detail"] == "1 row(s)"  # one aggregate row: the backlog exists
        assert backlog["result"]["data"]["count"] == 1
        assert backlog["result"]["data"]["rows"][0]["pending"] == 3  # the emails pending
        restarts = w.restarts("mailer")
        assert len(restarts) == 1, w.patches("mailer")
        stamp = restarts[0].body["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT]
        assert steps["restart_worker"]["detail"] == f"restarted deployment/mailer at {stamp}"
        dep = kube.get("deployments", NS, "mailer")
        assert dep is not None
        assert dep["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT] == stamp
        scale_up = steps["scale_up"]
        assert scale_up["status"] == "awaiting approval" and scale_up["approval"] == "approve"
        assert isinstance(scale_up["approval_id"], int)
        assert w.replicas("mailer") == 2
        assert [r for r in w.patches("mailer") if r.path.endswith("/scale")] == []
        assert steps["tell"]["detail"] == TELL.removeprefix("page: ")

        # 2. approval, through the CLI a human types.
        said = await _cli(
            "approve", str(scale_up["approval_id"]), "--config", str(w.proc.config_path)
        )
        assert f"approval {scale_up['approval_id']} (scale_up of run {run_id}) approved" in said

        async def scaled() -> Entry | None:
            # The approved run of the step is a row of its own (phase "approved").
            step = (await w.steps(fp, "approved")).get("scale_up")
            return step if step is not None and w.replicas("mailer") == 6 else None

        approved = await w.until(scaled, "scale_up applied")
        assert approved["outcome"] == "applied" and approved["run_id"] == run_id, approved
        assert approved["detail"] == "scaled deployment/mailer from 2 to 6 replicas"
        assert approved["changes"] == {
            "deployment": "mailer",
            "previous_replicas": 2,
            "replicas": 6,
        }

        # 3. guards: the same alert again within the hour, a new startsAt: cooldown.
        again = make_alert(ALERT, labels, starts_at=_stamp(timedelta(minutes=1)))
        assert again["fingerprint"] == fp
        await w.post(again)

        async def blocked() -> Entry | None:
            rows = [
                e
                for e in await w.trail()
                if e["fingerprint"] == fp and e["run_id"] != run_id and e["state"] == "done"
            ]
            return rows[0] if rows else None

        held = await w.until(blocked, "the second run decided")
        assert held["outcome"] == "blocked" and held["status"] == "blocked by cooldown", held
        assert held["detail"] == "cooldown engaged (cooldown 3600 s per target)", held
        assert (held["phase"], held["name"], held["kind"]) == ("run", "(whole run)", "guard")
        assert (await _run_row(pg_schema_dsn, held["run_id"]))["blocked_by"] == "cooldown"
        assert len(w.restarts("mailer")) == 1
        assert w.replicas("mailer") == 6

        # 4. corroboration: queue sms is not backed up; texter is left alone.
        quiet = make_alert(
            ALERT, {"deployment": "texter", "queue": "sms"}, starts_at=_stamp(timedelta(minutes=3))
        )
        await w.post(quiet)
        texter = await w.fired(quiet["fingerprint"], FIRE_STEPS)
        check = texter["backlog"]
        assert check["outcome"] == "skipped", check
        assert check["reason"] == (
            "not corroborated: the query returned 0 row(s); at least one row expected"
        )
        texter_run = await _run_row(pg_schema_dsn, check["run_id"])
        assert (texter_run["outcome"], texter_run["blocked_by"]) == ("blocked", "not_corroborated")
        for name in FIRE_STEPS[1:]:  # nothing after the unconfirmed diagnosis ran
            assert texter[name]["outcome"] == "skipped", texter[name]
            assert texter[name]["reason"] == "not run: blocked by guard not_corroborated"
            assert texter[name]["approval_id"] is None  # no scale-up offered
        assert w.patches("texter") == []
        assert w.replicas("texter") == 3

        # 5. undo: the first alert resolves; the replicas it recorded come back.
        await w.post(resolved(first, ends_at=_stamp(timedelta(seconds=0))))

        async def undone() -> Entry | None:
            step = (await w.steps(fp, "undo")).get("scale_up")
            return step if step is not None and w.replicas("mailer") == 2 else None

        undo = await w.until(undone, "scale_up undone")
        assert undo["outcome"] == "rolled_back" and undo["run_id"] == run_id, undo
        assert undo["detail"] == "scaled deployment/mailer back to 2 replicas"
        scales = [r.body["spec"] for r in w.patches("mailer") if r.path.endswith("/scale")]
        assert scales == [{"replicas": 6}, {"replicas": 2}]
        assert len(w.restarts("mailer")) == 1  # a restart has nothing to undo

        # 6. audit: every step above, with the call it rendered.
        final = await w.steps(fp)
        offered = final["scale_up"]
        assert offered["outcome"] == "awaiting_approval", offered  # what the run offered
        assert offered["status"].startswith("approved, executed by cli:"), offered
        assert offered["approval_id"] == scale_up["approval_id"]
        assert offered["decided_by"] == offered["status"].removeprefix("approved, executed by ")
        _assert_backlog_call(final["backlog"]["rendered"], "emails")
        _assert_backlog_call(check["rendered"], "sms")
        assert final["restart_worker"]["rendered"] == (
            f"kubectl rollout restart deployment/mailer -n {NS}"
        )
        assert offered["rendered"] == approved["rendered"] == SCALE_CALL
        assert final["tell"]["rendered"] == TELL
        # The call the undo made, from the replicas the scale-up recorded.
        assert undo["rendered"] == (
            f"kubectl scale deployment/mailer -n {NS} --current-replicas=6 --replicas=2"
        )
        trail = await w.trail()
        mine = [e for e in trail if e["run_id"] == run_id]
        assert sorted((e["phase"], e["name"]) for e in mine) == sorted(
            [("fire", n) for n in FIRE_STEPS] + [("approved", "scale_up"), ("undo", "scale_up")]
        )
        assert all(e["rendered"] for e in mine)
        assert all(e["run_mode"] == "live" and e["runbook"] == "WORKER-STUCK" for e in trail)


async def test_replay_plans_the_calls_the_live_run_made(
    tmp_path: Path, pg_schema_dsn: str, target_dsn: str, kube: FakeKubeAPI
) -> None:
    alert = make_alert(
        ALERT, {"deployment": "mailer", "queue": "emails"}, starts_at=_stamp(timedelta(minutes=12))
    )
    payload = tmp_path / "payload.json"
    payload.write_text(json.dumps(make_payload(alert)))
    async with running(tmp_path, pg_schema_dsn, target_dsn, kube) as w:
        await w.post(alert)
        steps = await w.fired(alert["fingerprint"], FIRE_STEPS)
        plan = json.loads(
            await _cli("replay", str(payload), "--config", str(w.proc.config_path), "--json")
        )
    (entry,) = plan
    (run,) = entry["runs"]
    assert (run["rule"], run["runbook"], run["mode"]) == ("worker-stuck", "WORKER-STUCK", "live")
    planned = [(s["name"], s["call"]) for s in run["steps"]]
    recorded = [(s["name"], s["rendered"]) for s in sorted(steps.values(), key=lambda s: s["seq"])]
    assert planned == recorded
    assert [name for name, _call in planned] == list(FIRE_STEPS)
