"""Helpers for the deployment-artefact tests: paths, YAML loading, durations, subprocess.

Import as ``from deploy_support import ...`` (pytest puts tests/deploy on sys.path).
The name is unique on purpose: ``conftest`` is rebound per directory by pytest.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.support import root_conftest as shared_conftest  # noqa: F401 - re-exported

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
PROMETHEUS_DIR = DEPLOY / "prometheus"
ALERTMANAGER_DIR = DEPLOY / "alertmanager"
KUBERNETES_DIR = DEPLOY / "kubernetes"
GRAFANA_DIR = REPO / "grafana"
RULE_FILES = sorted(PROMETHEUS_DIR.glob("*-alerts.yml"))
RULE_TEST_FILES = sorted((PROMETHEUS_DIR / "tests").glob("*.yml"))

_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def load_yaml_docs(path: Path) -> list[Any]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]


def prom_duration(text: str | None) -> int:
    """Seconds in a Prometheus duration as these files write them ("90s", "5m", "1h")."""
    if not text:
        return 0
    m = _DURATION.match(text)
    if not m or not any(m.groups()):
        raise ValueError(f"unsupported duration {text!r}")
    h, mins, s = (int(g or 0) for g in m.groups())
    return h * 3600 + mins * 60 + s


def alert_rules(path: Path) -> list[dict[str, Any]]:
    """The alerting rules (not recording rules) of a Prometheus rule file."""
    return [r for g in load_yaml(path)["groups"] for r in g["rules"] if "alert" in r]


def run(cmd: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=60, check=False)


# The daemon's metrics (DESIGN.md "Metrics", prefix remediator_): name -> type. Fixed
# contract: dashboards and alert rules may use these series and no others.
CONTRACT_METRICS: dict[str, str] = {
    "remediator_webhooks_received": "counter",
    "remediator_alerts_received": "counter",
    "remediator_alerts_deduplicated": "counter",
    "remediator_runbook_runs": "counter",
    "remediator_actions": "counter",
    "remediator_action_duration_seconds": "histogram",
    "remediator_time_to_mitigation_seconds": "histogram",
    "remediator_guard_blocks": "counter",
    "remediator_verifications": "counter",
    "remediator_pages": "counter",
    "remediator_approvals_pending": "gauge",
    "remediator_queue_depth": "gauge",
    "remediator_paused": "gauge",
    "remediator_build_info": "info",
    "remediator_circuit_state": "gauge",
    "remediator_rule_reloads": "counter",
    "remediator_truncated_alerts": "counter",
    "remediator_loop_restarts": "counter",
    "remediator_state_rows": "gauge",
    "remediator_retention_deleted": "counter",
    "remediator_pages_folded": "counter",
}


def series_names(metric: str, kind: str) -> set[str]:
    """The series a metric of this kind exposes, as PromQL sees them."""
    if kind == "counter":
        return {metric + "_total"}
    if kind == "histogram":
        return {metric + suffix for suffix in ("_bucket", "_sum", "_count")}
    return {metric}


CONTRACT_SERIES: frozenset[str] = frozenset(
    s for name, kind in CONTRACT_METRICS.items() for s in series_names(name, kind)
)

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGES = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENT = re.compile(r"(?<![\w.:$])[A-Za-z_:][A-Za-z0-9_:]*")
_KEYWORDS = frozenset(
    {
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "bool",
        "and",
        "or",
        "unless",
        "offset",
        "inf",
        "nan",
        "Inf",
        "NaN",
    }
)


def metric_names(expr: str) -> set[str]:
    """Every metric name a PromQL expression selects.

    Strings, label matchers, ranges and grouping label lists are removed first; what
    is left that is an identifier but neither a keyword nor a function call is a
    metric name. Good enough for the expressions in this repository, which the tests
    also hand to promtool to parse for real.
    """
    text = _STRING.sub('""', expr)
    text = _MATCHERS.sub(" ", text)
    text = _RANGES.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    names = set()
    for m in _IDENT.finditer(text):
        rest = text[m.end() :].lstrip()
        if m.group() in _KEYWORDS or rest.startswith("("):
            continue
        names.add(m.group())
    return names
