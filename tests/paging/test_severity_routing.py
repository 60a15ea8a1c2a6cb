"""Severity routing (``pagers.routes``): every severity reaches a configured pager, or
the config is refused naming the severity; Slack-only and PagerDuty-only configs page
every severity, with a warning at start.

The daemon runs for real (state, engine, outbox, the real Slack and PagerDuty pagers)
and the pagers' peers are a local capture server, so the test sees what a human gets.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog
from aiohttp import web

from remediator import cli, testing
from remediator import settings as settings_mod
from remediator.daemon import Daemon, build_pagers, severity_routes
from remediator.errors import ConfigError
from remediator.paging import routing
from remediator.paging.base import PageContent
from remediator.runbook_api.context import Clients
from remediator.runbook_api.registry import load_entry_points
from remediator.server.app import create_app

RB05_RULE = """
rules:
  - name: database-down
    matchers: ['alertname="DatabaseDown"']
    runbook: RB-05
"""


class Peer:
    """Slack's incoming webhook and PagerDuty's Events API on loopback, recording."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, Any]] = []
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def __aenter__(self) -> Peer:
        app = web.Application()
        app.router.add_post("/slack/{tail:.*}", self._slack)
        app.router.add_post("/pagerduty/v2/enqueue", self._pagerduty)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    async def _slack(self, request: web.Request) -> web.Response:
        self.requests.append(("slack", json.loads(await request.read())))
        return web.Response(text="ok")

    async def _pagerduty(self, request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        self.requests.append(("pagerduty", body))
        return web.json_response(
            {"status": "success", "dedup_key": body.get("dedup_key")}, status=202
        )

    async def wait_for(self, pager: str, timeout: float = 20.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, body in self.requests:
                if name == pager:
                    return body
            await asyncio.sleep(0.05)
        raise AssertionError(f"nothing reached {pager}; got {self.requests}")


def _settings(tmp_path: Path, pagers: dict[str, Any]) -> settings_mod.Settings:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RB05_RULE)
    return settings_mod.from_mapping(
        {"rules": str(rules), "state": f"sqlite:///{tmp_path}/state.db", "pagers": pagers},
        env={},
    )


async def test_slack_only_config_sends_a_p0_run_to_slack(tmp_path: Path) -> None:
    async with Peer() as peer:
        settings = _settings(tmp_path, {"slack": {"webhook_url": f"{peer.url}/slack/T0/B0/x"}})
        daemon = Daemon(settings, registry=load_entry_points(), clients=Clients(settings=settings))
        await daemon.start()
        runner = web.AppRunner(create_app(daemon), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            payload = testing.make_payload(testing.make_alert("DatabaseDown"))
            async with httpx.AsyncClient() as c:
                r = await c.post(f"http://127.0.0.1:{port}/api/v1/alerts", json=payload)
            assert r.status_code == 202
            body = await peer.wait_for("slack")
        finally:
            await runner.cleanup()
            await daemon.stop()
    assert "RB-05" in json.dumps(body)
    assert "DatabaseDown" in json.dumps(body)


async def test_pagerduty_only_config_sends_a_p3_page_to_pagerduty(tmp_path: Path) -> None:
    async with Peer() as peer:
        pd = {"routing_key": "r" * 32, "url": f"{peer.url}/pagerduty/v2/enqueue"}
        settings = _settings(tmp_path, {"pagerduty": pd})
        daemon = Daemon(settings, registry=load_entry_points(), clients=Clients(settings=settings))
        await daemon.start()
        try:
            content = PageContent(
                dedup_key="remediator/routing-p3",
                severity="P3",
                title="a P3 page",
                alertname="Routing",
                runbook="-",
                rule="-",
                mode="live",
            )
            assert await daemon.outbox.enqueue("routing-p3", "trigger", content) == 1
            body = await peer.wait_for("pagerduty")
        finally:
            await daemon.stop()
    assert body["dedup_key"] == "remediator/routing-p3"
    assert body["event_action"] == "trigger"


def test_default_routing_widens_uncovered_severities_and_warns() -> None:
    with structlog.testing.capture_logs() as logs:
        routes = severity_routes(["pagerduty"])
    assert routes == {"pagerduty": ("P0", "P1", "P2", "P3")}
    warned = sorted(e["severity"] for e in logs if e["event"] == "severity_sent_to_every_pager")
    assert warned == ["P2", "P3"]


def test_default_routing_keeps_each_pager_to_its_defaults_when_all_are_covered() -> None:
    r = routing.route(["slack", "pagerduty", "opsgenie"])
    assert r.as_dict() == {
        "P0": ["pagerduty", "opsgenie"],
        "P1": ["pagerduty", "opsgenie"],
        "P2": ["slack"],
        "P3": ["slack"],
    }
    assert r.widened == ()


def test_daemon_start_warns_for_a_slack_only_config(tmp_path: Path) -> None:
    settings = _settings(tmp_path, {"slack": {"webhook_url": "http://127.0.0.1:9/slack/x"}})
    with structlog.testing.capture_logs() as logs:
        pagers = build_pagers(settings)
    assert pagers["slack"].accepts("P0") and pagers["slack"].accepts("P1")
    warned = [e for e in logs if e["event"] == "severity_sent_to_every_pager"]
    assert [e["severity"] for e in warned] == ["P0", "P1"]


def test_no_pager_at_all_starts_and_warns(tmp_path: Path) -> None:
    settings = _settings(tmp_path, {})
    with structlog.testing.capture_logs() as logs:
        assert build_pagers(settings) == {}
    assert any(e["event"] == "no_pager_configured" for e in logs)


def test_explicit_routes_are_used_as_given(tmp_path: Path) -> None:
    settings = _settings(
        tmp_path,
        {
            "slack": {"webhook_url": "http://127.0.0.1:9/slack/x"},
            "opsgenie": {"api_key": "k" * 20, "url": "http://127.0.0.1:9"},
            "routes": {
                "P0": ["opsgenie", "slack"],
                "P1": ["opsgenie"],
                "P2": ["slack"],
                "P3": ["slack"],
            },
        },
    )
    pagers = build_pagers(settings)
    assert [s for s in ("P0", "P1", "P2", "P3") if pagers["slack"].accepts(s)] == ["P0", "P2", "P3"]
    assert [s for s in ("P0", "P1", "P2", "P3") if pagers["opsgenie"].accepts(s)] == ["P0", "P1"]


@pytest.mark.parametrize(
    ("routes", "named"),
    [
        ({"P0": ["slack"], "P1": ["slack"], "P2": ["slack"]}, "P3 reaches no configured pager"),
        (
            {"P0": ["pagerduty"], "P1": ["slack"], "P2": ["slack"], "P3": ["slack"]},
            "pagers.routes.P0",
        ),
        ({"P0": ["slack"], "P1": ["slack"], "P2": ["slack"], "P3": ["pager"]}, "pagers.routes.P3"),
        ({"P5": ["slack"]}, "pagers.routes.P5"),
    ],
)
def test_explicit_routes_leaving_a_severity_uncovered_are_refused(
    tmp_path: Path, routes: dict[str, list[str]], named: str
) -> None:
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        _settings(tmp_path, {"slack": {"webhook_url": "http://127.0.0.1:9/x"}, "routes": routes})


def test_serve_refuses_uncovered_routes_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "remediator.yaml"
    config.write_text(
        "pagers:\n"
        "  slack: {webhook_url: 'http://127.0.0.1:9/x'}\n"
        "  routes: {P0: [slack], P1: [slack], P2: [slack]}\n"
    )
    assert cli.main(["serve", "--config", str(config)]) == 2
    assert "P3 reaches no configured pager" in capsys.readouterr().err


async def test_doctor_reports_the_routing_in_effect(tmp_path: Path) -> None:
    from remediator.doctor import run

    settings = _settings(
        tmp_path,
        {
            "slack": {"webhook_url": "http://127.0.0.1:9/slack/x"},
            "opsgenie": {"api_key": "k" * 20, "url": "http://127.0.0.1:9"},
            "routes": {
                "P0": ["opsgenie", "slack"],
                "P1": ["opsgenie"],
                "P2": ["slack"],
                "P3": ["slack"],
            },
        },
    )
    report = await run(settings, load_entry_points(), seconds=2)
    assert report.to_json()["routing"] == {
        "P0": ["opsgenie", "slack"],
        "P1": ["opsgenie"],
        "P2": ["slack"],
        "P3": ["slack"],
    }
