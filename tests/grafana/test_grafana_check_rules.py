"""`check-rules --config` says, per rule, that Grafana alerts it matches are blocked
when ``targets.grafana`` is not set; with it set, it says nothing of the kind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).parents[2]
RULES = """
rules:
  - name: provider-outage
    matchers: ['alertname="ProviderErrorRateHigh"']
    runbook: RB-02
  - name: pricing-pack-build-slow
    matchers: ['alertname="PricingPackBuildSlow"']
    runbook: RB-01
"""


def _check(tmp_path: Path, targets: dict[str, object]) -> subprocess.CompletedProcess[str]:
    (tmp_path / "rules.yaml").write_text(RULES)
    config = tmp_path / "remediator.yaml"
    config.write_text(yaml.safe_dump({"rules": "rules.yaml", "targets": targets}))
    env = {k: v for k, v in os.environ.items() if k != "REMEDIATOR_CONFIG"}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "remediator", "check-rules", "--config", str(config)],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        cwd=tmp_path,
    )


def test_without_targets_grafana_each_rule_says_grafana_alerts_are_blocked(
    tmp_path: Path,
) -> None:
    p = _check(tmp_path, {})
    assert p.returncode == 0, p.stderr
    assert "(2 warning(s), on stderr)" in p.stdout
    for rule in ("provider-outage", "pricing-pack-build-slow"):
        line = next(x for x in p.stderr.splitlines() if f"rule {rule!r}" in x)
        assert "Grafana Alerting" in line and "not_corroborated" in line, line
        assert "targets.grafana is not set" in line, line


def test_with_targets_grafana_there_is_no_such_warning(tmp_path: Path) -> None:
    grafana = {"url": "http://127.0.0.1:3000", "token": "glsa_0123456789abcdef"}
    p = _check(tmp_path, {"grafana": grafana})
    assert p.returncode == 0 and p.stderr == "", p.stderr
    assert p.stdout.startswith("SUCCESS") and "warning" not in p.stdout


def test_an_unknown_key_under_targets_grafana_is_refused_by_name(tmp_path: Path) -> None:
    grafana = {"url": "http://127.0.0.1:3000", "token": "t", "org": 1}
    p = _check(tmp_path, {"grafana": grafana})
    assert p.returncode != 0
    assert "targets.grafana.org" in p.stderr, p.stderr
