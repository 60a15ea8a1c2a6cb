"""The example Alertmanager config is valid, routes the right alerts to remediator, and
sends what remediator needs: resolved notifications and a bearer token from a file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_support import (
    ALERTMANAGER_DIR,
    PROMETHEUS_DIR,
    alert_rules,
    load_yaml,
    prom_duration,
    run,
)

CONFIG = ALERTMANAGER_DIR / "alertmanager.yml"
SNIPPET = ALERTMANAGER_DIR / "receiver-snippet.yml"
WEBHOOK_URL = "http://remediator:9095/api/v1/alerts"


def _remediator_receivers(config: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        r
        for r in config["receivers"]
        if any(w["url"].endswith("/api/v1/alerts") for w in r.get("webhook_configs", []))
    ]


def _routed_receiver(amtool: str, labels: dict[str, str]) -> str:
    args = [f"{k}={v}" for k, v in sorted(labels.items())]
    result = run([amtool, "config", "routes", "test", f"--config.file={CONFIG}", *args])
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip()


def test_amtool_check_config_accepts_alertmanager_yml(tool: Callable[[str], str]) -> None:
    result = run([tool("amtool"), "check-config", str(CONFIG)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_remediator_webhook_sends_resolved_with_bearer_token_from_a_file() -> None:
    [receiver] = _remediator_receivers(load_yaml(CONFIG))
    [webhook] = receiver["webhook_configs"]
    assert webhook["url"] == WEBHOOK_URL
    # Resolved notifications are what trigger the undo of temporary mitigations.
    assert webhook["send_resolved"] is True
    auth = webhook["http_config"]["authorization"]
    assert auth.get("type", "Bearer") == "Bearer"
    assert auth["credentials_file"].startswith("/")
    # The token must never be written inline in the config.
    assert "credentials" not in auth
    assert "basic_auth" not in webhook["http_config"]


def test_receiver_snippet_is_the_receiver_in_the_example_config() -> None:
    snippet = load_yaml(SNIPPET)
    assert isinstance(snippet, list)
    assert snippet == _remediator_receivers(load_yaml(CONFIG))


def test_receiver_snippet_is_valid_alertmanager_config(
    tool: Callable[[str], str], tmp_path: Path
) -> None:
    snippet = load_yaml(SNIPPET)
    wrapped = {"route": {"receiver": snippet[0]["name"]}, "receivers": snippet}
    path = tmp_path / "am.yml"
    path.write_text(yaml.safe_dump(wrapped), encoding="utf-8")
    result = run([tool("amtool"), "check-config", str(path)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_grouping_keeps_providers_and_source_ips_apart() -> None:
    route = load_yaml(CONFIG)["route"]
    assert {"alertname", "provider", "source_ip"} <= set(route["group_by"])
    # Below 10 s Alertmanager's retry loops overlap and duplicate sends.
    assert prom_duration(route["group_interval"]) >= 10
    assert prom_duration(route["group_wait"]) <= prom_duration(route["group_interval"])
    assert prom_duration(route["repeat_interval"]) >= prom_duration(route["group_interval"])


def test_no_inhibit_rules_can_swallow_a_resolved_notification() -> None:
    assert not load_yaml(CONFIG).get("inhibit_rules")


@pytest.mark.parametrize(
    "rule", alert_rules(PROMETHEUS_DIR / "dawsos-alerts.yml"), ids=lambda r: r["alert"]
)
def test_every_dawsos_alert_routes_to_remediator(
    rule: dict[str, Any], tool: Callable[[str], str]
) -> None:
    labels = {"alertname": rule["alert"], **rule["labels"]}
    assert _routed_receiver(tool("amtool"), labels) == "remediator"


@pytest.mark.parametrize(
    "rule", alert_rules(PROMETHEUS_DIR / "remediator-alerts.yml"), ids=lambda r: r["alert"]
)
def test_remediator_own_alerts_never_route_to_remediator(
    rule: dict[str, Any], tool: Callable[[str], str]
) -> None:
    labels = {"alertname": rule["alert"], **rule["labels"]}
    receiver = _routed_receiver(tool("amtool"), labels)
    assert receiver
    assert receiver not in {r["name"] for r in _remediator_receivers(load_yaml(CONFIG))}
