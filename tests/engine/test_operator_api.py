"""Operator commands through a running daemon's API (``--url``, ``--token-file``), and
the commands a daemon started without a config file prints in its pages."""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path

import httpx

from remediator.runbook_api.context import Clients
from remediator.testing import make_alert, make_payload
from tests.conftest import free_port
from tests.engine import _testbook
from tests.engine.test_operator_commands import commands_in, paste, run_cli
from tests.helpers import running_daemon

TOKEN = "alice-operator-token-0123456789"


async def _first_page(d, timeout: float = 20.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not d.pager.triggers():
        assert time.monotonic() < deadline, "no page"
        await asyncio.sleep(0.05)
    return d.pager.triggers()[0]


def _config(tmp_path: Path, **extra: object) -> dict[str, object]:
    rules = tmp_path / "rules.yaml"
    rules.write_text(_testbook.rules())
    return {
        "mode": "live",
        "state": f"sqlite:///{tmp_path}/state.db",
        "rules": str(rules),
        "listen": f"127.0.0.1:{free_port()}",
        **extra,
    }


async def test_a_daemon_without_a_config_file_prints_url_commands_that_paste(
    tmp_path: Path, clients: Clients
) -> None:
    elsewhere = tmp_path / "home"
    elsewhere.mkdir()
    async with running_daemon(
        _config(tmp_path),
        registry=_testbook.registry(),
        clients=Clients(database=clients.database),
        bind_listen=True,
    ) as d:
        async with httpx.AsyncClient(base_url=d.url) as c:
            r = await c.post("/api/v1/alerts", json=make_payload(make_alert("TestAlert")))
            assert r.status_code == 202, r.text
        page = await _first_page(d)
        [approve, _reject] = commands_in(page.content.left_for_human[0])
        assert approve.endswith(f"--url {d.url}"), approve

        listed = await asyncio.to_thread(run_cli, "approvals", "--url", d.url, cwd=elsewhere)
        assert listed.returncode == 0, listed.stderr
        assert "scale_down" in listed.stdout and f"--url {d.url}" in listed.stdout

        done = await asyncio.to_thread(paste, approve, cwd=elsewhere)
        assert done.returncode == 0, done.stderr
        assert "(scale_down of run " in done.stdout and "by local-operator" in done.stdout

        actions = await asyncio.to_thread(
            run_cli, "actions", "--json", "--url", d.url, cwd=elsewhere
        )
        rows = json.loads(actions.stdout)
        [decided] = [a for a in rows if a["name"] == "scale_down" and a["phase"] == "fire"]
        assert decided["decided_by"] == "local-operator"
        assert decided["status"].startswith("approved")
    assert not (elsewhere / "remediator-state.db").exists()


async def test_url_with_a_token_file_and_the_approvals_route(
    tmp_path: Path, clients: Clients
) -> None:
    token_file = tmp_path / "operator-token"
    token_file.write_text(TOKEN + "\n")
    config = _config(tmp_path, auth={"operator_tokens": {"alice": TOKEN}})
    async with running_daemon(
        config, registry=_testbook.registry(), clients=Clients(database=clients.database)
    ) as d:
        async with httpx.AsyncClient(base_url=d.url) as c:
            assert (await c.get("/api/v1/approvals")).status_code == 401
            r = await c.post("/api/v1/alerts", json=make_payload(make_alert("TestAlert")))
            assert r.status_code == 202
            await _first_page(d)
            r = await c.get("/api/v1/approvals", headers={"Authorization": f"Bearer {TOKEN}"})
            [pending] = r.json()["approvals"]
            assert pending["step"] == "scale_down" and "operator tokens alice" in pending["who"]
            assert pending["rendered"] == "UPDATE knobs SET value = 0 WHERE name = 'replicas'"

        refused = await asyncio.to_thread(run_cli, "approvals", "--url", d.url, cwd=tmp_path)
        assert refused.returncode == 1 and "refused the operator token" in refused.stderr
        argv = ("--url", d.url, "--token-file", str(token_file))
        listed = await asyncio.to_thread(run_cli, "approvals", *argv, cwd=tmp_path)
        assert listed.returncode == 0, listed.stderr
        assert re.search(
            rf"^{pending['id']}\s+{pending['run_id']}\s+RB-T\s+scale_down", listed.stdout, re.M
        )
        rejected = await asyncio.to_thread(
            run_cli, "reject", str(pending["id"]), *argv, cwd=tmp_path
        )
        assert rejected.returncode == 0 and "rejected by alice" in rejected.stdout
        again = await asyncio.to_thread(run_cli, "reject", str(pending["id"]), *argv, cwd=tmp_path)
        assert again.returncode == 1 and "is rejected" in again.stderr
        paused = await asyncio.to_thread(run_cli, "pause", *argv, cwd=tmp_path)
        assert paused.returncode == 0 and f"the daemon at {d.url}" in paused.stdout
        assert await d.daemon.engine.is_paused()
        listed = await asyncio.to_thread(run_cli, "approvals", *argv, cwd=tmp_path)
        assert listed.stdout.strip() == "no pending approvals"
