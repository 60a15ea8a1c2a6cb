"""The rule key ``verify``: validated with file:line, and warned about when nothing
can answer it (no targets.prometheus)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from remediator.engine import rules as rules_mod
from remediator.engine.verify import render_query, split_comparison
from tests.engine import _testbook

RULE = """rules:
  - name: test-rule
    matchers: ['alertname="TestAlert"']
    runbook: RB-T
    verify:
{body}
"""


def load(tmp_path: Path, body: str) -> tuple[rules_mod.RuleSet | None, list[str]]:
    path = tmp_path / "rules.yaml"
    path.write_text(RULE.format(body=body))
    return rules_mod.load(path, _testbook.registry())


def test_a_valid_verify_is_loaded_with_its_defaults(tmp_path: Path) -> None:
    ruleset, errors = load(
        tmp_path, "      query: 'max(pack_build_duration_seconds) < 600'\n      within: 15m"
    )
    assert errors == []
    assert ruleset is not None
    verify = ruleset.rules[0].verify
    assert verify == rules_mod.Verify("max(pack_build_duration_seconds) < 600", 900.0, "page")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("      query: ''\n      within: 5m", "verify.query must be a non-empty PromQL expression"),
        ("      within: 5m", "verify.query must be a non-empty PromQL expression"),
        ("      query: up\n      within: 0s", "verify.within must be positive"),
        ("      query: up\n      within: soon", "verify.within: expected a duration"),
        ("      query: up\n      within: -3", "verify.within: duration must not be negative"),
        ("      query: up", "verify.within is required"),
        (
            "      query: up\n      within: 5m\n      on_failure: rollback",
            "verify.on_failure must be page or undo, not 'rollback'",
        ),
        ("      query: up\n      within: 5m\n      then: undo", "verify: unknown key 'then'"),
        (
            "      query: 'up{job={{ $labels.job }}}'\n      within: 5m",
            'labels may appear only as "{{ $labels.NAME }}", quotes included',
        ),
    ],
)
def test_bad_verify_values_are_errors_at_the_verify_line(
    tmp_path: Path, body: str, message: str
) -> None:
    ruleset, errors = load(tmp_path, body)
    assert ruleset is None
    # The verify mapping starts on line 6 of the file (its first key).
    where = f"{tmp_path / 'rules.yaml'}:6: rule 'test-rule': "
    assert any(e.startswith(where) and message in e for e in errors), errors


def test_verify_that_is_not_a_mapping_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(RULE.format(body="      - up"))
    ruleset, errors = rules_mod.load(path, _testbook.registry())
    assert ruleset is None
    assert errors == [
        f"{path}:2: rule 'test-rule': verify must be a mapping {{query, within, on_failure}}"
    ]


def _check_rules(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "remediator", "check-rules", *args],
        capture_output=True,
        text=True,
        check=False,
    )


SHIPPED = Path(__file__).parents[2] / "rules" / "dawsos.yaml"


def test_check_rules_fails_on_a_bad_verify_with_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "dawsos.yaml"
    bad.write_text(SHIPPED.read_text().replace("within: 15m", "within: 0m", 1))
    p = _check_rules(str(bad))
    assert p.returncode == 1
    line = next(i for i, t in enumerate(bad.read_text().splitlines(), 1) if "within: 0m" in t)
    # the verify mapping's first key is the query, the line before within
    assert f"{bad}:{line - 1}: rule 'alert-storm': verify.within must be positive" in p.stderr


def test_shipped_verify_rules_warn_without_prometheus_and_not_with_it(tmp_path: Path) -> None:
    bare = tmp_path / "bare.yaml"
    bare.write_text(yaml.safe_dump({"rules": str(SHIPPED)}))
    p = _check_rules("--config", str(bare), str(SHIPPED))
    assert p.returncode == 0 and p.stdout.startswith("SUCCESS"), p.stderr
    warned = [w for w in p.stderr.splitlines() if "targets.prometheus is not configured" in w]
    names = {"pricing-pack-build-slow", "pricing-pack-not-ready", "provider-error-rate-high",
             "provider-circuit-breaker-open", "alert-storm", "notification-queue-backlog"}  # fmt: skip
    assert {w.split("rule '")[1].split("'")[0] for w in warned} == names
    assert all(w.startswith(f"{SHIPPED}:") for w in warned)

    with_prom = tmp_path / "prom.yaml"
    with_prom.write_text(
        yaml.safe_dump(
            {"rules": str(SHIPPED), "targets": {"prometheus": {"url": "http://127.0.0.1:9090"}}}
        )
    )
    p = _check_rules("--config", str(with_prom), str(SHIPPED))
    assert p.returncode == 0 and "targets.prometheus" not in p.stderr, p.stderr


def test_label_placeholders_become_escaped_promql_strings() -> None:
    query = 'x{provider="{{ $labels.provider }}"} < 0.1'
    assert render_query(query, {"provider": "polygon"}) == 'x{provider="polygon"} < 0.1'
    hostile = 'a"} or vector(1) or x{b="'
    assert render_query(query, {"provider": hostile}) == (
        'x{provider="a\\"} or vector(1) or x{b=\\""} < 0.1'
    )
    assert render_query(query, {}) == 'x{provider=""} < 0.1'


def test_the_left_side_of_a_comparison_is_found_for_the_page() -> None:
    assert split_comparison("max(pack_build_duration_seconds) < 600") == (
        "max(pack_build_duration_seconds)", "< 600",
    )  # fmt: skip
    assert split_comparison('max(x{a=~"<|>"}) == 1') == ('max(x{a=~"<|>"})', "== 1")
    # A number on the left filters the series on the right, the comparison mirrored.
    assert split_comparison("600 > max(x)") == ("max(x)", "< 600")
    assert split_comparison("0.1 >= rate(e[5m])") == ("rate(e[5m])", "<= 0.1")
    for query in (
        "a > 1 and b < 2",
        "x > bool 1",
        "1 < bool x",
        "max(x)",
        "a < b",
        "a > 1 < 2",
        "1 < 2",
    ):
        assert split_comparison(query) is None, query
