"""The alert rules keep DESIGN.md's contract: names, labels, severity and runbook links."""

from __future__ import annotations

import re
from typing import Any

import pytest
from deploy_support import (
    CONTRACT_SERIES,
    PROMETHEUS_DIR,
    REPO,
    alert_rules,
    load_yaml,
    metric_names,
    shared_conftest,
)

# DESIGN.md, "The runbooks as automation": alert -> (runbook, labels the runbook acts on).
DESIGN_ALERTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "PricingPackBuildSlow": ("RB-01", ()),
    "PricingPackNotReady": ("RB-01", ()),
    "ProviderErrorRateHigh": ("RB-02", ("provider",)),
    "ProviderCircuitBreakerOpen": ("RB-02", ("provider",)),
    "AlertStorm": ("RB-03", ()),
    "NotificationQueueBacklog": ("RB-03", ()),
    "RightsExportViolation": ("RB-04", ("provider",)),
    "DatabaseDown": ("RB-05", ()),
    "DatabaseSlowQueries": ("RB-05", ()),
    "DatabaseCPUHigh": ("RB-05", ()),
    "SuspiciousRequestRate": ("RB-06", ("source_ip",)),
    "IdorSpike": ("RB-06", ()),
    "JwtLeakDetected": ("RB-06", ()),
}
# RB-05 and RB-06 are P0 ("page first"); the rest may be critical or warning.
P0_RUNBOOKS = {"RB-05", "RB-06"}
REQUIRED_REMEDIATOR_ALERTS = {
    "RemediatorDown",
    "RemediatorWebhookErrors",
    "RemediatorCircuitOpen",
    "RemediatorApprovalsPendingTooLong",
    "RemediatorActionsFailing",
    "RemediatorQueueBacklog",
    "RemediatorPausedTooLong",
}
SEVERITIES = {"page", "critical", "warning"}
DESIGN_MD = REPO.parent / "shared" / "DESIGN.md"

DAWSOS = alert_rules(PROMETHEUS_DIR / "dawsos-alerts.yml")
REMEDIATOR = alert_rules(PROMETHEUS_DIR / "remediator-alerts.yml")


def _firing_label_sets(alertname: str) -> list[dict[str, Any]]:
    doc = load_yaml(PROMETHEUS_DIR / "tests" / "dawsos-alerts.test.yml")
    return [
        exp["exp_labels"]
        for group in doc["tests"]
        for case in group.get("alert_rule_test", [])
        if case["alertname"] == alertname
        for exp in case.get("exp_alerts") or []
    ]


def test_dawsos_alerts_are_exactly_the_design_table() -> None:
    names = [r["alert"] for r in DAWSOS]
    assert len(names) == len(set(names)), "an alert is defined twice"
    assert set(names) == set(DESIGN_ALERTS)


def test_design_table_in_design_md_matches_the_list_here(request: pytest.FixtureRequest) -> None:
    try:
        text = DESIGN_MD.read_text(encoding="utf-8")
    except OSError as exc:
        shared_conftest(request.config).service_missing("shared/DESIGN.md", exc)
        raise
    found: dict[str, tuple[str, tuple[str, ...]]] = {}
    for line in text.splitlines():
        row = re.match(r"^\| (RB-0\d) [^|]*\| ([^|]*) \|", line)
        if not row:
            continue
        for name, labels in re.findall(r"`([A-Z][A-Za-z]+)(?:\{([a-z_,]+)\})?`", row.group(2)):
            found[name] = (row.group(1), tuple(filter(None, labels.split(","))))
    assert found == DESIGN_ALERTS


@pytest.mark.parametrize("rule", DAWSOS, ids=lambda r: r["alert"])
def test_dawsos_alert_has_severity_service_and_runbook_annotations(rule: dict[str, Any]) -> None:
    runbook = DESIGN_ALERTS[rule["alert"]][0]
    labels, annotations = rule["labels"], rule["annotations"]
    assert labels["severity"] in SEVERITIES
    if runbook in P0_RUNBOOKS:
        assert labels["severity"] == "page"
    # Alertmanager routes service="dawsos" to remediator (deploy/alertmanager).
    assert labels["service"] == "dawsos"
    assert annotations["runbook_url"] == (f"https://runbooks.example/dawsos#{runbook.lower()}")
    assert annotations["summary"].strip()
    assert annotations["description"].strip()


@pytest.mark.parametrize("alertname", [a for a, (_, labels) in DESIGN_ALERTS.items() if labels])
def test_labels_the_runbook_acts_on_survive_aggregation(alertname: str) -> None:
    """RB-02/RB-04 act per provider and RB-06 per source IP: the firing alert must say which.

    The label sets come from the promtool cases that fire, which promtool checks.
    """
    needed = DESIGN_ALERTS[alertname][1]
    label_sets = _firing_label_sets(alertname)
    assert label_sets
    for labels in label_sets:
        assert all(labels.get(label) for label in needed), labels


def test_remediator_alerts_include_the_required_ones() -> None:
    names = [r["alert"] for r in REMEDIATOR]
    assert len(names) == len(set(names))
    assert set(names) >= REQUIRED_REMEDIATOR_ALERTS


@pytest.mark.parametrize("rule", REMEDIATOR, ids=lambda r: r["alert"])
def test_remediator_alert_has_severity_and_annotations(rule: dict[str, Any]) -> None:
    labels, annotations = rule["labels"], rule["annotations"]
    assert labels["severity"] in SEVERITIES
    # service="remediator" keeps these away from the remediator receiver.
    assert labels["service"] == "remediator"
    assert annotations["runbook_url"].startswith("https://runbooks.example/remediator#")
    assert annotations["summary"].strip()
    assert annotations["description"].strip()


@pytest.mark.parametrize("rule", REMEDIATOR, ids=lambda r: r["alert"])
def test_remediator_alert_uses_only_contract_metrics(rule: dict[str, Any]) -> None:
    names = metric_names(rule["expr"])
    assert names, rule["expr"]
    # `up` is Prometheus's own series for the scrape of remediator.
    assert names <= CONTRACT_SERIES | {"up"}, names - CONTRACT_SERIES
