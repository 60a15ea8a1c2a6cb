"""Operator routes are never open off loopback (DESIGN "HTTP", issue 16 item 3).

With no operator tokens they answer only when the daemon's bind address is loopback;
bound to any other address they answer 403 and change nothing, whatever the webhook
auth and whatever the client's own address (these tests connect from 127.0.0.1).
With tokens configured, only an operator token opens them, on any bind address.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from tests.conftest import free_port
from tests.engine import _testbook
from tests.helpers import Running, running_daemon

WEBHOOK = "webhook-token-for-operator-tests-1"
OPERATOR = "operator-token-for-operator-tests-2"


def config(tmp_path: Path, listen: str, **extra: Any) -> dict[str, Any]:
    rules = tmp_path / "rules"
    rules.mkdir(exist_ok=True)
    (rules / "r.yaml").write_text(_testbook.rules())
    return {
        "listen": listen,
        "state": f"sqlite:///{tmp_path}/state.db",
        "rules": str(rules),
        **extra,
    }


async def pending_approval(d: Running) -> int:
    """A dry-run run of the test runbook waiting for approval of its scale_down."""
    now = time.time()
    run = {
        "id": "run-1", "rule": "test-rule", "runbook": "RB-T", "fingerprint": "f1",
        "starts_at": "2026-11-28T00:20:04Z", "alertname": "A", "target": "RB-T:x",
        "mode": "dry-run", "state": "awaiting_approval", "alert": {"labels": {}},
        "params": {}, "severity": "P1", "received_at": now, "created_at": now,
        "updated_at": now, "owner": None, "lease_until": None,
    }  # fmt: skip
    assert await d.daemon.store.create_run(run)
    return await d.daemon.store.create_approval("run-1", "scale_down", now + 3600)


async def approval_state(d: Running, approval_id: int) -> str:
    row = await d.daemon.store.get_approval(approval_id)
    assert row is not None
    return str(row["state"])


@pytest.mark.parametrize("host", ["0.0.0.0", "::"])
@pytest.mark.parametrize(
    "webhook_auth",
    [{"auth": {"webhook_tokens": [WEBHOOK]}}, {"allow_unauthenticated": True}],
    ids=["webhook-tokens", "unauthenticated-webhook"],
)
async def test_non_loopback_bind_without_operator_tokens_refuses_every_operator_route(
    tmp_path: Path, host: str, webhook_auth: Mapping[str, Any]
):
    listen = f"[{host}]:{free_port()}" if ":" in host else f"{host}:{free_port()}"
    cfg = config(tmp_path, listen, **webhook_auth)
    with capture_logs() as logged:
        async with (
            running_daemon(
                cfg, registry=_testbook.registry(), workers=False, bind_listen=True
            ) as d,
            httpx.AsyncClient(base_url=d.url) as c,
        ):
            approval = await pending_approval(d)
            rules_before = len(d.daemon.ruleset or ())
            reloads = d.sample("remediator_rule_reloads_total", {"outcome": "success"})
            (Path(cfg["rules"]) / "r2.yaml").write_text(
                _testbook.rules().replace("test-rule", "second")
            )
            for headers in ({}, {"Authorization": f"Bearer {WEBHOOK}"}):
                for method, path in [
                    ("GET", "/api/v1/actions"),
                    ("POST", f"/api/v1/actions/{approval}/approve"),
                    ("POST", f"/api/v1/actions/{approval}/reject"),
                    ("POST", "/api/v1/pause"),
                    ("POST", "/-/reload"),
                ]:
                    r = await c.request(method, path, headers=headers)
                    assert r.status_code == 403, (method, path, r.text)
                    assert r.headers["Content-Type"].startswith("application/json")
                    assert r.json()["error"] == "forbidden"
                    assert listen in r.json()["detail"]
                    assert "auth.operator_tokens" in r.json()["detail"]
                assert not await d.daemon.engine.is_paused()
                await d.daemon.set_paused(True, "test-setup")
                r = await c.post("/api/v1/resume", headers=headers)
                assert r.status_code == 403 and r.json()["error"] == "forbidden"
                assert await d.daemon.engine.is_paused()
                await d.daemon.set_paused(False, "test-setup")
            assert await approval_state(d, approval) == "pending"
            assert len(d.daemon.ruleset or ()) == rules_before
            assert d.sample("remediator_rule_reloads_total", {"outcome": "success"}) == reloads
            # A 403 is not a credential failure: nothing was presented that could pass.
            assert d.sample("remediator_auth_failures_total", {"realm": "operator"}) == 0
            # Probes and metrics stay open.
            assert (await c.get("/healthz")).status_code == 200
    closed = [e for e in logged if e["event"] == "operator_routes_closed"]
    assert len(closed) == 1 and closed[0]["log_level"] == "warning"
    assert closed[0]["listen"] == listen


async def test_loopback_bind_without_operator_tokens_is_open_to_the_local_operator(
    tmp_path: Path,
):
    cfg = config(tmp_path, f"127.0.0.1:{free_port()}")
    with capture_logs() as logged:
        async with (
            running_daemon(
                cfg, registry=_testbook.registry(), workers=False, bind_listen=True
            ) as d,
            httpx.AsyncClient(base_url=d.url) as c,
        ):
            approval = await pending_approval(d)
            r = await c.post("/api/v1/pause")
            assert r.status_code == 200 and r.json() == {"paused": True, "by": "local-operator"}
            assert await d.daemon.engine.is_paused()
            r = await c.post("/api/v1/resume")
            assert r.status_code == 200 and not await d.daemon.engine.is_paused()
            assert (await c.get("/api/v1/actions")).status_code == 200
            r = await c.post(f"/api/v1/actions/{approval}/reject")
            assert r.status_code == 200 and r.json()["by"] == "local-operator"
            assert await approval_state(d, approval) == "rejected"
            assert (await c.post("/-/reload")).status_code == 200
    assert not [e for e in logged if e["event"] == "operator_routes_closed"]


async def test_configured_operator_tokens_are_required_on_any_bind_address(tmp_path: Path):
    cfg = config(
        tmp_path,
        f"0.0.0.0:{free_port()}",
        auth={"webhook_tokens": [WEBHOOK], "operator_tokens": {"alice": OPERATOR}},
    )
    basic = base64.b64encode(f"anyone:{OPERATOR}".encode()).decode()
    refused = [
        {},
        {"Authorization": "Bearer wrong-token-wrong-token"},
        {"Authorization": f"Bearer {WEBHOOK}"},  # a webhook token is no operator token
        {"Authorization": f"Bearer {OPERATOR[:-1]}"},
        {"Authorization": f"Basic {base64.b64encode(b'anyone:nope').decode()}"},
    ]
    async with (
        running_daemon(cfg, registry=_testbook.registry(), workers=False, bind_listen=True) as d,
        httpx.AsyncClient(base_url=d.url) as c,
    ):
        approval = await pending_approval(d)
        routes = [
            ("GET", "/api/v1/actions", 200),
            ("POST", "/api/v1/pause", 200),
            ("POST", "/api/v1/resume", 200),
            ("POST", "/-/reload", 200),
            ("POST", "/api/v1/actions/999/approve", 404),  # authenticated: then not found
            ("POST", f"/api/v1/actions/{approval}/approve", 200),
        ]
        for method, path, ok in routes:
            for headers in refused:
                r = await c.request(method, path, headers=headers)
                assert r.status_code == 401, (method, path, headers)
                assert r.json()["error"] == "unauthorized"
                assert r.headers["WWW-Authenticate"].startswith("Bearer")
            if path == "/api/v1/resume":
                assert await d.daemon.engine.is_paused()  # no refused resume got through
            if path.endswith(f"{approval}/approve"):
                assert await approval_state(d, approval) == "pending"
            r = await c.request(method, path, headers={"Authorization": f"Bearer {OPERATOR}"})
            assert r.status_code == ok, (method, path, r.text)
        assert await approval_state(d, approval) == "approved"
        r = await c.post("/api/v1/pause", headers={"Authorization": f"Basic {basic}"})
        assert r.status_code == 200 and r.json() == {"paused": True, "by": "alice"}
        failures = len(routes) * len(refused)
        assert d.sample("remediator_auth_failures_total", {"realm": "operator"}) == failures
