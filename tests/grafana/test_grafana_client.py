"""The Grafana witness against the fake alert-state API (documented response shape)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from remediator.clients.grafana import GrafanaClient
from remediator.errors import TargetUnavailable
from tests.grafana.fake_grafana import FakeGrafana

TOKEN = "glsa_fake_service_account_token_client"
LABELS = {"alertname": "ProviderErrorRateHigh", "service": "dawsos", "provider": "polygon"}


@pytest.fixture
async def grafana() -> AsyncIterator[FakeGrafana]:
    fake = FakeGrafana(TOKEN)
    await fake.start()
    yield fake
    await fake.stop()


async def _ask(url: str, labels: dict[str, str], token: str = TOKEN) -> tuple[bool, str]:
    client = GrafanaClient(url, token, timeout=5)
    try:
        witness = await client.alert_firing(labels)
        return witness.firing, witness.detail
    finally:
        await client.aclose()


@pytest.mark.parametrize(
    ("state", "firing"),
    [
        ("Alerting", True),
        ("Alerting (NoData)", True),  # newer Grafanas add the reason
        ("Normal", False),
        ("Pending", False),
        ("NoData", False),
        ("Error", False),
    ],
)
async def test_only_an_alerting_instance_with_exactly_these_labels_corroborates(
    grafana: FakeGrafana, state: str, firing: bool
) -> None:
    grafana.set_state(LABELS, state)
    got, detail = await _ask(grafana.url, LABELS)
    assert got is firing, detail
    assert state in detail
    assert grafana.refused == 0


async def test_private_labels_are_ignored_and_extra_or_missing_ones_are_not(
    grafana: FakeGrafana,
) -> None:
    grafana.set_state(LABELS, "Alerting")  # the fake adds __alert_rule_uid__
    assert (await _ask(grafana.url, LABELS))[0] is True
    firing, detail = await _ask(grafana.url, {**LABELS, "severity": "page"})
    assert firing is False and "labels that differ: severity" in detail
    firing, detail = await _ask(grafana.url, {"alertname": "ProviderErrorRateHigh"})
    assert firing is False and "labels that differ: provider, service" in detail
    firing, detail = await _ask(grafana.url, {**LABELS, "alertname": "Other"})
    assert firing is False and "no Other alert instance" in detail


async def test_a_refused_token_is_an_error_that_does_not_carry_the_token(
    grafana: FakeGrafana,
) -> None:
    grafana.set_state(LABELS, "Alerting")
    wrong = "glsa_wrong_token_0000000000000000"
    with pytest.raises(TargetUnavailable) as caught:
        await _ask(grafana.url, LABELS, token=wrong)
    assert "HTTP 401" in str(caught.value) and wrong not in str(caught.value)
    assert grafana.refused == 1


async def test_an_unreachable_grafana_is_an_error(unused_port: int) -> None:
    with pytest.raises(TargetUnavailable):
        await _ask(f"http://127.0.0.1:{unused_port}", LABELS)
