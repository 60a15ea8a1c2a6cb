"""`remediator check-rules` reports every error with file:line and exits 1."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from remediator.engine import rules
from remediator.runbook_api.registry import Registry
from remediator.runbooks import register_builtin
from tests.engine import _testbook

BAD = """rules:
  - name: good
    matchers: ['alertname="TestAlert"']
    runbook: RB-T
  - name: bad-matcher
    matchers: ['alertname=~"(unclosed"', 'severity=="x"']
    runbook: RB-T
  - name: unknown-runbook
    matchers: ['alertname="X"']
    runbook: RB-99
  - name: bad-params
    matchers: ['alertname="X"']
    runbook: RB-T
    params: {throttle_to: lots, nonsense: 1}
  - name: good
    matchers: ['alertname="Y"']
    runbook: RB-T
"""


def test_every_error_is_reported_with_file_and_line(tmp_path: Path):
    f = tmp_path / "r.yaml"
    f.write_text(BAD)
    ruleset, errors = rules.load(f, _testbook.registry())
    assert ruleset is None
    text = "\n".join(errors)
    assert f"{f}:5: rule 'bad-matcher': bad matcher 'alertname=~\"(unclosed\"'" in text
    assert f"{f}:5: rule 'bad-matcher': bad matcher 'severity==\"x\"'" in text
    assert f"{f}:8: rule 'unknown-runbook': unknown runbook 'RB-99'" in text
    assert f"{f}:11: rule 'bad-params': params.throttle_to:" in text
    assert f"{f}:11: rule 'bad-params': params.nonsense: unknown parameter" in text
    assert f"{f}:15: duplicate rule name 'good' (first defined at {f}:2)" in text


def test_cli_exits_1_on_errors_and_0_on_the_shipped_rules(tmp_path: Path):
    f = tmp_path / "r.yaml"
    f.write_text("rules:\n  - name: x\n    matchers: ['alertname=\"A\"']\n    runbook: NOPE\n")
    p = subprocess.run(
        [sys.executable, "-m", "remediator", "check-rules", str(f)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert p.returncode == 1
    assert f"{f}:2: rule 'x': unknown runbook 'NOPE'" in p.stderr
    shipped = Path(__file__).parents[2] / "rules"
    p = subprocess.run(
        [sys.executable, "-m", "remediator", "check-rules", str(shipped)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("SUCCESS")


SHIPPED = Path(__file__).parents[2] / "rules"


def _line_of(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def test_check_rules_warns_about_the_shipped_empty_allow_list_and_still_passes(
    tmp_path: Path,
) -> None:
    """Each RB-06 rule with an empty allow_list gets a warning naming file:line and the
    rule; warnings go to stderr and do not fail the check (the shipped rules have one
    until a user fills in their networks). Filled in, the warnings go away."""
    incidents = SHIPPED / "dawsos-incidents.yaml"
    p = subprocess.run(
        [sys.executable, "-m", "remediator", "check-rules", str(incidents)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("SUCCESS") and "(3 warning(s), on stderr)" in p.stdout
    for rule in ("suspicious-request-rate", "idor-spike", "jwt-leak-detected"):
        line = _line_of(incidents, f"- name: {rule}")
        assert (
            f"{incidents}:{line}: rule {rule!r}: warning: allow_list is empty: in live mode"
            " RB-06 refuses to block any address" in p.stderr
        ), p.stderr

    filled = tmp_path / "incidents.yaml"
    filled.write_text(
        incidents.read_text().replace("allow_list: []", "allow_list: [198.51.100.0/24]")
    )
    p = subprocess.run(
        [sys.executable, "-m", "remediator", "check-rules", str(filled)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert p.returncode == 0 and p.stderr == "", p.stderr
    assert "warning" not in p.stdout


def test_shipped_rules_bound_the_blast_radius_and_end_temporary_mitigations() -> None:
    registry = Registry()
    register_builtin(registry)
    ruleset, errors = rules.load(SHIPPED, registry)
    assert errors == [] and ruleset is not None
    by_runbook: dict[str, list[rules.Rule]] = {}
    for rule in ruleset.rules:
        by_runbook.setdefault(rule.runbook, []).append(rule)
    for runbook, count in (("RB-06", 4), ("RB-04", 2), ("RB-03", 1)):
        assert {r.max_targets for r in by_runbook[runbook]} == {
            rules.BlastRadius(count=count, per=3600.0)
        }, runbook
    # RB-03's target is always "global": its hourly bound is the run budget too.
    assert {(r.max_runs_per_hour, r.cooldown) for r in by_runbook["RB-03"]} == {(1, 3600.0)}
    # Undone on resolve, so undone after max_duration when no resolve comes.
    for runbook in ("RB-02", "RB-03"):
        assert {r.max_duration for r in by_runbook[runbook]} == {6 * 3600.0}, runbook
    # Kept after resolve (blocks, export restrictions, killed sessions): nothing to end.
    for runbook in ("RB-01", "RB-04", "RB-05", "RB-06"):
        assert {r.max_duration for r in by_runbook[runbook]} == {None}, runbook
