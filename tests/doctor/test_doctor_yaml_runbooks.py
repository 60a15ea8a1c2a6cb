"""``doctor`` on a YAML runbook: its statements are EXPLAINed on the user's database
(never run) and its Kubernetes verbs asked of the API server, so a missing table,
column or permission is named before the first alert, as for the built-in ones."""

from __future__ import annotations

import shutil
from pathlib import Path

import asyncpg
from doctor_support import check, doctor, step, write_config

from tests.fixtures.kube_api import FakeKubeAPI

EXAMPLE = Path(__file__).resolve().parents[2] / "runbooks" / "examples"
JOB_QUEUE = (
    "CREATE TABLE job_queue (id serial PRIMARY KEY, queue text, state text,"
    " enqueued_at timestamptz)"
)


def _config(tmp_path: Path, targets: dict[str, object]) -> Path:
    shutil.copytree(EXAMPLE, tmp_path / "runbooks")
    return write_config(
        tmp_path,
        {
            "rules": str(tmp_path / "runbooks" / "rules"),
            "runbooks": str(tmp_path / "runbooks"),
            "targets": targets,
        },
    )


async def test_a_statement_on_a_missing_table_is_named_and_runs_nothing(
    tmp_path: Path, pg_schema_dsn: str
) -> None:
    config = _config(tmp_path, {"database": pg_schema_dsn})
    missing = await doctor(config, "--json")
    conn = await asyncpg.connect(pg_schema_dsn)
    try:
        await conn.execute(JOB_QUEUE)
        present = await doctor(config, "--json")
        rows = await conn.fetchval("SELECT count(*) FROM job_queue")
    finally:
        await conn.close()

    assert missing.code == 1, missing.stdout
    report = missing.json()
    backlog = step(report, "WORKER-STUCK", "backlog")
    assert backlog["runnable"] is False
    assert 'relation "job_queue" does not exist' in backlog["reason"]
    assert backlog["missing"][0].startswith("statement SELECT count(*) AS pending")
    db = check(report, "targets", "database")
    assert db["ok"] is False and "statement SELECT count(*)" in db["detail"]

    assert step(present.json(), "WORKER-STUCK", "backlog")["runnable"] is True
    assert check(present.json(), "targets", "database")["ok"] is True
    assert rows == 0  # EXPLAINed in a read-only transaction, never run


async def test_a_denied_verb_makes_the_yaml_step_not_runnable(tmp_path: Path) -> None:
    async with FakeKubeAPI() as fake:
        kubeconfig = fake.write_kubeconfig(tmp_path / "kubeconfig", namespace="prod")
        kube = {"mode": "kubeconfig", "kubeconfig": str(kubeconfig), "namespace": "prod"}
        config = _config(tmp_path, {"kubernetes": kube})
        allowed = await doctor(config, "--json")
        fake.deny("patch", "deployments", "scale", group="apps")
        denied = await doctor(config, "--json")
    ok = allowed.json()
    assert step(ok, "WORKER-STUCK", "restart_worker")["runnable"] is True
    assert step(ok, "WORKER-STUCK", "scale_up")["runnable"] is True
    # No database configured: the corroborating read says so.
    assert "targets.database" in step(ok, "WORKER-STUCK", "backlog")["missing"]

    report = denied.json()
    scale = step(report, "WORKER-STUCK", "scale_up")
    assert scale["runnable"] is False
    assert "patch deployments.apps/scale" in scale["missing"]
    assert step(report, "WORKER-STUCK", "restart_worker")["runnable"] is True
    assert denied.code == 1
