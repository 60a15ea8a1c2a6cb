"""Blast radius across replicas: ``max_targets: {count: N, per: 1h}`` holds cluster-wide.

Three ``remediator serve`` replicas share one Postgres state store. The shipped RB-02
rule gets ``max_targets`` N = 2, and N+1 firing alerts, each naming another provider
(another target), are delivered at the same moment, one to each replica. Each replica
runs one occurrence at a time and the provider status page answers slowly, so the
three runs execute on three processes and reach their mutation (the gate) together. Exactly N providers get their alerts paused in the target database, the
other run is blocked by ``blast_radius``, and exactly one page says so (to Slack,
a capture server on loopback; dedup key ``remediator/guard/<rule>/blast_radius/<hour>``).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import asyncpg
import httpx
import pytest
import yaml

from tests.e2e.e2e_support import CaptureServer
from tests.reliability._bench import RULE, rows_of, world
from tests.reliability._cluster import Cluster, Sender, settle

REPLICAS = 3


async def _sum_metric(cluster: Cluster, line_prefix: str) -> float:
    total = 0.0
    async with httpx.AsyncClient(timeout=5) as c:
        for r in cluster.replicas:
            for line in (await c.get(r.url + "/metrics")).text.splitlines():
                if line.startswith(line_prefix + " "):
                    total += float(line.split()[-1])
    return total


@pytest.mark.timeout(90)
async def test_n_plus_1_targets_at_once_across_3_replicas_give_n_mitigations_and_one_page(
    request: pytest.FixtureRequest, pg_schema_dsn: str, tmp_path: Path
) -> None:
    count = REPLICAS - 1  # N + 1 runs, one on each replica, at the gate together
    capture = CaptureServer()
    await capture.start()
    async with world(request.config, count + 1, delay=1.0) as w:
        doc = yaml.safe_load(w.rules_yaml())
        [rule] = [r for r in doc["rules"] if r["name"] == RULE]
        rule["max_targets"] = {"count": count, "per": "1h"}
        cluster = Cluster(
            tmp_path,
            pg_schema_dsn,
            rules_yaml=yaml.safe_dump(doc, sort_keys=False),
            targets=w.targets(),
            replicas=REPLICAS,
            # One run at a time per replica: while one replica's run waits for the
            # status page, the other alerts can only be claimed by the other replicas,
            # so the N+1 runs execute on N+1 processes and reach the gate together.
            workers=1,
            # RB-02 pages are P2, which Slack takes (PagerDuty takes P0 and P1).
            pagers={"slack": {"webhook_url": f"{capture.url}/slack/services/T0/B0/blast"}},
        )
        state = await asyncpg.connect(pg_schema_dsn)
        try:
            await cluster.start_all()
            alerts = [w.alert(i) for i in range(count + 1)]
            async with httpx.AsyncClient(timeout=30) as client:
                sender = Sender(cluster, client)
                sent = await asyncio.gather(
                    *(sender.send(i % REPLICAS, [a]) for i, a in enumerate(alerts))
                )
                assert all(sent)
                await settle(pg_schema_dsn, timeout=40)
            # Every page queued is sent (the outbox drains), then count them.
            deadline = time.monotonic() + 20
            while await state.fetchval("SELECT count(*) FROM outbox WHERE state <> 'sent'"):
                assert time.monotonic() < deadline, await state.fetch("SELECT * FROM outbox")
                await asyncio.sleep(0.2)
            runs = [dict(r) for r in await state.fetch("SELECT * FROM runs WHERE rule = $1", RULE)]
            guard_outbox = await state.fetch(
                "SELECT dedup_key, pager, state FROM outbox WHERE dedup_key LIKE 'remediator/guard/%'"
            )
            changes = await w.changes()
            blocks = await _sum_metric(
                cluster, 'remediator_guard_blocks_total{guard="blast_radius"}'
            )
            owners = {str(r["owner"]).split(":")[1] for r in runs}
            errors = cluster.internal_errors()
        finally:
            await state.close()
            await cluster.close()
            await capture.stop()

    assert len(runs) == count + 1
    outcomes = Counter((r["outcome"], r["blocked_by"]) for r in runs)
    assert outcomes == {("mitigated", None): count, ("blocked", "blast_radius"): 1}, outcomes
    # The target: exactly N providers' rows paused, each row once; the other untouched.
    touched = {c["row_id"] for c in changes}
    assert all((c["old"], c["new"]) == ("true", "false") for c in changes)
    assert len(changes) == len(touched)
    mitigated = {p for p in w.providers if set(rows_of(p)) <= touched}
    assert len(mitigated) == count
    assert touched == {row for p in mitigated for row in rows_of(p)}
    [blocked] = [r for r in runs if r["blocked_by"] == "blast_radius"]
    assert blocked["target"] == f"RB-02:{(set(w.providers) - mitigated).pop()}"
    # One page says so, with the rule/guard/hour dedup key.
    key = f"remediator/guard/{RULE}/blast_radius/{int(blocked['created_at'] // 3600)}"
    assert [(r["dedup_key"], r["pager"], r["state"]) for r in guard_outbox] == [
        (key, "slack", "sent")
    ]
    # What reached Slack: one message per mitigated run, and the one guard page.
    texts = [str(body) for body in capture.slack()]
    assert sum("blast_radius" in t for t in texts) == 1, capture.summary()
    assert len(texts) == count + 1, capture.summary()
    assert blocks == 1
    assert len(owners) == REPLICAS  # one run on each replica
    assert errors == []
