"""A reload reads the YAML runbooks again with the rules: all or nothing."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx

from tests.helpers import running_daemon

EXAMPLE = Path(__file__).resolve().parents[2] / "runbooks" / "examples"


async def test_a_reload_takes_an_edited_runbook_and_refuses_a_broken_one(tmp_path: Path) -> None:
    state_url = f"sqlite:///{tmp_path}/state.db"
    shutil.copytree(EXAMPLE, tmp_path / "runbooks")
    runbook = tmp_path / "runbooks" / "worker-stuck.yaml"
    original = runbook.read_text()
    cfg = {
        "state": state_url,
        "rules": str(tmp_path / "runbooks" / "rules"),
        "runbooks": str(tmp_path / "runbooks"),
    }
    async with (
        running_daemon(cfg, workers=False) as d,
        httpx.AsyncClient(base_url=d.url) as c,
    ):
        loaded = d.daemon.registry.get("WORKER-STUCK")
        assert loaded is not None and loaded.step("scale_up").title.startswith("Scale the worker")
        assert loaded.source.endswith("worker-stuck.yaml:11")

        runbook.write_text(original.replace("replicas: 6}", "replicas: 8}"))
        r = await c.post("/-/reload")
        assert r.status_code == 200, r.text
        edited = d.daemon.registry.get("WORKER-STUCK")
        assert edited is not None and edited is not loaded
        assert edited.step("scale_up").requires  # rebuilt from the file
        assert "--replicas=8" in _plan(edited)

        runbook.write_text(original.replace("kube_restart:", "kube_restrat:"))
        r = await c.post("/-/reload")
        assert r.status_code == 400
        assert "unknown key 'kube_restrat'" in str(r.json()["detail"])
        assert d.daemon.registry.get("WORKER-STUCK") is edited  # kept as it was
        assert d.daemon.ruleset is not None and len(d.daemon.ruleset) == 1
        assert (await c.get("/readyz")).status_code == 200


def _plan(runbook: object) -> str:
    from remediator.runbook_api.context import AlertView, Clients, StepContext

    ctx = StepContext(
        run_id="r1",
        rule="worker-stuck",
        runbook="WORKER-STUCK",
        alert=AlertView("WorkerQueueBacklog", "f", "s", {"deployment": "mailer"}, {}),
        params=None,
        mode="dry-run",
        clients=Clients(),
    )
    step = runbook.step("scale_up")  # type: ignore[attr-defined]
    return str(step.render(ctx=ctx))
