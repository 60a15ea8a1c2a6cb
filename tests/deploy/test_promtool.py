"""The Prometheus rule files pass promtool, and their unit tests cover every alert."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from deploy_support import (
    PROMETHEUS_DIR,
    RULE_FILES,
    RULE_TEST_FILES,
    alert_rules,
    load_yaml,
    prom_duration,
    run,
)


def test_rule_and_test_files_exist() -> None:
    assert [p.name for p in RULE_FILES] == ["dawsos-alerts.yml", "remediator-alerts.yml"]
    assert [p.name for p in RULE_TEST_FILES] == [
        "dawsos-alerts.test.yml",
        "remediator-alerts.test.yml",
    ]


@pytest.mark.parametrize("rule_file", RULE_FILES, ids=lambda p: p.name)
def test_promtool_check_rules_accepts_rule_file(
    rule_file: Path, tool: Callable[[str], str]
) -> None:
    result = run([tool("promtool"), "check", "rules", str(rule_file)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize("test_file", RULE_TEST_FILES, ids=lambda p: p.name)
def test_promtool_unit_tests_pass(test_file: Path, tool: Callable[[str], str]) -> None:
    # cwd matters: promtool resolves rule_files relative to the test file's directory.
    result = run([tool("promtool"), "test", "rules", test_file.name], cwd=test_file.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_check_config_accepts_example_prometheus_yml(
    tool: Callable[[str], str],
) -> None:
    result = run([tool("promtool"), "check", "config", "prometheus.yml"], cwd=PROMETHEUS_DIR)
    assert result.returncode == 0, result.stdout + result.stderr


def test_example_prometheus_yml_loads_every_rule_file_and_scrapes_remediator() -> None:
    config = load_yaml(PROMETHEUS_DIR / "prometheus.yml")
    assert sorted(config["rule_files"]) == sorted(p.name for p in RULE_FILES)
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    # remediator-alerts.yml matches up{job="remediator"}: the job name is load-bearing.
    targets = [t for sc in jobs["remediator"]["static_configs"] for t in sc["targets"]]
    assert targets and all(t.endswith(":9095") for t in targets)
    assert jobs["remediator"].get("metrics_path", "/metrics") == "/metrics"


@functools.cache
def _cases_by_alert(test_file: Path) -> dict[str, list[tuple[int, int, bool]]]:
    """alertname -> [(test group index, eval seconds, fires?)] from a promtool test file."""
    doc = load_yaml(test_file)
    cases: dict[str, list[tuple[int, int, bool]]] = {}
    for index, group in enumerate(doc["tests"]):
        for case in group.get("alert_rule_test", []):
            fires = bool(case.get("exp_alerts"))
            cases.setdefault(case["alertname"], []).append(
                (index, prom_duration(case["eval_time"]), fires)
            )
    return cases


def _rules_with_tests(*, with_for_only: bool = False) -> list[Any]:
    """pytest params (rule, its promtool test file, that file's evaluation interval)."""
    out = []
    for rule_file in RULE_FILES:
        test_file = PROMETHEUS_DIR / "tests" / rule_file.name.replace(".yml", ".test.yml")
        interval = prom_duration(load_yaml(test_file).get("evaluation_interval", "1m"))
        for rule in alert_rules(rule_file):
            if with_for_only and prom_duration(rule.get("for")) == 0:
                continue
            out.append(pytest.param(rule, test_file, interval, id=rule["alert"]))
    return out


@pytest.mark.parametrize(("rule", "test_file", "interval"), _rules_with_tests())
def test_every_alert_has_a_firing_case_and_a_quiet_case(
    rule: dict[str, Any], test_file: Path, interval: int
) -> None:
    cases = _cases_by_alert(test_file).get(rule["alert"], [])
    assert any(fires for _, _, fires in cases), f"no case where {rule['alert']} fires"
    assert any(not fires for _, _, fires in cases), f"no case where {rule['alert']} is quiet"


@pytest.mark.parametrize(("rule", "test_file", "interval"), _rules_with_tests(with_for_only=True))
def test_every_alert_with_for_is_tested_quiet_in_its_pending_window(
    rule: dict[str, Any], test_file: Path, interval: int
) -> None:
    """A quiet case one evaluation before the first firing case, in the same test group.

    If the alert first fires at T with `for: F >= interval`, its condition has held since
    at most T - F, so at T - interval it was true and still pending: the case proves that
    `for:` holds the alert back, not merely that the condition was false.
    """
    assert prom_duration(rule["for"]) >= interval
    cases = _cases_by_alert(test_file)[rule["alert"]]
    quiet = {(group, t) for group, t, fires in cases if not fires}
    first_firing: dict[int, int] = {}
    for group, t, fires in cases:
        if fires:
            first_firing[group] = min(t, first_firing.get(group, t))
    assert any((group, t - interval) in quiet for group, t in first_firing.items()), (
        f"{rule['alert']}: no quiet case one evaluation before a first firing case"
    )
