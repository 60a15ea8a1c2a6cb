"""`remediator check-rules` reports every error with file:line and exits 1."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from remediator.engine import rules
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
