"""``doctor`` checks the credentials the config gives the app and the providers: it
sends ``targets.http.app_token`` as a Bearer token and each provider's ``headers``
and ``params``, as the runbooks do, and a peer that refuses them fails its check.

The peers are a real HTTP server on loopback that accepts only the right credentials,
as DawsOS's /execute and FMP's API do; ``doctor`` runs as a user runs it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from doctor_support import check, doctor, write_config

APP_TOKEN = "eyJhbGciOiJIUzI1NiJ9.app-token-for-doctor"
FMP_KEY = "fmp-key-0123456789abcdef"
POLYGON_KEY = "polygon-key-0123456789abcdef"
RB01 = (
    "rules:\n  - {name: pack, matchers: ['alertname=\"PricingPackBuildSlow\"'],"
    " runbook: RB-01, params: {build_providers: [fmp, polygon]}}\n"
)


class Locked:
    """The app and two providers, each open only to its own credential."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str | None, str | None]] = []
        self.url = ""

    async def execute(self, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization")
        self.seen.append((request.path, auth, None))
        if auth != f"Bearer {APP_TOKEN}":
            return web.json_response({"detail": "Not authenticated"}, status=401)
        return web.json_response({"ok": True})

    async def fmp(self, request: web.Request) -> web.Response:
        key = request.query.get("apikey")
        self.seen.append((request.path, None, key))
        if key != FMP_KEY:
            return web.json_response({"Error Message": "Invalid API KEY."}, status=401)
        return web.json_response([{"symbol": "AAPL", "price": 231.5}])

    async def polygon(self, request: web.Request) -> web.Response:
        key = request.headers.get("X-Api-Key")
        self.seen.append((request.path, key, None))
        if key != POLYGON_KEY:
            return web.json_response({"status": "ERROR"}, status=403)
        return web.json_response({"status": "ok"})


@pytest.fixture
async def locked() -> AsyncIterator[Locked]:
    peers = Locked()
    app = web.Application()
    app.router.add_post("/app/execute", peers.execute)
    app.router.add_get("/fmp/api/v3/quote/AAPL", peers.fmp)
    app.router.add_get("/polygon/v1/status", peers.polygon)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    peers.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield peers
    await runner.cleanup()


def http_config(url: str) -> dict[str, Any]:
    """Credentials from the environment, as the README's config shows them."""
    return {
        "targets": {
            "http": {
                "app_url": f"{url}/app",
                "app_token": "${DAWSOS_JWT}",
                "providers": {
                    "fmp": {
                        "url": f"{url}/fmp/api/v3/quote/AAPL",
                        "params": {"apikey": "${FMP_KEY}"},
                    },
                    "polygon": {
                        "url": f"{url}/polygon/v1/status",
                        "headers": {"X-Api-Key": "${POLYGON_KEY}"},
                    },
                },
            }
        }
    }


async def test_doctor_sends_the_app_token_and_the_provider_keys(
    tmp_path: Path, locked: Locked
) -> None:
    config = write_config(tmp_path, http_config(locked.url), RB01)
    env = {"DAWSOS_JWT": APP_TOKEN, "FMP_KEY": FMP_KEY, "POLYGON_KEY": POLYGON_KEY}
    outcome = await doctor(config, "--json", env=env)
    assert outcome.code == 0, outcome.stdout + outcome.stderr
    report = outcome.json()
    assert check(report, "targets", "http.app")["ok"] is True
    assert check(report, "targets", "http.providers.fmp")["ok"] is True
    assert check(report, "targets", "http.providers.polygon")["ok"] is True
    assert ("/app/execute", f"Bearer {APP_TOKEN}", None) in locked.seen
    assert ("/fmp/api/v3/quote/AAPL", None, FMP_KEY) in locked.seen
    assert ("/polygon/v1/status", POLYGON_KEY, None) in locked.seen
    for secret in (APP_TOKEN, FMP_KEY, POLYGON_KEY):
        assert secret not in outcome.stdout and secret not in outcome.stderr


async def test_refused_app_token_and_provider_keys_fail_naming_each(
    tmp_path: Path, locked: Locked
) -> None:
    config = write_config(tmp_path, http_config(locked.url), RB01)
    env = {"DAWSOS_JWT": "expired-token", "FMP_KEY": "wrong", "POLYGON_KEY": "wrong"}
    outcome = await doctor(config, env=env)
    assert outcome.code == 1, outcome.stdout
    failing = [" ".join(line.split()) for line in outcome.stdout.splitlines() if "FAIL" in line]
    assert "FAIL http.app POST /execute refused credentials (HTTP 401)" in failing, failing
    assert "FAIL http.providers.fmp refused credentials (HTTP 401)" in failing, failing
    assert "FAIL http.providers.polygon refused credentials (HTTP 403)" in failing, failing
    # The runbook step that needs the app says why it cannot run.
    gate = [" ".join(x.split()) for x in outcome.stdout.splitlines() if "freshness_gate" in x]
    assert gate == ["NO freshness_gate the app's freshness gate did not pass its check"], gate
    assert "expired-token" not in outcome.stdout
