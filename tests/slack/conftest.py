"""Slack approvals end to end, in process: a real daemon (Postgres state, its own HTTP
server on loopback), RB-03 acting on a real seeded DawsOS Postgres, and
``SlackCapture`` standing in for the Slack Web API and the clicks' response_url."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from aiohttp import web

from remediator.clients.database import TargetDatabase
from remediator.daemon import Daemon
from remediator.errors import TargetTimeout, TargetUnavailable
from remediator.metrics import Metrics
from remediator.runbook_api.registry import Registry
from remediator.runbooks import rb03_alert_storm as rb03
from remediator.server.app import create_app
from remediator.settings import from_mapping
from remediator.testing import make_alert, make_payload
from tests.conftest import PG_DSN, service_missing
from tests.fixtures import dawsos as testing_dawsos
from tests.fixtures.slack import SlackCapture, blocks_of

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
BOT_TOKEN = "xoxb-17653672481-19874698323-pdFZKVeTuE8sk7oOcBrzbqgy"
ALICE = "U024BE7LH"
STRANGER = "U0STRANGER"
ALERT = make_alert("AlertStorm", {"severity": "critical", "service": "dawsos"})


@dataclass
class World:
    url: str
    daemon: Daemon
    slack: SlackCapture
    db: TargetDatabase
    duplicates: list[int]
    http: httpx.AsyncClient

    async def fire(self) -> None:
        r = await self.http.post("/api/v1/alerts", json=make_payload(ALERT))
        assert r.status_code == 202, r.text

    async def approvals(self) -> dict[str, dict[str, Any]]:
        [run] = await self.daemon.store.list_runs(10)
        return {a["step"]: a for a in await self.daemon.store.approvals_for_run(run["id"])}

    async def approved_steps(self) -> list[dict[str, Any]]:
        [run] = await self.daemon.store.list_runs(10)
        return [
            s for s in await self.daemon.store.steps_for_run(run["id"]) if s["phase"] == "approved"
        ]

    async def notification_ids(self) -> list[int]:
        return sorted(r["id"] for r in await self.db.fetch("SELECT id FROM notifications"))

    async def offered(self) -> dict[str, Any]:
        """The chat.postMessage that offered the approval buttons."""
        await self.slack.wait_for(
            lambda reqs: any(
                r.path == "/api/chat.postMessage" and blocks_of(r.json, "actions") for r in reqs
            )
        )
        return next(
            r.json
            for r in self.slack.calls("/api/chat.postMessage")
            if blocks_of(r.json, "actions")
        )

    async def button(self, step: str, action_id: str = "remediator_approve") -> str:
        """The value of a button offered for ``step``'s approval."""
        message = await self.offered()
        approval_id = (await self.approvals())[step]["id"]
        for block in blocks_of(message, "actions"):
            if block["block_id"] == f"approval-{approval_id}":
                return next(e["value"] for e in block["elements"] if e["action_id"] == action_id)
        raise AssertionError(f"no buttons for {step}")

    async def click(self, signed: Any) -> httpx.Response:
        return await self.http.post(
            "/api/v1/slack/interactions", content=signed.body, headers=signed.headers
        )

    async def until(self, check: Any, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not await check():
            assert time.monotonic() < deadline, "condition not met in time"
            await asyncio.sleep(0.05)


async def add_duplicates(db: TargetDatabase) -> list[int]:
    """Lose the unique index and let the notifier write 3 duplicates (same day)."""
    await db.execute(f"DROP INDEX {rb03.UNIQUE_INDEX}")
    rows = await db.fetch(
        "INSERT INTO notifications (user_id, alert_id, payload_json, created_at)"
        " SELECT n.user_id, n.alert_id, n.payload_json, n.created_at"
        " FROM (VALUES ('abc-123', 2), ('def-456', 1)) AS k(alert_id, copies)"
        " CROSS JOIN LATERAL generate_series(1, k.copies)"
        " JOIN notifications n"
        "   ON n.id = (SELECT min(id) FROM notifications WHERE alert_id = k.alert_id)"
        " RETURNING id"
    )
    return sorted(r["id"] for r in rows)


@pytest.fixture
async def dawsos() -> AsyncIterator[tuple[str, TargetDatabase]]:
    try:
        dsn = await testing_dawsos.create_dawsos_database(PG_DSN)
    except (TargetUnavailable, TargetTimeout, OSError) as exc:
        service_missing("PostgreSQL", exc)
        raise
    db = await TargetDatabase.connect(dsn)
    try:
        yield dsn, db
    finally:
        await db.aclose()
        await testing_dawsos.drop_database(PG_DSN, dsn)


def registry() -> Registry:
    r = Registry()
    r.register(rb03.RUNBOOK)
    return r


@contextlib.asynccontextmanager
async def slack_world(
    state: str,
    dawsos: tuple[str, TargetDatabase],
    tmp_path: Path,
    *,
    approvals: Mapping[str, Any] | None = None,
    engine: Mapping[str, Any] | None = None,
) -> AsyncIterator[World]:
    """A daemon whose pagers come from its config (the Slack bot), on a free port."""
    dsn, db = dawsos
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        yaml.safe_dump(
            {
                "rules": [
                    {"name": "storm", "matchers": ['alertname="AlertStorm"'], "runbook": "RB-03"}
                ]
            }
        )
    )
    duplicates = await add_duplicates(db)
    async with SlackCapture() as slack:
        config: dict[str, Any] = {
            "mode": "live",
            "state": state,
            "rules": str(rules),
            "targets": {"database": dsn},
            "pagers": {
                "slack": {"bot_token": BOT_TOKEN, "channel": "#ops", "api_url": slack.api_url}
            },
            "engine": {"poll_interval": 0.2, **(engine or {})},
        }
        config["approvals"] = (
            {"slack": {"signing_secret": SECRET, "approvers": {ALICE: "alice"}}}
            if approvals is None
            else approvals
        )
        settings = from_mapping(config, env={})
        daemon = Daemon(settings, metrics=Metrics(), registry=registry())
        await daemon.start()
        runner = web.AppRunner(create_app(daemon), access_log=None, shutdown_timeout=5)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        url = f"http://127.0.0.1:{port}"
        try:
            async with httpx.AsyncClient(base_url=url, timeout=30) as http:
                yield World(url, daemon, slack, db, duplicates, http)
        finally:
            await runner.cleanup()
            await daemon.stop()
