"""`remediator check-rules --runbooks` validates YAML runbooks with file:line errors.

Each broken runbook below differs from a valid one in one place; the check must exit
1 and name that place (file and line) and the reason, and a valid file must pass.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from remediator.runbook_api.registry import load_entry_points
from remediator.runbooks import yaml_runbooks
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "runbooks" / "examples"

VALID = """\
runbooks:
  - id: CACHE-CHECK
    title: Check a queue
    severity: P3
    labels: {queue: k8s_name, deployment: k8s_name}
    target: "{labels.queue}"
    steps:
      - name: depth
        kind: diagnose
        sql:
          query: SELECT count(*) FROM job_queue WHERE queue = $1
          binds: ["{labels.queue}"]
      - name: scale
        kind: mitigate
        approval: approve
        temporary: true
        kube_scale: {deployment: "{labels.deployment}", replicas: 3}
"""

RULE = """\
rules:
  - name: check
    matchers: ['alertname="QueueDeep"']
    runbook: CACHE-CHECK
"""


def _check(tmp_path: Path, runbook_yaml: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "runbooks").mkdir(exist_ok=True)
    (tmp_path / "runbooks" / "queue.yaml").write_text(runbook_yaml)
    (tmp_path / "rules.yaml").write_text(RULE)
    return _remediator(
        "check-rules", str(tmp_path / "rules.yaml"), "--runbooks", str(tmp_path / "runbooks")
    )


def _remediator(*args: str) -> subprocess.CompletedProcess[str]:
    """The CLI as a user runs it, from the filesystem root (no cwd-relative luck)."""
    return subprocess.run(
        [sys.executable, "-m", "remediator", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd="/",
    )


def test_a_valid_runbook_and_the_rule_that_uses_it_pass(tmp_path: Path) -> None:
    result = _check(tmp_path, VALID)
    assert result.returncode == 0, result.stderr
    assert "SUCCESS: 1 rules" in result.stdout


def test_the_shipped_example_and_its_rule_pass() -> None:
    result = _remediator("check-rules", str(EXAMPLE / "rules"), "--runbooks", str(EXAMPLE))
    assert result.returncode == 0, result.stderr
    registry = load_entry_points()
    assert yaml_runbooks.load(EXAMPLE, registry) == []
    runbook = registry.get("WORKER-STUCK")
    assert runbook is not None
    assert [s.name for s in runbook.steps] == ["backlog", "restart_worker", "scale_up", "tell"]
    scale = runbook.step("scale_up")
    assert (scale.mutates, scale.approval, scale.undo is not None) == (True, "approve", True)
    assert runbook.step("backlog").needs == ("database",)
    assert runbook.step("restart_worker").undo is None


# (what is changed in VALID, what the error must say, the line it must name)
BROKEN = [
    pytest.param(
        ("        kube_scale: {", "        kube_scael: {"),
        "unknown key 'kube_scael'",
        13,
        id="unknown-action",
    ),
    pytest.param(
        (
            '        kube_scale: {deployment: "{labels.deployment}", replicas: 3}\n',
            (
                "        sql: {query: 'UPDATE job_queue SET state = $1', binds: [x], mutates: true}\n"
            ),
        ),
        "temporary but no undo",
        13,
        id="temporary-sql-without-undo",
    ),
    pytest.param(
        ('binds: ["{labels.queue}"]', 'binds: ["{labels.tenant}"]'),
        "label 'tenant' has no validator",
        8,
        id="label-without-validator",
    ),
    pytest.param(
        ("WHERE queue = $1", "WHERE queue = '{labels.queue}' AND $1 = $1"),
        "labels reach SQL only as binds",
        8,
        id="label-in-sql-text",
    ),
    pytest.param(
        ("        kind: diagnose\n", "        kind: mitigate\n"),
        "kind mitigate but its action sql changes nothing",
        8,
        id="read-declared-as-mitigation",
    ),
    pytest.param(
        ('binds: ["{labels.queue}"]', 'binds: ["{labels.queue}", "x"]'),
        "uses [1] placeholder(s) but 2 bind(s)",
        8,
        id="bind-count",
    ),
    pytest.param(
        ("{queue: k8s_name, deployment: k8s_name}", "{queue: k8s_name, deployment: provider}"),
        "label 'deployment' must be declared as k8s_name",
        13,
        id="deployment-from-a-provider-label",
    ),
    pytest.param(
        ("{queue: k8s_name,", "{queue: anything,"),
        "labels.queue: validator one of",
        2,
        id="unknown-validator",
    ),
    pytest.param(
        ("  - id: CACHE-CHECK", "  - id: RB-01"),
        "runbook id 'RB-01' is already taken",
        2,
        id="built-in-id",
    ),
]


@pytest.mark.parametrize(("change", "message", "line"), BROKEN)
def test_a_broken_runbook_fails_the_check_naming_file_line_and_reason(
    tmp_path: Path, change: tuple[str, str], message: str, line: int
) -> None:
    old, new = change
    assert old in VALID
    result = _check(tmp_path, VALID.replace(old, new))
    assert result.returncode == 1
    where = f"{tmp_path / 'runbooks' / 'queue.yaml'}:{line}:"
    matching = [e for e in result.stderr.splitlines() if message in e]
    assert matching, result.stderr
    assert matching[0].startswith(where), (matching[0], where)
    assert "FAILED" in result.stderr


def test_invalid_yaml_names_its_line(tmp_path: Path) -> None:
    result = _check(tmp_path, VALID.replace("    severity: P3\n", "    severity: [P3\n"))
    assert result.returncode == 1
    assert f"{tmp_path / 'runbooks' / 'queue.yaml'}:" in result.stderr
    assert "invalid YAML" in result.stderr


def test_serve_refuses_to_start_on_a_broken_runbook(tmp_path: Path) -> None:
    (tmp_path / "runbooks").mkdir()
    (tmp_path / "runbooks" / "queue.yaml").write_text(VALID.replace("kube_scale", "kube_scael"))
    (tmp_path / "rules.yaml").write_text(RULE)
    config = tmp_path / "config.yaml"
    config.write_text(
        f"listen: 127.0.0.1:{free_port()}\nrules: rules.yaml\nrunbooks: runbooks/\n"
        "state: sqlite:///state.db\nauth: {webhook_tokens: [check-runbooks-token-0123]}\n"
    )
    result = _remediator("serve", "--config", str(config))
    assert result.returncode == 2
    assert "unknown key 'kube_scael'" in result.stderr
    assert not (tmp_path / "state.db").exists()


def test_the_readme_example_is_a_valid_runbook(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Writing a runbook in YAML", 1)[1]
    block = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "readme.yaml").write_text(block)
    registry = load_entry_points()
    assert yaml_runbooks.load(tmp_path / "readme.yaml", registry) == []
    runbook = registry.get("WORKER-STUCK")
    assert runbook is not None and runbook.step("scale_up").undo is not None


def test_an_automatic_change_before_any_corroboration_is_warned_about(tmp_path: Path) -> None:
    auto = VALID.replace("        approval: approve\n", "")
    warned = _check(tmp_path, auto)
    assert warned.returncode == 0, warned.stderr
    assert "warning: step 'scale' changes kubernetes before any step checks" in warned.stderr
    confirmed = auto.replace(
        "      - name: depth\n        kind: diagnose\n",
        "      - name: depth\n        kind: diagnose\n        corroborates: true\n",
    ).replace('binds: ["{labels.queue}"]', 'binds: ["{labels.queue}"]\n          expect: rows')
    quiet = _check(tmp_path, confirmed)
    assert quiet.returncode == 0, quiet.stderr
    assert "warning" not in quiet.stderr
