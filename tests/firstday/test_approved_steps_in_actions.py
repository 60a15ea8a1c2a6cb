"""An approved step that ran as approved is not shown as failed.

Found running the README's first live mitigation by hand: approving RB-03's
`delete_duplicates` on a database without duplicates ran the step, which found nothing
to delete ("skipped"), and `remediator actions` then said "approved, failed". The same
happened to every approval decided in dry-run. Real parts: a DawsOS Postgres (the
runbook-named columns only) or the engine tests' table as the target, the state store on
Postgres, the real engine through the Harness, and `remediator actions` / `approve` run
as a user runs them, from another directory with `--config`.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from pathlib import Path

import pytest

from remediator.runbook_api.context import Clients
from remediator.runbook_api.registry import Registry
from remediator.runbooks import rb03_alert_storm
from remediator.testing import Harness, make_alert
from tests.engine import _testbook
from tests.engine.conftest import clients, knobs, target_db  # noqa: F401 - fixtures
from tests.runbooks import _rb0406_fixtures as fx

ROOT = Path(__file__).resolve().parents[2]


def cli(*argv: str, config: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "remediator", *argv, "--config", str(config)],
        cwd=cwd,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )


def config_for(tmp_path: Path, state_dsn: str) -> tuple[Path, Path]:
    (tmp_path / "etc").mkdir()
    (tmp_path / "home").mkdir()
    config = tmp_path / "etc" / "remediator.yaml"
    config.write_text(f"state: '{state_dsn}'\n")
    return config, tmp_path / "home"


def row(listing: str, phase: str, step: str) -> str:
    """The audit line of ``step`` in ``phase``, from the STEP column on."""
    for line in listing.splitlines():
        found = re.search(rf"\s{phase}\s+({step}\s.*)$", line)
        if found:
            return " ".join(found.group(1).split())
    raise AssertionError(f"no {phase} {step} line in\n{listing}")


async def test_an_approved_step_with_nothing_to_do_is_skipped_not_failed(
    pg_schema_dsn: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    registry = Registry()
    registry.register(rb03_alert_storm.RUNBOOK)
    rules = fx.rules_yaml("RB-03", ("AlertStorm",), {"storm_per_minute": 1})
    config, home = config_for(tmp_path, pg_schema_dsn)
    async with fx.dawsos_db(request.config, "minimal") as (_dsn, db):
        before = await db.fetchval("SELECT count(*) FROM notifications")
        h = Harness(registry, rules, clients=Clients(database=db), state_url=pg_schema_dsn)
        async with h:
            await h.deliver(make_alert("AlertStorm", {"severity": "page", "service": "dawsos"}))
            [run] = await h.runs()
            approval = await fx.approval_for(h, run.id, "delete_duplicates")
            await h.approve(approval, who="alice")
        after = await db.fetchval("SELECT count(*) FROM notifications")
    assert after == before  # the seed has no duplicate to delete

    shown = await asyncio.to_thread(cli, "actions", config=config, cwd=home)
    assert shown.returncode == 0, shown.stderr
    assert row(shown.stdout, "approved", "delete_duplicates") == (
        "delete_duplicates skipped no duplicate notifications to delete"
    )
    offered = row(shown.stdout, "fire", "delete_duplicates")
    assert offered.startswith("delete_duplicates approved, skipped by alice "), offered
    assert "failed" not in shown.stdout, shown.stdout
    again = await asyncio.to_thread(cli, "approve", str(approval), config=config, cwd=home)
    assert again.returncode == 1
    assert f"approval {approval} is executed" in again.stderr


async def test_an_approval_decided_in_dry_run_is_planned_not_failed(
    pg_schema_dsn: str,
    clients: Clients,  # noqa: F811 - the fixture
    tmp_path: Path,
) -> None:
    config, home = config_for(tmp_path, pg_schema_dsn)
    harness = Harness(
        _testbook.registry(), _testbook.rules(), clients=clients,
        state_url=pg_schema_dsn, settings={"mode": "dry-run"},
    )  # fmt: skip
    async with harness as h:
        await h.deliver(make_alert("TestAlert", {"service": "checkout"}))
        [run] = await h.runs()
        [approval] = [a.id for a in await h.approvals(run.id)]
        await h.approve(approval, who="bob")
    assert clients.database is not None
    assert (await knobs(clients.database))["replicas"] == 3  # dry-run: nothing executed

    shown = await asyncio.to_thread(cli, "actions", config=config, cwd=home)
    assert shown.returncode == 0, shown.stderr
    assert row(shown.stdout, "approved", "scale_down").startswith("scale_down dry_run ")
    offered = row(shown.stdout, "fire", "scale_down")
    assert offered.startswith("scale_down approved, planned (dry-run) by bob"), offered
    assert "failed" not in shown.stdout, shown.stdout
