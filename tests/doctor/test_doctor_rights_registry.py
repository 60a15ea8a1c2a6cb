"""doctor on RB-04's first step: reading the rights registry needs a place to read it
from (a file or a ConfigMap, rule params). Without either, the step only skips, so
doctor says it cannot run and names both params, instead of "ok"."""

from __future__ import annotations

from pathlib import Path

from tests.doctor.doctor_support import doctor, step, write_config

RULE = """
rules:
  - name: rights
    matchers: ['alertname="RightsExportViolation"', 'provider=~".+"']
    runbook: RB-04
    params:
      providers: [FMP]
      exports_bucket: dawsos-exports-prod
      licensed_providers: [FMP]
{extra}
"""


async def test_no_registry_place_means_the_step_cannot_run(tmp_path: Path) -> None:
    outcome = await doctor(write_config(tmp_path, {}, RULE.format(extra="")), "--json")
    report = step(outcome.json(), "RB-04", "read_rights_registry")
    assert report["runnable"] is False, report
    assert "params.rights_registry_path or params.rights_registry_configmap" in report["reason"]


async def test_a_registry_path_makes_it_runnable(tmp_path: Path) -> None:
    registry = tmp_path / "RIGHTS_REGISTRY.yaml"
    registry.write_text("providers: {}\n")
    extra = f"      rights_registry_path: {registry}"
    outcome = await doctor(write_config(tmp_path, {}, RULE.format(extra=extra)), "--json")
    report = step(outcome.json(), "RB-04", "read_rights_registry")
    assert report["runnable"] is True, report
