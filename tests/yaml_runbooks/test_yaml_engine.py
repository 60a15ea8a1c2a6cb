"""A YAML runbook on the real engine: real Postgres target, the Kubernetes API fake.

The shipped example WORKER-STUCK is loaded from its file, as a user's would be, and
run through fire, approval and resolve. What the engine recorded is checked against
the target and the fake; what the plan showed is checked against what ran; and the
label and read-only checks are tried the way an attacker with the webhook token would.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from remediator.clients.database import TargetDatabase
from remediator.clients.kubernetes import KubernetesClient
from remediator.runbook_api.context import Clients
from remediator.runbook_api.registry import Registry
from remediator.runbooks import yaml_runbooks
from remediator.testing import Harness, make_alert, resolved
from tests.fixtures.kube_api import FakeKubeAPI
from tests.runbooks import _rb0103_fixtures as fx

EXAMPLE = Path(__file__).resolve().parents[2] / "runbooks" / "examples"
RULES = (EXAMPLE / "rules" / "worker-stuck.yaml").read_text()
ALERT = make_alert("WorkerQueueBacklog", {"deployment": "mailer", "queue": "emails"})


@pytest.fixture
async def target(pg_schema_dsn: str) -> AsyncIterator[TargetDatabase]:
    conn = await asyncpg.connect(pg_schema_dsn)
    try:
        await conn.execute(
            "CREATE TABLE job_queue (id serial PRIMARY KEY, queue text, state text,"
            " enqueued_at timestamptz);"
            "INSERT INTO job_queue (queue, state, enqueued_at)"
            " SELECT 'emails', 'pending', now() - interval '40 minutes'"
            " FROM generate_series(1, 250);"
            "INSERT INTO job_queue (queue, state, enqueued_at)"
            " VALUES ('sms', 'pending', now() - interval '1 minute')"
        )
    finally:
        await conn.close()
    db = await TargetDatabase.connect(pg_schema_dsn)
    try:
        yield db
    finally:
        await db.aclose()


@pytest.fixture
async def fake() -> AsyncIterator[FakeKubeAPI]:
    async with FakeKubeAPI() as server:
        for name in ("mailer", "texter"):
            server.add_deployment(fx.NS, name, replicas=2, pod_spec=fx.workload_pod_spec(name))
        yield server


@pytest.fixture
async def kube(fake: FakeKubeAPI) -> AsyncIterator[KubernetesClient]:
    async with fx.kube_client(fake.url) as client:
        yield client


def registry(extra: str | None = None, tmp: Path | None = None) -> Registry:
    reg = Registry()
    assert yaml_runbooks.load(EXAMPLE, reg) == []
    if extra is not None and tmp is not None:
        (tmp / "extra.yaml").write_text(extra)
        assert yaml_runbooks.load(tmp / "extra.yaml", reg) == []
    return reg


def harness(
    db: TargetDatabase, kube: KubernetesClient, reg: Registry, rules: str = RULES
) -> Harness:
    return Harness(reg, rules, clients=Clients(database=db, kubernetes=kube))


def replicas(fake: FakeKubeAPI, name: str = "mailer") -> int:
    dep = fake.get("deployments", fx.NS, name)
    assert dep is not None
    return int(dep["spec"]["replicas"])


def patches(fake: FakeKubeAPI, name: str) -> list[Any]:
    return [r for r in fake.requests if r.method == "PATCH" and name in r.path]


async def by_name(h: Harness, phase: str | None = None) -> dict[str, Any]:
    [run] = await h.runs()
    return {s.name: s for s in await h.steps(run["id"], phase)}


async def test_fire_approve_resolve_does_what_the_plan_said(
    target: TargetDatabase, kube: KubernetesClient, fake: FakeKubeAPI
) -> None:
    async with harness(target, kube, registry()) as h:
        await h.deliver(ALERT)
        fired = await by_name(h, "fire")
        assert {n: s.outcome for n, s in fired.items()} == {
            "backlog": "applied",
            "restart_worker": "applied",
            "scale_up": "awaiting_approval",
            "tell": "applied",
        }
        assert fired["backlog"].result["data"]["rows"][0]["pending"] == 250
        restart = patches(fake, "deployments/mailer")
        assert len(restart) == 1 and "restartedAt" in str(restart[0].body)
        assert replicas(fake) == 2  # waits for a human
        assert (
            "Queue emails of worker mailer backed up; the steps above say whether"
            in (fired["tell"].result["summary"])
        )

        [run] = await h.runs()
        [approval] = await h.approvals(run["id"])
        await h.approve(approval.id)
        assert replicas(fake) == 6
        approved = await by_name(h, "approved")
        assert approved["scale_up"].outcome == "applied"
        assert approved["scale_up"].changes == {
            "deployment": "mailer",
            "previous_replicas": 2,
            "replicas": 6,
        }

        await h.deliver(resolved(ALERT))
        undone = await by_name(h, "undo")
        assert undone["scale_up"].outcome == "rolled_back"
        assert replicas(fake) == 2

        # The plan is the call that ran: the same text, recorded at each step.
        recorded = {n: s.rendered for n, s in fired.items()}
        assert approved["scale_up"].rendered == recorded["scale_up"]
    assert recorded["backlog"].startswith("-- read-only transaction\nSELECT count(*)")
    assert recorded["backlog"].endswith("-- $1 = 'emails'")
    assert recorded["restart_worker"] == f"kubectl rollout restart deployment/mailer -n {fx.NS}"
    assert recorded["scale_up"] == (
        f"kubectl scale deployment/mailer -n {fx.NS} --replicas=6"
        "  # previous replicas recorded  # undone on resolve"
    )


async def test_a_backlog_the_database_does_not_show_is_not_corroborated(
    target: TargetDatabase, kube: KubernetesClient, fake: FakeKubeAPI
) -> None:
    alert = make_alert("WorkerQueueBacklog", {"deployment": "texter", "queue": "sms"})
    async with harness(target, kube, registry()) as h:
        await h.deliver(alert)
        steps = await by_name(h, "fire")
    assert steps["backlog"].outcome == "skipped"
    assert "not corroborated" in (steps["backlog"].reason or "")
    assert "restart_worker" not in steps or steps["restart_worker"].outcome != "applied"
    assert patches(fake, "deployments/texter") == []


@pytest.mark.parametrize(
    "labels",
    [
        {"deployment": "mailer", "queue": "emails' OR '1'='1"},
        {"deployment": "mailer; kubectl delete ns prod", "queue": "emails"},
        {"deployment": "../../secrets", "queue": "emails"},
    ],
)
async def test_a_hostile_label_reaches_no_query_and_no_deployment(
    target: TargetDatabase, kube: KubernetesClient, fake: FakeKubeAPI, labels: dict[str, str]
) -> None:
    async with harness(target, kube, registry()) as h:
        await h.deliver(make_alert("WorkerQueueBacklog", labels))
        [run] = await h.runs()
        steps = {s.name: s for s in await h.steps(run["id"])}
        approvals = await h.approvals(run["id"])
    assert [r for r in fake.requests if r.method != "GET"] == []
    assert await target.fetchval("SELECT count(*) FROM job_queue") == 251
    assert approvals == []  # no approval that could only fail once approved
    outcomes = {n: (s.outcome, s.reason or "") for n, s in steps.items()}
    if labels["queue"] != "emails":  # the corroborating read refuses it: nothing else runs
        assert outcomes["backlog"][0] == "failed", outcomes
        assert "rejected input queue" in outcomes["backlog"][1]
        for name in ("restart_worker", "scale_up", "tell"):
            assert outcomes[name] == ("skipped", "not run: backlog failed"), outcomes
    else:  # the read is harmless; every step that would use the deployment refuses it
        assert outcomes["backlog"][0] == "applied"
        assert outcomes["restart_worker"][0] == "failed"
        assert outcomes["scale_up"][0] == "skipped"
        for name in ("restart_worker", "scale_up"):
            assert "rejected input deployment" in outcomes[name][1], outcomes


READ_ONLY_LIE = """\
runbooks:
  - id: SNEAKY
    title: A read that writes
    severity: P3
    labels: {queue: k8s_name}
    steps:
      - name: looks_like_a_read
        kind: diagnose
        sql:
          query: UPDATE job_queue SET state = 'done' WHERE queue = $1
          binds: ["{labels.queue}"]
"""


async def test_a_step_declared_read_only_cannot_write(
    target: TargetDatabase, kube: KubernetesClient, tmp_path: Path
) -> None:
    rules = (
        "rules:\n  - name: sneaky\n    matchers: ['alertname=\"Sneaky\"']\n    runbook: SNEAKY\n"
    )
    async with harness(target, kube, registry(READ_ONLY_LIE, tmp_path), rules) as h:
        await h.deliver(make_alert("Sneaky", {"queue": "emails"}))
        steps = await by_name(h, "fire")
    assert steps["looks_like_a_read"].outcome == "failed"
    assert "read-only" in (steps["looks_like_a_read"].reason or "")
    pending = "SELECT count(*) FROM job_queue WHERE state = 'pending'"
    assert await target.fetchval(pending) == 251


FLUSH = """\
runbooks:
  - id: QUEUE-FLUSH
    title: Flush a queue with the worker's own environment
    severity: P3
    labels: {queue: k8s_name}
    steps:
      - name: flush_queue
        kind: mitigate
        kube_job:
          deployment: mailer
          argv: [python, -m, jobs.flush, --queue, "{labels.queue}"]
      - name: flush_again
        kind: mitigate
        kube_job:
          deployment: mailer
          argv: [python, -m, jobs.flush, --queue, "{labels.queue}", --second]
"""


async def test_a_job_runs_in_the_deployments_pod_template_one_per_step(
    target: TargetDatabase, kube: KubernetesClient, fake: FakeKubeAPI, tmp_path: Path
) -> None:
    rules = (
        "rules:\n  - name: flush\n    matchers: ['alertname=\"Flush\"']\n    runbook: QUEUE-FLUSH\n"
    )
    async with harness(target, kube, registry(FLUSH, tmp_path), rules) as h:
        await h.deliver(make_alert("Flush", {"queue": "emails"}))
        steps = await by_name(h, "fire")
        [run] = await h.runs()
    assert {n: s.outcome for n, s in steps.items()} == {
        "flush_queue": "applied",
        "flush_again": "applied",
    }
    names = [steps[n].result["data"]["job"] for n in ("flush_queue", "flush_again")]
    assert len(set(names)) == 2 and all(run["id"].lower() in n for n in names)
    job = fake.get("jobs", fx.NS, names[0])
    assert job is not None
    fx.assert_job_runs_in_workload(
        job, "mailer", ["python", "-m", "jobs.flush", "--queue", "emails"]
    )
    assert steps["flush_queue"].rendered.endswith(
        f"kubectl exec deployment/mailer -n {fx.NS} -- python -m jobs.flush --queue emails"
    )


PAUSE = """\
runbooks:
  - id: QUEUE-PAUSE
    title: Hold a queue's pending jobs while the alert fires
    severity: P3
    labels: {queue: k8s_name}
    steps:
      - name: hold_jobs
        kind: mitigate
        temporary: true
        sql:
          query: UPDATE job_queue SET state = 'held' WHERE queue = $1 AND state = 'pending'
          binds: ["{labels.queue}"]
          mutates: true
        undo:
          sql:
            query: UPDATE job_queue SET state = 'pending' WHERE queue = $1 AND state = 'held'
            binds: ["{labels.queue}"]
            mutates: true
"""


async def test_a_temporary_sql_change_is_undone_by_its_own_undo_statement(
    target: TargetDatabase, kube: KubernetesClient, tmp_path: Path
) -> None:
    rules = (
        "rules:\n  - name: pause\n    matchers: ['alertname=\"Pause\"']\n    runbook: QUEUE-PAUSE\n"
    )
    alert = make_alert("Pause", {"queue": "emails"})
    held = "SELECT count(*) FROM job_queue WHERE state = 'held'"
    async with harness(target, kube, registry(PAUSE, tmp_path), rules) as h:
        await h.deliver(alert)
        fired = await by_name(h, "fire")
        assert await target.fetchval(held) == 250
        await h.deliver(resolved(alert))
        undone = await by_name(h, "undo")
    assert fired["hold_jobs"].outcome == "applied"
    assert fired["hold_jobs"].result["summary"] == "UPDATE 250"
    assert fired["hold_jobs"].rendered.startswith(
        "-- one transaction\nUPDATE job_queue SET state = 'held'"
    )
    assert undone["hold_jobs"].outcome == "rolled_back"
    # The undo's audit row is the undo's own statement, not the step's.
    assert (
        "SET state = 'pending' WHERE queue = $1 AND state = 'held'" in undone["hold_jobs"].rendered
    )
    assert await target.fetchval(held) == 0
    assert await target.fetchval("SELECT count(*) FROM job_queue WHERE state = 'pending'") == 251


async def test_the_kill_switch_binds_a_yaml_runbook_before_approval_and_undo(
    target: TargetDatabase, kube: KubernetesClient, fake: FakeKubeAPI
) -> None:
    """The YAML steps pass the engine's one gate: paused before the run, nothing is
    restarted; an approval decided while paused waits; an undo while paused waits;
    each goes on, once, after resume."""

    def changes() -> list[Any]:
        return [r for r in fake.requests if r.method != "GET"]

    async with harness(target, kube, registry()) as h:
        await h.engine.set_paused(True, "alice")
        await h.deliver(ALERT)
        [run] = await h.runs()
        assert run.state == "parked" and changes() == []
        await h.engine.set_paused(False, "alice")
        await h.maintenance()
        assert len(patches(fake, "deployments/mailer")) == 1  # the restart, once

        [approval] = await h.approvals(run.id)
        await h.engine.set_paused(True, "alice")
        await h.approve(approval.id)
        await h.maintenance()
        assert replicas(fake) == 2  # decided, not done
        await h.engine.set_paused(False, "alice")
        await h.maintenance()
        assert replicas(fake) == 6

        await h.engine.set_paused(True, "alice")
        await h.deliver(resolved(ALERT))
        await h.maintenance()
        assert replicas(fake) == 6  # the undo waits for resume
        await h.engine.set_paused(False, "alice")
        await h.maintenance()
        assert replicas(fake) == 2
        restarts = patches(fake, "deployments/mailer")
    assert len([r for r in restarts if "restartedAt" in str(r.body)]) == 1


async def test_a_corroborating_read_without_its_target_confirms_nothing(
    kube: KubernetesClient, fake: FakeKubeAPI
) -> None:
    """No targets.database: the backlog cannot be checked, so the alert is not
    corroborated and the restart after it never runs (not "skipped, carry on")."""
    async with Harness(registry(), RULES, clients=Clients(kubernetes=kube)) as h:
        await h.deliver(ALERT)
        steps = await by_name(h, "fire")
    assert steps["backlog"].outcome == "skipped"
    assert steps["backlog"].reason == (
        "not corroborated: the alert cannot be confirmed:"
        " not configured: targets.database is not set"
    )
    assert "restart_worker" not in steps or steps["restart_worker"].outcome != "applied"
    assert [r for r in fake.requests if r.method != "GET"] == []
