"""P0 never waits, and nothing waits behind a long step.

Eight runs are parked in a long wait (their `second` step answers Wait: a build Job
still running), on a daemon with ``workers: 8``. Then a P0 alert arrives: its first
page is queued within 2 s. Ten approvals decided during the waits each run within
2 s. Before parking existed, each waiting run held a worker: the P0 waited 577 s.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import asyncpg
import httpx
import pytest

from remediator.clients.database import TargetDatabase
from remediator.paging.capture import CapturePager
from remediator.runbook_api.context import Clients
from remediator.runbook_api.registry import Registry
from remediator.testing import make_alert, make_payload
from tests.engine import _testbook
from tests.reliability._faults_fixtures import daemon_with, eventually
from tests.reliability._report import record

pytestmark = pytest.mark.timeout(120)

RULES = """
rules:
  - name: slow-build
    matchers: ['alertname="SlowBuild"']
    runbook: RB-T
    params: {wait_second: 600}
  - name: quick
    matchers: ['alertname="Quick"']
    runbook: RB-T
  - name: database-down
    matchers: ['alertname="DatabaseDown"']
    runbook: RB-P0
"""


@pytest.fixture
async def target(pg_schema_dsn: str) -> AsyncIterator[TargetDatabase]:
    conn = await asyncpg.connect(pg_schema_dsn)
    await conn.execute(_testbook.SCHEMA)
    await conn.close()
    db = await TargetDatabase.connect(pg_schema_dsn)
    yield db
    await db.aclose()


async def test_a_p0_and_approvals_never_wait_behind_parked_runs(
    target: TargetDatabase, pg_schema_dsn: str, tmp_path: Path
) -> None:
    registry = Registry()
    registry.register(_testbook.RUNBOOK)
    registry.register(replace(_testbook.RUNBOOK, id="RB-P0", severity="P0", page_first=True))
    (tmp_path / "rules.yaml").write_text(RULES)
    config = {
        "mode": "live",
        "state": pg_schema_dsn,
        "rules": str(tmp_path / "rules.yaml"),
        "limits": {"workers": 8},
        "engine": {"poll_interval": "0.2s", "lease": "5s"},
    }
    pager = CapturePager()
    async with (
        daemon_with(
            config, pagers={"capture": pager}, registry=registry, clients=Clients(database=target)
        ) as d,
        httpx.AsyncClient(base_url=d.url, timeout=10) as c,
    ):
        store = d.daemon.store
        slow = [make_alert("SlowBuild", {"service": f"build-{i}"}) for i in range(8)]
        assert (await c.post("/api/v1/alerts", json=make_payload(*slow))).status_code == 202

        async def all_parked() -> bool:
            runs = await store.list_runs(100)
            return len(runs) == 8 and all(r["state"] == "parked" for r in runs)

        await eventually(all_parked, "the eight slow runs to park in their wait")

        quick = [make_alert("Quick", {"service": f"quick-{i}"}) for i in range(10)]
        assert (await c.post("/api/v1/alerts", json=make_payload(*quick))).status_code == 202

        posted = time.monotonic()
        down = make_alert("DatabaseDown", {"service": "db"})
        assert (await c.post("/api/v1/alerts", json=make_payload(down))).status_code == 202

        async def p0_paged() -> bool:
            return any(
                p["dedup_key"].startswith("remediator/r") and p["severity"] == "P0"
                for p in await _pages(pg_schema_dsn)
            )

        await eventually(p0_paged, "the P0's first page to be queued", timeout=10)
        p0_first_page = time.monotonic() - posted

        async def approvals_pending() -> list[int]:
            rows = []
            for run in await store.list_runs(100):
                if run["rule"] == "quick":
                    rows += [
                        a["id"]
                        for a in await store.approvals_for_run(run["id"])
                        if a["state"] == "pending"
                    ]
            return rows if len(rows) == 10 else []

        pending = await eventually(approvals_pending, "ten approvals to be asked")
        waits = []
        for approval_id in pending:
            decided = time.monotonic()
            assert (await d.daemon.decide(approval_id, "approved", "alice")).status == "ok"

            async def executed(approval_id: int = approval_id) -> bool:
                a = await store.get_approval(approval_id)
                return a is not None and a["state"] == "executed"

            await eventually(executed, f"approval {approval_id} to run", timeout=10)
            waits.append(time.monotonic() - decided)
        parked_still = [r for r in await store.list_runs(100) if r["state"] == "parked"]

    assert p0_first_page <= 2.0, p0_first_page
    assert max(waits) <= 2.0, waits
    assert len(parked_still) == 8  # the waits went on all along, holding no worker
    record(
        "starvation",
        name="P0 and approvals while 8 runs wait (workers: 8)",
        p0_first_page_s=round(p0_first_page, 3),
        approval_run_s_max=round(max(waits), 3),
        approval_run_s_median=round(sorted(waits)[len(waits) // 2], 3),
    )


async def _pages(dsn: str) -> list[dict[str, str]]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT dedup_key, event FROM outbox")
    finally:
        await conn.close()
    import json

    return [
        {"dedup_key": r["dedup_key"], "severity": json.loads(r["event"])["content"]["severity"]}
        for r in rows
    ]


async def test_a_p0_gets_a_reserved_worker_while_every_other_worker_is_busy(
    target: TargetDatabase, pg_schema_dsn: str, tmp_path: Path
) -> None:
    """Steps that do not park (a slow target call) fill the general lane; the P0
    lane's reserved workers still take the P0 alert at once."""
    _testbook.GATE.clear()
    _testbook.REACHED_SECOND.clear()
    registry = Registry()
    registry.register(_testbook.RUNBOOK)
    registry.register(replace(_testbook.RUNBOOK, id="RB-P0", severity="P0", page_first=True))
    (tmp_path / "rules.yaml").write_text(
        RULES.replace("params: {wait_second: 600}", "params: {hang_second: true}")
    )
    config = {
        "mode": "live",
        "state": pg_schema_dsn,
        "rules": str(tmp_path / "rules.yaml"),
        "limits": {"workers": 8},
        "engine": {"poll_interval": "0.2s", "lease": "5s"},
    }
    try:
        async with (
            daemon_with(
                config,
                pagers={"capture": CapturePager()},
                registry=registry,
                clients=Clients(database=target),
            ) as d,
            httpx.AsyncClient(base_url=d.url, timeout=10) as c,
        ):
            busy = [make_alert("SlowBuild", {"service": f"build-{i}"}) for i in range(12)]
            assert (await c.post("/api/v1/alerts", json=make_payload(*busy))).status_code == 202

            async def general_lane_full() -> bool:
                return len(_testbook.REACHED_SECOND) >= 8

            await eventually(general_lane_full, "eight runs to hold the general lane's workers")
            posted = time.monotonic()
            down = make_alert("DatabaseDown", {"service": "db"})
            assert (await c.post("/api/v1/alerts", json=make_payload(down))).status_code == 202

            async def p0_paged() -> bool:
                return any(p["severity"] == "P0" for p in await _pages(pg_schema_dsn))

            await eventually(p0_paged, "the P0's first page to be queued", timeout=10)
            p0_first_page = time.monotonic() - posted
            assert len(_testbook.REACHED_SECOND) == 8  # the general lane is still full
    finally:
        for event in _testbook.GATE.values():
            event.set()
        _testbook.GATE.clear()
        _testbook.REACHED_SECOND.clear()
    assert p0_first_page <= 2.0, p0_first_page
    record(
        "starvation",
        name="P0 while the general lane is full (workers: 8, plus 2 in the P0 lane)",
        p0_first_page_s=round(p0_first_page, 3),
    )
