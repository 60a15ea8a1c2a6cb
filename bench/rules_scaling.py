"""Scenario 4, rule scaling: the cost of matching one alert against 10, 1,000 and
10,000 rules, through the real loader (``rules.load``) and ``RuleSet.select``.

The rule sets look like real ones grown large: every rule but three pins its
alertname (one in ten with a literal ``=~"A|B"``), each adds a severity regex and
a service matcher; three wildcard rules without an alertname are in every set, so
they are tested against every alert. Half the alerts are named by a rule, half by
nobody (the storm case). For contrast, the same alerts are matched by a linear
scan of all rules on a smaller sample.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench import runbook
from bench.plan import Plan
from remediator.engine import rules as rules_mod
from remediator.runbook_api.registry import Registry

WILDCARDS = (
    ['severity="page"', 'team="db-oncall"'],
    ['service="billing"', 'severity=~"critical|page"'],
    ['env="staging"', 'job=~"api-.*"'],
)


def rules_yaml(n: int) -> str:
    lines = ["rules:"]
    pinned = max(0, n - len(WILDCARDS))
    for i in range(pinned):
        if i % 10 == 9:
            name_m = f'alertname=~"BenchAlert{i:05d}|BenchAlertAlt{i:05d}"'
        else:
            name_m = f'alertname="BenchAlert{i:05d}"'
        matchers = [name_m, 'severity=~"page|critical"', 'service="dawsos"']
        lines.append(f"  - name: bench-rule-{i}")
        lines.append(f"    matchers: {matchers!r}")
        lines.append(f"    runbook: {runbook.ID}")
    for j, matchers in enumerate(WILDCARDS[: n - pinned]):
        lines.append(f"  - name: bench-wildcard-{j}")
        lines.append(f"    matchers: {matchers!r}")
        lines.append(f"    runbook: {runbook.ID}")
    return "\n".join(lines) + "\n"


def alerts(n_alerts: int, n_rules: int, seed: int = 4) -> list[dict[str, str]]:
    rnd = random.Random(seed)
    pinned = max(1, n_rules - len(WILDCARDS))
    out = []
    for k in range(n_alerts):
        if k % 2 == 0:
            name = f"BenchAlert{rnd.randrange(pinned):05d}"
        else:
            name = f"UnruledAlert{rnd.randrange(1000):03d}"
        out.append(
            {
                "alertname": name,
                "severity": "page",
                "service": "dawsos",
                "env": "prod",
                "team": "sre",
                "job": "node-exporter",
                "instance": f"host-{k:05d}:9100",
            }
        )
    return out


def _time_once(fn: Any, labels: list[Mapping[str, str]]) -> float:
    started = time.perf_counter()
    for lab in labels:
        fn(lab)
    return (time.perf_counter() - started) / len(labels)


def _load(n_rules: int, workdir: Path) -> tuple[rules_mod.RuleSet, float]:
    registry = Registry()
    runbook.register(registry)
    path = workdir / f"rules-{n_rules}.yaml"
    path.write_text(rules_yaml(n_rules))
    t0 = time.perf_counter()
    ruleset, errors = rules_mod.load(path, registry)
    load_s = time.perf_counter() - t0
    if ruleset is None:
        raise RuntimeError(f"generated rules are invalid: {errors[:3]}")
    return ruleset, load_s


def _scan_check(ruleset: rules_mod.RuleSet, labels: list[Mapping[str, str]]) -> float:
    """The index must give a linear scan's answer; the scan is the cost it saves."""
    n_rules = len(ruleset)
    sample = labels[: max(20, min(len(labels), 200_000 // max(1, n_rules)))]

    def scan(lab: Mapping[str, str]) -> list[rules_mod.Rule]:
        return [r for r in ruleset.rules if r.matches(lab)]

    for lab in sample:
        if scan(lab) != ruleset.select(lab):
            raise RuntimeError(f"index and scan disagree for {lab['alertname']}")
    return _time_once(scan, sample)


def run(workdir: Path, plan: Plan) -> dict[str, Any]:
    wd = workdir / "rules"
    wd.mkdir(parents=True, exist_ok=True)
    sets = []
    for n in plan.rule_counts:
        ruleset, load_s = _load(n, wd)
        labels: list[Mapping[str, str]] = list(alerts(plan.rule_alerts, n))
        matched = sum(len(ruleset.select(lab)) for lab in labels)  # also a warm-up
        sets.append((ruleset, labels, load_s, matched))
    # Interleaved repeats, best of each: drift of the machine (frequency, other
    # processes winding down) hits every size alike instead of the first one.
    best = [float("inf")] * len(sets)
    for _ in range(max(1, plan.rule_repeats)):
        for i, (ruleset, labels, _, _) in enumerate(sets):
            best[i] = min(best[i], _time_once(ruleset.select, labels))
    rows = []
    for (ruleset, labels, load_s, matched), per_alert in zip(sets, best, strict=True):
        rows.append(
            {
                "rules": len(ruleset),
                "alerts": len(labels),
                "matched": matched,
                "load_s": load_s,
                "select_us_per_alert": per_alert * 1e6,
                "scan_us_per_alert": _scan_check(ruleset, labels) * 1e6,
            }
        )
    base = rows[0]["select_us_per_alert"]
    for row in rows:
        row["ratio_to_smallest"] = row["select_us_per_alert"] / base if base else 0.0
    return {"rows": rows}
