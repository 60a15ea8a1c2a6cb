"""Operator API and rule reload over real HTTP."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.engine import _testbook
from tests.helpers import running_daemon


async def test_reload_keeps_old_rules_when_new_ones_are_bad_and_counts_outcomes(
    state_url, tmp_path: Path
):
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "r.yaml").write_text(_testbook.rules())
    cfg = {"state": state_url, "rules": str(rules)}
    async with (
        running_daemon(cfg, registry=_testbook.registry(), workers=False) as d,
        httpx.AsyncClient(base_url=d.url) as c,
    ):
        (rules / "r.yaml").write_text("rules:\n  - name: x\n    runbook: RB-T\n")
        r = await c.post("/-/reload")
        assert r.status_code == 400 and "matchers" in str(r.json()["detail"])
        assert d.daemon.ruleset is not None and len(d.daemon.ruleset) == 1
        assert (await c.get("/readyz")).status_code == 200  # old rules still serve
        (rules / "r2.yaml").write_text(_testbook.rules().replace("test-rule", "second"))
        (rules / "r.yaml").write_text(_testbook.rules())
        r = await c.post("/-/reload")
        assert r.status_code == 200 and r.json()["rules"] == 2
        assert d.sample("remediator_rule_reloads_total", {"outcome": "failure"}) == 1
        assert d.sample("remediator_rule_reloads_total", {"outcome": "success"}) == 2


async def test_approve_unknown_and_bad_ids(state_url, tmp_path: Path):
    (tmp_path / "rules").mkdir()
    cfg = {"state": state_url, "rules": str(tmp_path / "rules")}
    async with running_daemon(cfg, workers=False) as d, httpx.AsyncClient(base_url=d.url) as c:
        r = await c.post("/api/v1/actions/999/approve")
        assert r.status_code == 404 and r.json()["error"] == "not_found"
        r = await c.post("/api/v1/actions/abc/approve")
        assert r.status_code == 400
