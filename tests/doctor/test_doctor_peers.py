"""``doctor``'s Redis, Prometheus, HTTP and pager checks, the ``--json`` shape key by
key, ``--test-page``, and the summary ``serve`` logs at start."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from aiohttp import web
from doctor_support import ROOT, check, doctor, step, write_config

from remediator.doctor import catalog
from remediator.runbook_api.registry import load_entry_points
from tests.conftest import REDIS_URL

RB02 = (
    "rules:\n  - {name: provider, matchers: ['alertname=\"ProviderErrorRateHigh\"'],"
    " runbook: RB-02, params: {providers: [polygon]}}\n"
)


class Peers:
    """Prometheus, a provider status page, the app, PagerDuty and Slack on loopback."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, Any]] = []
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def __aenter__(self) -> Peers:
        app = web.Application()
        app.router.add_get("/api/v1/status/buildinfo", self._buildinfo)
        app.router.add_get("/status/polygon", self._ok)
        app.router.add_get("/status/locked", self._locked)
        app.router.add_post("/app/execute", self._ok)
        app.router.add_route("*", "/pagerduty/v2/enqueue", self._pagerduty)
        app.router.add_route("*", "/slack/{tail:.*}", self._slack)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    async def _record(self, request: web.Request) -> Any:
        raw = await request.read()
        body = json.loads(raw) if raw else None
        self.requests.append((request.method, request.path, body))
        return body

    async def _buildinfo(self, request: web.Request) -> web.Response:
        await self._record(request)
        return web.json_response({"status": "success", "data": {"version": "2.42.0"}})

    async def _ok(self, request: web.Request) -> web.Response:
        await self._record(request)
        return web.json_response({"status": "ok"})

    async def _locked(self, request: web.Request) -> web.Response:
        await self._record(request)
        return web.json_response({"error": "invalid api key"}, status=401)

    async def _pagerduty(self, request: web.Request) -> web.Response:
        body = await self._record(request)
        if request.method != "POST":
            return web.Response(status=405)
        return web.json_response({"status": "success", "dedup_key": body["dedup_key"]}, status=202)

    async def _slack(self, request: web.Request) -> web.Response:
        body = await self._record(request)
        if not body or "text" not in body:  # what Slack answers to a message without text
            return web.Response(text="no_text", status=400)
        return web.Response(text="ok")

    def posts(self, prefix: str) -> list[Any]:
        return [b for m, p, b in self.requests if m == "POST" and p.startswith(prefix)]


def _world(peers: Peers, **pagers: Any) -> dict[str, Any]:
    return {
        "targets": {
            "redis": REDIS_URL,
            "prometheus": {"url": peers.url},
            "http": {
                "app_url": f"{peers.url}/app",
                "providers": {"polygon": f"{peers.url}/status/polygon"},
            },
        },
        "pagers": pagers,
    }


async def test_json_shape_key_by_key_and_no_page_without_asking(tmp_path: Path) -> None:
    async with Peers() as peers:
        pd = {"routing_key": "r" * 32, "url": f"{peers.url}/pagerduty/v2/enqueue"}
        slack = {"webhook_url": f"{peers.url}/slack/T0/B0/secret"}
        config = write_config(tmp_path, _world(peers, pagerduty=pd, slack=slack), RB02)
        outcome = await doctor(config, "--json")
        # No page: nothing to PagerDuty, and Slack got only an empty message it refused.
        assert peers.posts("/pagerduty") == [] and peers.posts("/slack") == [{}]
    assert outcome.code == 0, outcome.stdout
    report = outcome.json()
    assert set(report) == {"ok", "targets", "pagers", "routing", "runbooks"}
    assert report["ok"] is True
    for section in ("targets", "pagers"):
        for item in report[section]:
            assert set(item) == {"name", "ok", "detail"}
            assert isinstance(item["name"], str) and isinstance(item["ok"], bool)
            assert isinstance(item["detail"], str)
    assert [p["name"] for p in report["pagers"]] == ["pagerduty", "opsgenie", "slack"]
    assert report["routing"] == {
        "P0": ["pagerduty"],
        "P1": ["pagerduty"],
        "P2": ["slack"],
        "P3": ["slack"],
    }
    assert [rb["runbook"] for rb in report["runbooks"]] == ["RB-02"]
    for rb in report["runbooks"]:
        assert set(rb) == {"runbook", "steps"}
        for s in rb["steps"]:
            assert set(s) == {"step", "runnable", "reason", "missing", "optional_missing"}
            assert isinstance(s["runnable"], bool) and isinstance(s["reason"], str)
            assert isinstance(s["missing"], list) and isinstance(s["optional_missing"], list)
    assert [s["step"] for s in report["runbooks"][0]["steps"]] == [
        "provider_status",
        "pause_alerts",
        "check_cache",
        "replay_dlq",
    ]
    assert step(report, "RB-02", "check_cache")["runnable"] is True
    assert "2.42.0" in check(report, "targets", "prometheus")["detail"]
    assert check(report, "targets", "http.providers.polygon")["ok"] is True
    assert check(report, "targets", "http.app")["ok"] is True
    assert "HTTP 400" in check(report, "pagers", "slack")["detail"]
    assert "secret" not in outcome.stdout  # the Slack URL is a credential


async def test_unreachable_redis_and_prometheus_fail_naming_them(
    tmp_path: Path, unused_port: int
) -> None:
    dead = f"127.0.0.1:{unused_port}"
    config = write_config(
        tmp_path,
        {"targets": {"redis": f"redis://{dead}/0", "prometheus": {"url": f"http://{dead}"}}},
        RB02,
    )
    outcome = await doctor(config)
    assert outcome.code == 1
    failing = [ln for ln in outcome.stdout.splitlines() if "FAIL" in ln]
    assert any(" redis " in ln and "unreachable" in ln for ln in failing), outcome.stdout
    assert any(" prometheus " in ln for ln in failing), outcome.stdout
    report = (await doctor(config, "--json")).json()
    cache = step(report, "RB-02", "check_cache")
    assert cache["runnable"] is False and cache["missing"] == ["redis"]


async def test_refused_provider_credentials_fail_the_provider_check(tmp_path: Path) -> None:
    async with Peers() as peers:
        world = _world(peers)
        world["targets"]["http"]["providers"]["fmp"] = f"{peers.url}/status/locked"
        config = write_config(tmp_path, world, RB02)
        outcome = await doctor(config, "--json")
    assert outcome.code == 1
    fmp = check(outcome.json(), "targets", "http.providers.fmp")
    assert fmp["ok"] is False and "refused credentials" in fmp["detail"]


async def test_test_page_sends_one_p3_to_the_pager_that_takes_it(tmp_path: Path) -> None:
    async with Peers() as peers:
        pd = {"routing_key": "r" * 32, "url": f"{peers.url}/pagerduty/v2/enqueue"}
        config = write_config(tmp_path, {"pagers": {"pagerduty": pd}}, RB02)
        outcome = await doctor(config, "--json", "--test-page")
        sent = peers.posts("/pagerduty")
    assert outcome.code == 0, outcome.stdout
    assert len(sent) == 1
    assert sent[0]["event_action"] == "trigger"
    assert sent[0]["payload"]["severity"] == "info"  # P3
    pd_check = check(outcome.json(), "pagers", "pagerduty")
    assert "test page (P3) delivered" in pd_check["detail"]
    assert outcome.json()["routing"]["P3"] == ["pagerduty"]


async def test_an_unreachable_pager_fails(tmp_path: Path, unused_port: int) -> None:
    slack = {"webhook_url": f"http://127.0.0.1:{unused_port}/slack/T0/B0/x"}
    config = write_config(tmp_path, {"pagers": {"slack": slack}}, RB02)
    outcome = await doctor(config, "--json")
    assert outcome.code == 1
    assert check(outcome.json(), "pagers", "slack")["ok"] is False


def test_every_built_in_step_is_in_the_catalog() -> None:
    for runbook in load_entry_points():
        for s in (*runbook.steps, *runbook.resolve_steps):
            assert catalog.needs_of(runbook.id, s.name) is not None, (runbook.id, s.name)


async def test_serve_logs_the_doctor_summary_at_start(tmp_path: Path, unused_port: int) -> None:
    from tests.conftest import free_port

    port = free_port()
    config = write_config(
        tmp_path,
        {"listen": f"127.0.0.1:{port}", "targets": {"redis": f"redis://127.0.0.1:{unused_port}/0"}},
        RB02,
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "remediator",
        "serve",
        "--config",
        str(config),
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    events: dict[str, dict[str, Any]] = {}
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        while "doctor_summary" not in events and time.monotonic() < deadline:
            line = await asyncio.wait_for(proc.stdout.readline(), 60)
            if not line:
                break
            if line.startswith(b"{"):
                entry = json.loads(line)
                events.setdefault(entry["event"], entry)
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 20)
    assert "serving" in events, events
    failed = events["doctor_check_failed"]
    assert failed["check"] == "redis" and failed["level"] == "warning"
    summary = events["doctor_summary"]
    assert summary["ok"] is False and summary["failing"] == ["redis"]
    assert "RB-02/check_cache" in summary["not_runnable"]


async def test_rb01_provider_health_needs_one_of_its_build_providers(tmp_path: Path) -> None:
    from remediator import settings as settings_mod
    from remediator.doctor import run

    async with Peers() as peers:
        rules = tmp_path / "rules.yaml"
        rules.write_text(
            "rules:\n  - {name: pack, matchers: ['alertname=\"PricingPackBuildSlow\"'],"
            " runbook: RB-01, params: {build_providers: [polygon]}}\n"
        )
        reports = []
        for name in ("polygon", "news"):
            settings = settings_mod.from_mapping(
                {
                    "rules": str(rules),
                    "targets": {"http": {"providers": {name: f"{peers.url}/status/polygon"}}},
                },
                env={},
            )
            reports.append(await run(settings, load_entry_points(), seconds=5))
    health = [next(s for s in r.runbooks[0].steps if s.step == "provider_health") for r in reports]
    assert health[0].runnable
    assert not health[1].runnable
    assert health[1].missing == ("targets.http.providers",)
    assert "polygon" in health[1].reason


async def test_a_slack_bot_token_is_checked_with_auth_test(tmp_path: Path) -> None:
    seen: list[tuple[str, str]] = []

    async def auth_test(request: web.Request) -> web.Response:
        token = request.headers.get("Authorization", "")
        seen.append((request.path, token))
        if token == "Bearer xoxb-good-token-for-doctor":
            return web.json_response({"ok": True, "user": "remediator"})
        return web.json_response({"ok": False, "error": "invalid_auth"})

    app = web.Application()
    app.router.add_post("/api/auth.test", auth_test)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    api = f"http://127.0.0.1:{runner.addresses[0][1]}/api"
    try:
        results = []
        for token in ("xoxb-good-token-for-doctor", "xoxb-revoked-token-doctor"):
            slack = {"bot_token": token, "channel": "C0123ABCD", "api_url": api}
            config = write_config(tmp_path, {"pagers": {"slack": slack}}, RB02)
            results.append(await doctor(config, "--json"))
    finally:
        await runner.cleanup()
    good, revoked = results
    assert good.code == 0, good.stdout
    assert "auth.test" in check(good.json(), "pagers", "slack")["detail"]
    assert revoked.code == 1
    assert "invalid_auth" in check(revoked.json(), "pagers", "slack")["detail"]
    assert [path for path, _ in seen] == ["/api/auth.test", "/api/auth.test"]
    assert "xoxb" not in good.stdout + revoked.stdout
