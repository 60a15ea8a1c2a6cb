"""`replay` says why nothing matched and reads stdin; `serve` refuses invalid rules at
start and keeps its rules when a reload brings invalid ones."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from remediator.testing import make_alert, make_payload
from tests.conftest import free_port
from tests.engine.test_operator_commands import ROOT, run_cli
from tests.support import wait_ready

RULES = ROOT / "rules"


def _stdin(*argv: str, data: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("REMEDIATOR_CONFIG", None)
    return subprocess.run(
        [sys.executable, "-m", "remediator", *argv],
        input=data, cwd=cwd, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_replay_names_the_matcher_that_failed_and_reads_stdin(tmp_path: Path) -> None:
    payload = make_payload(make_alert("PricingPackBuildSlow", {"severity": "page"}))
    r = _stdin("replay", "-", "--rules", str(RULES), data=json.dumps(payload), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert "    no rule matches: nothing would run" in lines
    i = next(i for i, x in enumerate(lines) if "rule pricing-pack-build-slow (" in x)
    assert lines[i].endswith("did not match:")
    assert lines[i + 1].strip() == 'service="dawsos" failed: the alert has no service label'
    as_json = _stdin(
        "replay", "-", "--json", "--rules", str(RULES), data=json.dumps(payload), cwd=tmp_path
    )
    [entry] = json.loads(as_json.stdout)
    misses = {m["rule"]: m["failed"] for m in entry["near_misses"]}
    assert misses["pricing-pack-build-slow"] == [
        'service="dawsos" failed: the alert has no service label'
    ]
    assert "provider-error-rate-high" not in misses  # another alert entirely: not close


def test_replay_errors_are_one_line_per_field_with_its_json_path(tmp_path: Path) -> None:
    bad = {"version": "4", "alerts": [{"labels": {}, "status": "nope"}]}
    r = _stdin("replay", "-", "--rules", str(RULES), data=json.dumps(bad), cwd=tmp_path)
    assert r.returncode == 1
    lines = r.stderr.splitlines()
    assert lines[0] == "<stdin>: not an Alertmanager v4 payload:"
    assert "  $.alerts[0].status: Input should be 'firing' or 'resolved'" in lines
    assert "  $.receiver: Field required" in lines
    assert "pydantic" not in r.stderr and "errors.pydantic.dev" not in r.stderr
    r = _stdin("replay", "-", "--rules", str(RULES), data="{bad", cwd=tmp_path)
    assert r.returncode == 1 and r.stderr.splitlines()[1].startswith("  invalid JSON: ")


def test_serve_exits_2_on_invalid_rules_at_start(tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text(
        "rules:\n  - name: x\n    matchers: ['alertname=\"A\"']\n    runbook: RB-99\n"
    )
    cfg = tmp_path / "remediator.yaml"
    cfg.write_text(f"rules: rules.yaml\nlisten: 127.0.0.1:{free_port()}\n")
    r = run_cli("serve", "--config", str(cfg), cwd=tmp_path)
    assert r.returncode == 2
    assert f"{tmp_path / 'rules.yaml'}:2" in r.stderr and "RB-99" in r.stderr
    assert not (tmp_path / "remediator-state.db").exists()


async def test_sighup_with_invalid_rules_keeps_the_old_ones(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text((RULES / "dawsos.yaml").read_text())
    port = free_port()
    cfg = tmp_path / "remediator.yaml"
    cfg.write_text(f"rules: rules.yaml\nlisten: 127.0.0.1:{port}\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "remediator", "serve", "--config", str(cfg)],
        cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as c:
            await wait_ready(f"http://127.0.0.1:{port}", proc)
            rules.write_text("rules: [{name: broken}]\n")
            proc.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 30
            while b"rules_reload_failed" not in (tmp_path / "serve.log").read_bytes():
                assert time.monotonic() < deadline, "no reload"
                await asyncio.sleep(0.1)
            assert (await c.get("/readyz")).status_code == 200
            assert proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def test_close_rules_are_those_of_the_same_alert() -> None:
    from remediator.engine import near_miss, rules
    from remediator.runbook_api.registry import load_entry_points

    ruleset, errors = rules.load(RULES, load_entry_points())
    assert ruleset is not None, errors
    labels = {"alertname": "ProviderErrorRateHigh", "service": "billing", "provider": "fmp"}
    misses = near_miss.near_misses(ruleset, labels)
    assert {m.rule for m in misses} == {"provider-error-rate-high"}
    [miss] = misses
    assert miss.failed == ('service="dawsos" failed: the alert has service="billing"',)
