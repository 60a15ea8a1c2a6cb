"""Credentials on the app and provider checks, from the config to the wire: the daemon's
own client factory builds HttpChecks from `targets.http`, respx answers and records."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import respx

from remediator.clients.http import HttpChecks, ProviderEndpoint
from remediator.daemon import secret_values
from remediator.daemon.clients import open_clients
from remediator.errors import ConfigError
from remediator.settings import Settings, from_mapping

APP = "http://dawsos.localhost"
JWT = "eyJhbGciOiJIUzI1NiJ9.app-token-for-tests.sig"
FMP_KEY = "fmp-key-0123456789"
FRED_KEY = "fred-key-9876543210"
POLYGON_TOKEN = "polygon-token-abcdef"
ENV = {"DAWSOS_JWT": JWT, "FMP_KEY": FMP_KEY, "FRED_KEY": FRED_KEY, "PG": POLYGON_TOKEN}
SECRETS = (JWT, FMP_KEY, FRED_KEY, POLYGON_TOKEN)


def settings(**http: Any) -> Settings:
    base: dict[str, Any] = {
        "app_url": APP,
        "app_token": "${DAWSOS_JWT}",
        "providers": {
            "polygon": {
                "url": "http://polygon.localhost/v1/status",
                "headers": {"Authorization": "Bearer ${PG}"},
            },
            "fmp": {
                "url": "http://fmp.localhost/api/v3/quote/AAPL",
                "params": {"apikey": "${FMP_KEY}"},
            },
            "fred": {
                "url": "http://fred.localhost/fred/series/observations?series_id=DGS10",
                "params": {"api_key": "${FRED_KEY}", "file_type": "json"},
            },
            "news": "http://news.localhost/status",
        },
    }
    base.update(http)
    return from_mapping({"targets": {"http": base}}, env=ENV)


@pytest.fixture
def mock() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False, assert_all_mocked=True) as router:
        yield router


async def checks_for(cfg: Settings) -> tuple[HttpChecks, list[Any]]:
    clients, closers = await open_clients(cfg)
    assert isinstance(clients.http, HttpChecks)
    return clients.http, closers


@pytest.fixture
async def checks() -> AsyncIterator[HttpChecks]:
    http, closers = await checks_for(settings())
    yield http
    for close in closers:
        await close()


async def test_freshness_gate_sends_the_app_token_as_bearer(
    mock: respx.MockRouter, checks: HttpChecks
) -> None:
    gate = mock.post(f"{APP}/execute").respond(200, json={"ok": True})
    result = await checks.freshness_gate()
    assert result.ok
    [call] = gate.calls
    assert call.request.headers["Authorization"] == f"Bearer {JWT}"


async def test_providers_send_their_configured_headers_and_params(
    mock: respx.MockRouter, checks: HttpChecks
) -> None:
    routes = {
        "polygon": mock.get("http://polygon.localhost/v1/status"),
        "fmp": mock.get("http://fmp.localhost/api/v3/quote/AAPL"),
        "fred": mock.get("http://fred.localhost/fred/series/observations"),
        "news": mock.get("http://news.localhost/status"),
    }
    for route in routes.values():
        route.respond(200, json={"status": "ok"})
    for name in routes:
        assert (await checks.provider_status(name)).healthy, name
    polygon, fmp, fred, news = (r.calls.last.request for r in routes.values())
    assert polygon.headers["Authorization"] == f"Bearer {POLYGON_TOKEN}"
    assert dict(fmp.url.params) == {"apikey": FMP_KEY}
    # Params are added to the URL's own query, not instead of it.
    assert dict(fred.url.params) == {
        "series_id": "DGS10",
        "api_key": FRED_KEY,
        "file_type": "json",
    }
    assert "Authorization" not in news.headers and not news.url.params
    # The app token goes to the app only.
    assert all("Authorization" not in r.headers for r in (fmp, fred, news))


async def test_a_refused_key_is_told_apart_from_an_outage_and_never_shown(
    mock: respx.MockRouter, checks: HttpChecks, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    mock.get("http://fmp.localhost/api/v3/quote/AAPL").respond(
        401, json={"error": f"Invalid API KEY {FMP_KEY}"}
    )
    mock.post(f"{APP}/execute").respond(403, json={"detail": f"bad token {JWT}"})
    health = await checks.probe("fmp")
    gate = await checks.freshness_gate()
    assert (health.healthy, health.reachable, health.auth_failed) == (False, True, True)
    assert health.detail == "HTTP 401: credentials refused (check its headers/params)"
    assert gate.auth_failed and not gate.ok
    shown = " ".join([repr(health), health.detail, caplog.text, repr(checks._providers)])
    assert "HTTP Request: GET http://fmp.localhost/api/v3/quote/AAPL " in caplog.text
    assert FMP_KEY not in shown and JWT not in shown


def test_the_daemon_redacts_the_app_token_and_provider_keys_from_its_logs() -> None:
    registered = secret_values(settings())
    assert all(any(s in value for value in registered) for s in SECRETS)


async def test_probe_reports_an_unreachable_provider_as_a_result(
    mock: respx.MockRouter, checks: HttpChecks
) -> None:
    import httpx

    mock.get("http://fmp.localhost/api/v3/quote/AAPL").mock(
        side_effect=httpx.ConnectError("refused")
    )
    health = await checks.probe("fmp")
    assert (health.healthy, health.reachable, health.status_code) == (False, False, None)
    assert FMP_KEY not in health.detail and "fmp.localhost" not in health.detail


async def test_an_unset_token_sends_no_authorization(mock: respx.MockRouter) -> None:
    cfg = from_mapping({"targets": {"http": {"app_url": APP, "app_token": "${NOPE:-}"}}}, env={})
    assert cfg.targets.http.app_token is None
    http, closers = await checks_for(cfg)
    gate = mock.post(f"{APP}/execute").respond(200, json={})
    await http.freshness_gate()
    assert "Authorization" not in gate.calls.last.request.headers
    for close in closers:
        await close()


def test_secrets_never_appear_in_the_settings_repr() -> None:
    cfg = settings()
    text = repr(cfg) + str(cfg.targets.http) + repr(ProviderEndpoint("http://x", {"a": JWT}))
    assert not [s for s in SECRETS if s in text]


@pytest.mark.parametrize(
    ("providers", "named"),
    [
        ({"fmp": {"url": "http://fmp.localhost", "apikey": "x"}}, "providers.fmp.apikey"),
        ({"fmp": {"url": "ftp://fmp.localhost"}}, "providers.fmp.url"),
        ({"fmp": {"params": {"apikey": "x"}}}, "providers.fmp.url"),
    ],
)
def test_bad_provider_entries_are_refused_naming_the_key(
    providers: dict[str, Any], named: str
) -> None:
    with pytest.raises(ConfigError) as err:
        from_mapping({"targets": {"http": {"providers": providers}}}, env={})
    assert named in str(err.value)
