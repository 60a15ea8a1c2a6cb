"""The Grafana dashboards query only the daemon's contract metrics, in valid PromQL,
through the DS_PROMETHEUS data source variable; plus the provisioning files."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_support import (
    CONTRACT_METRICS,
    CONTRACT_SERIES,
    GRAFANA_DIR,
    load_yaml,
    metric_names,
    run,
    series_names,
)
from prometheus_client import CollectorRegistry

from remediator.metrics import Metrics

DASHBOARD_DIR = GRAFANA_DIR / "dashboards"
DS = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
# What Grafana substitutes before a query reaches Prometheus; promtool needs real values.
GRAFANA_VARS = {
    "$__rate_interval": "2m",
    "$__interval": "30s",
    "$__range": "6h",
    "$job": ".*",
    "$runbook": "RB-01",
}


def _load(name: str) -> dict[str, Any]:
    return dict(json.loads((DASHBOARD_DIR / name).read_text(encoding="utf-8")))


OVERVIEW = _load("remediator-overview.json")
RUNBOOK = _load("remediator-runbook.json")
DASHBOARDS = {"overview": OVERVIEW, "runbook": RUNBOOK}


def _panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])  # panels inside a collapsed row


def _exprs(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, expr) for every PromQL expression: panel targets and annotations."""
    out = []
    for panel in _panels(dashboard):
        for target in panel.get("targets", []):
            out.append((f"{panel['title']}/{target['refId']}", target["expr"]))
    for annotation in dashboard["annotations"]["list"]:
        if "expr" in annotation:
            out.append((f"annotation {annotation['name']}", annotation["expr"]))
    return out


def _all_exprs() -> list[Any]:
    return [
        pytest.param(expr, id=f"{key}:{where}")
        for key, dashboard in DASHBOARDS.items()
        for where, expr in _exprs(dashboard)
    ]


def _variables(dashboard: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in dashboard["templating"]["list"]}


def _substitute(expr: str) -> str:
    for var, value in sorted(GRAFANA_VARS.items(), key=lambda kv: -len(kv[0])):
        expr = expr.replace(var, value)
    assert "$" not in expr, f"unknown Grafana variable in {expr}"
    return expr


def _promtool_check(exprs: list[str], tmp_path: Path, promtool: str) -> Any:
    rules = [{"record": f"dashboard:expr_{i}", "expr": e} for i, e in enumerate(exprs)]
    path = tmp_path / "exprs.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    return run([promtool, "check", "rules", str(path)])


# --- queries --------------------------------------------------------------------------------


@pytest.mark.parametrize("expr", _all_exprs())
def test_expr_uses_only_contract_metrics(expr: str) -> None:
    names = metric_names(expr)
    assert names, f"no metric found in {expr}"
    assert names <= CONTRACT_SERIES, names - CONTRACT_SERIES


@pytest.mark.parametrize("key", sorted(DASHBOARDS))
def test_every_expr_parses_as_promql(key: str, tmp_path: Path, tool: Callable[[str], str]) -> None:
    exprs = [_substitute(e) for _, e in _exprs(DASHBOARDS[key])]
    result = _promtool_check(exprs, tmp_path, tool("promtool"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promql_check_catches_a_broken_expr(tmp_path: Path, tool: Callable[[str], str]) -> None:
    """The parse check above is real: promtool rejects an unbalanced expression."""
    result = _promtool_check(["sum(rate(remediator_actions_total[5m])"], tmp_path, tool("promtool"))
    assert result.returncode != 0


def test_dashboards_together_show_every_contract_metric() -> None:
    used = set().union(*(metric_names(e) for d in DASHBOARDS.values() for _, e in _exprs(d)))
    for metric, kind in CONTRACT_METRICS.items():
        assert series_names(metric, kind) & used, f"{metric} is on no panel"


def test_contract_metrics_are_what_the_daemon_exports() -> None:
    """Dashboards and alerts are written against the contract; the daemon must export it."""
    exported: set[str] = set()
    for family in Metrics(CollectorRegistry()).registry.collect():
        kind = "gauge" if family.type == "info" else family.type
        name = family.name + "_info" if family.type == "info" else family.name
        exported |= series_names(name, kind)
    assert exported >= CONTRACT_SERIES, CONTRACT_SERIES - exported


def test_histogram_quantiles_aggregate_by_le() -> None:
    for dashboard in DASHBOARDS.values():
        for where, expr in _exprs(dashboard):
            if "histogram_quantile" not in expr:
                continue
            assert "_bucket" in expr, where
            grouping = re.search(r"by \(([^)]*)\)", expr)
            assert grouping and "le" in [g.strip() for g in grouping.group(1).split(",")], where


def test_overview_shows_time_to_mitigation_p50_p90_p99() -> None:
    quantiles = {
        m.group(1)
        for _, expr in _exprs(OVERVIEW)
        if "remediator_time_to_mitigation_seconds_bucket" in expr
        for m in [re.match(r"histogram_quantile\((0\.\d+),", expr)]
        if m
    }
    assert quantiles == {"0.5", "0.9", "0.99"}


# --- data source and variables --------------------------------------------------------------


@pytest.mark.parametrize("key", sorted(DASHBOARDS))
def test_every_panel_and_target_uses_the_datasource_variable(key: str) -> None:
    dashboard = DASHBOARDS[key]
    variable = _variables(dashboard)["DS_PROMETHEUS"]
    assert variable["type"] == "datasource" and variable["query"] == "prometheus"
    panels = [p for p in _panels(dashboard) if p["type"] != "row"]
    assert panels
    for panel in panels:
        assert panel["datasource"] == DS, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DS, panel["title"]
    for annotation in dashboard["annotations"]["list"]:
        if "expr" in annotation:
            assert annotation["datasource"] == DS


@pytest.mark.parametrize("key", sorted(DASHBOARDS))
def test_query_variables_use_contract_metrics(key: str) -> None:
    for variable in _variables(DASHBOARDS[key]).values():
        if variable["type"] != "query":
            continue
        assert variable["datasource"] == DS
        m = re.fullmatch(r"label_values\((\w+), *(\w+)\)", variable["query"]["query"])
        assert m, variable["query"]
        assert m.group(1) in CONTRACT_SERIES


def test_runbook_dashboard_drills_down_by_runbook_variable() -> None:
    variable = _variables(RUNBOOK)["runbook"]
    assert variable["type"] == "query"
    assert variable["query"]["query"] == "label_values(remediator_runbook_runs_total, runbook)"
    assert variable["includeAll"] is False
    for where, expr in _exprs(RUNBOOK):
        assert 'runbook="$runbook"' in expr, where


@pytest.mark.parametrize("key", sorted(DASHBOARDS))
def test_runbook_runs_are_annotations(key: str) -> None:
    annotations = [a for a in DASHBOARDS[key]["annotations"]["list"] if "expr" in a]
    assert any(
        re.search(r"changes\(remediator_runbook_runs_total\{[^}]*\}\[1m\]\)\) > 0", a["expr"])
        and a["enable"]
        for a in annotations
    )


# --- layout and links -----------------------------------------------------------------------


@pytest.mark.parametrize("key", sorted(DASHBOARDS))
def test_panels_have_unique_ids_and_do_not_overlap(key: str) -> None:
    panels = list(_panels(DASHBOARDS[key]))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    cells: dict[tuple[int, int], str] = {}
    for panel in panels:
        g = panel["gridPos"]
        assert g["x"] >= 0 and g["w"] > 0 and g["x"] + g["w"] <= 24, panel["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]


def test_dashboards_have_stable_uids_that_link_to_each_other() -> None:
    # config.yaml's links.grafana (DESIGN.md) points at /d/remediator.
    assert OVERVIEW["uid"] == "remediator"
    assert RUNBOOK["uid"] == "remediator-runbook"
    assert any(link.get("url") == f"/d/{RUNBOOK['uid']}" for link in OVERVIEW["links"])
    assert any(link.get("url") == f"/d/{OVERVIEW['uid']}" for link in RUNBOOK["links"])


# --- provisioning ---------------------------------------------------------------------------


def test_datasource_provisioning_defines_a_prometheus_source() -> None:
    config = load_yaml(GRAFANA_DIR / "provisioning" / "datasources.yml")
    assert config["apiVersion"] == 1
    [source] = config["datasources"]
    assert source["type"] == "prometheus"
    assert source["access"] == "proxy"
    assert source["url"].startswith("http")


def test_dashboard_provisioning_loads_files_from_a_folder() -> None:
    config = load_yaml(GRAFANA_DIR / "provisioning" / "dashboards.yml")
    assert config["apiVersion"] == 1
    [provider] = config["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"].startswith("/")
