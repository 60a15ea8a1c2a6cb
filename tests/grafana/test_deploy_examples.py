"""deploy/grafana/: the contact point and policy send DawsOS alerts to the webhook
route with the bearer token, and the remediator side is a valid ``targets.grafana``."""

from __future__ import annotations

from pathlib import Path

import yaml

from remediator.settings import from_mapping

DEPLOY = Path(__file__).parents[2] / "deploy" / "grafana"


def test_the_contact_point_posts_to_the_webhook_route_with_the_bearer_token() -> None:
    doc = yaml.safe_load((DEPLOY / "contact-point.yaml").read_text())
    assert doc["apiVersion"] == 1
    [point] = doc["contactPoints"]
    [receiver] = point["receivers"]
    assert (point["name"], receiver["type"]) == ("remediator", "webhook")
    settings = receiver["settings"]
    assert settings["url"].endswith("/api/v1/alerts") and settings["httpMethod"] == "POST"
    assert settings["authorization_scheme"] == "Bearer"
    assert settings["authorization_credentials"] == "$REMEDIATOR_WEBHOOK_TOKEN"
    assert receiver["disableResolveMessage"] is False  # resolves trigger the undo


def test_the_policy_routes_dawsos_alerts_to_remediator_and_onwards() -> None:
    doc = yaml.safe_load((DEPLOY / "notification-policy.yaml").read_text())
    [policy] = doc["policies"]
    [route] = policy["routes"]
    assert route["receiver"] == "remediator" and route["continue"] is True
    assert route["object_matchers"] == [["service", "=", "dawsos"]]


def test_the_remediator_side_is_a_valid_targets_grafana() -> None:
    doc = yaml.safe_load((DEPLOY / "remediator-targets.yaml").read_text())
    settings = from_mapping(doc, env={"GRAFANA_SA_TOKEN": "glsa_example_0123456789"})
    grafana = settings.targets.grafana
    assert grafana is not None
    assert (grafana.url, grafana.timeout) == ("http://grafana:3000", 5.0)
    assert grafana.token.get_secret_value() == "glsa_example_0123456789"
    assert "glsa_example" not in repr(settings)
