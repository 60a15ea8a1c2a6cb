"""HttpChecks against respx-mocked provider status pages and the DawsOS app."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import respx

from remediator.clients.http import DEFAULT_GATE_BODY, HttpChecks
from remediator.errors import ConfigError, InputRejected, TargetTimeout, TargetUnavailable

# Loopback-style names: nothing here may leave the machine even if a mock were missing.
POLYGON = "http://polygon.localhost/v1/status"
FMP_SECRET = "fmp-secret-key-123"
FMP = f"http://fmp.localhost/api/v3/quote/AAPL?apikey={FMP_SECRET}"
FRED = "http://fred.localhost/fred/series/observations?series_id=DGS10"
APP = "http://dawsos.localhost"
PROVIDERS = {"polygon": POLYGON, "fmp": FMP, "fred": FRED}


@pytest.fixture
def mock() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False, assert_all_mocked=True) as router:
        yield router


@pytest.fixture
async def checks() -> AsyncIterator[HttpChecks]:
    http = HttpChecks(PROVIDERS, APP, timeout=1.0, app_headers={"Authorization": "Bearer t"})
    yield http
    await http.aclose()


async def test_status_ok_is_healthy(mock: respx.MockRouter, checks: HttpChecks) -> None:
    mock.get(POLYGON).respond(200, json={"status": "ok"})
    health = await checks.provider_status("polygon")
    assert (health.name, health.healthy, health.status_code) == ("polygon", True, 200)


async def test_json_list_answer_is_healthy(mock: respx.MockRouter, checks: HttpChecks) -> None:
    mock.get(FMP).respond(200, json=[{"symbol": "AAPL", "price": 229.87}])
    health = await checks.provider_status("fmp")
    assert health.healthy and health.status_code == 200


async def test_status_down_in_a_200_is_unhealthy(
    mock: respx.MockRouter, checks: HttpChecks
) -> None:
    mock.get(POLYGON).respond(200, json={"status": "down"})
    health = await checks.provider_status("polygon")
    assert not health.healthy
    assert health.status_code == 200
    assert "down" in health.detail


async def test_503_is_unhealthy_not_an_error(mock: respx.MockRouter, checks: HttpChecks) -> None:
    mock.get(FRED).respond(503, text="maintenance")
    health = await checks.provider_status("fred")
    assert (health.healthy, health.status_code) == (False, 503)
    assert "maintenance" in health.detail


async def test_timeout_is_target_timeout(mock: respx.MockRouter, checks: HttpChecks) -> None:
    mock.get(POLYGON).mock(side_effect=httpx.ReadTimeout("slow"))
    with pytest.raises(TargetTimeout) as caught:
        await checks.provider_status("polygon")
    assert caught.value.temporary


async def test_connection_refused_is_target_unavailable(
    mock: respx.MockRouter, checks: HttpChecks
) -> None:
    mock.get(POLYGON).mock(side_effect=httpx.ConnectError("refused"))
    with pytest.raises(TargetUnavailable):
        await checks.provider_status("polygon")


async def test_unknown_provider_is_rejected_without_a_request(
    mock: respx.MockRouter, checks: HttpChecks
) -> None:
    route = mock.route()  # would catch any request at all
    for name in ["polygon' OR '1'='1", "http://evil.localhost", "Polygon", "newsapi"]:
        with pytest.raises(InputRejected) as caught:
            await checks.provider_status(name)
        assert caught.value.field == "provider"
    assert route.call_count == 0


async def test_api_key_in_the_url_never_reaches_results_or_errors(
    mock: respx.MockRouter, checks: HttpChecks
) -> None:
    route = mock.get(FMP)
    route.respond(500, text="internal error")
    health = await checks.provider_status("fmp")
    assert not health.healthy and FMP_SECRET not in repr(health)

    route.mock(side_effect=httpx.ConnectError(f"cannot connect to {FMP}"))
    with pytest.raises(TargetUnavailable) as caught:
        await checks.provider_status("fmp")
    assert FMP_SECRET not in str(caught.value)


async def test_large_answer_is_summarised(mock: respx.MockRouter, checks: HttpChecks) -> None:
    mock.get(FRED).respond(502, text="x" * 500_000)
    health = await checks.provider_status("fred")
    assert not health.healthy and len(health.detail) < 300


async def test_freshness_gate_ok_on_200_with_the_runbook_request(
    mock: respx.MockRouter, checks: HttpChecks
) -> None:
    route = mock.post(f"{APP}/execute").respond(200, json={"result": {}})
    gate = await checks.freshness_gate()
    assert gate.ok and gate.status_code == 200 and not gate.warming
    sent = route.calls.last.request
    assert json.loads(sent.content) == dict(DEFAULT_GATE_BODY)
    assert sent.headers["Authorization"] == "Bearer t"


async def test_freshness_gate_503_means_pack_warming(
    mock: respx.MockRouter, checks: HttpChecks
) -> None:
    mock.post(f"{APP}/execute").respond(503, json={"detail": "Pricing pack warming in progress"})
    gate = await checks.freshness_gate()
    assert (gate.ok, gate.status_code, gate.warming) == (False, 503, True)
    assert "warming" in gate.detail


async def test_freshness_gate_timeout_is_target_timeout(
    mock: respx.MockRouter, checks: HttpChecks
) -> None:
    mock.post(f"{APP}/execute").mock(side_effect=httpx.ConnectTimeout("slow"))
    with pytest.raises(TargetTimeout):
        await checks.freshness_gate()


async def test_freshness_gate_refuses_odd_paths(mock: respx.MockRouter, checks: HttpChecks) -> None:
    route = mock.route()
    for path in ["/../admin", "//evil.localhost/x", "execute", "/execute?x=1"]:
        with pytest.raises(InputRejected):
            await checks.freshness_gate(path=path)
    assert route.call_count == 0


async def test_freshness_gate_without_app_url_is_a_config_error() -> None:
    checks = HttpChecks(PROVIDERS, None)
    try:
        with pytest.raises(ConfigError):
            await checks.freshness_gate()
    finally:
        await checks.aclose()


def test_non_http_provider_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"providers\.polygon"):
        HttpChecks({"polygon": "file:///etc/passwd"}, None)


async def test_given_client_is_used_and_left_open(mock: respx.MockRouter) -> None:
    mock.get(POLYGON).respond(200, json={"status": "ok"})
    async with httpx.AsyncClient() as client:
        checks = HttpChecks({"polygon": POLYGON}, None, client=client)
        assert (await checks.provider_status("polygon")).healthy
        await checks.aclose()
        assert not client.is_closed
