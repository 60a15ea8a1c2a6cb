"""Scenario 6, time to the first P0 page: P0 alerts arrive while 1,000 P2 alerts/s
load the daemon and runs sit parked in a long wait.

Per state backend, against bench/ttm_daemon.py (mode live, ``limits.workers`` 8, so a
P0 lane of 2 and a general lane of 6; pagers ``oncall`` for P0/P1 and ``chat`` for
P2/P3, each with the default page budget):

  1. ``p0_parked`` BenchPark alerts (BENCH-PARK: its step answers Wait for 600 s);
     the bench waits until all their runs are parked.
  2. bench.loadgen sends BenchLoad alerts (BENCH-P2: one UPDATE on the target) at
     ``p0_load_rate`` for ``p0_load_seconds``, 1 alert per request, open loop; a
     second bench.loadgen sends ``p0_alerts`` BenchP0 alerts (BENCH-P0: page_first,
     then one read-only diagnose step), one every ``p0_interval``, starting
     ``p0_lead`` into the load. Both record each alert's wall-clock send time.
  3. Once every P0's first page has been handed to its pager, or ``p0_drain_timeout``
     after the last P0 was sent, the daemon stops and the state store is read.

Time to the first P0 page, three views (an alert without a first page then counts as
infinite in every view, and is counted as unpaged):
  e2e        outbox.created_at of the run's first page (idem ``<run>:first:oncall``,
             dedup key ``remediator/<run>``) minus the generator's send time: the
             page is durably queued (same machine clock)
  daemon     the same created_at minus runs.received_at (the journal's intake time)
  delivered  outbox.sent_at (the pager answered) minus the send time
The target is judged on *e2e*. The accounting: each P0 alert has one run and one
first page (opening its own incident: not folded), and the parked runs are still
parked at the end. The P2 columns say what load the daemon really took: the rate the
generator achieved, the alerts answered 202, those processed (their target row
stamped) by the end of the load and the backlog then.
"""

from __future__ import annotations

import asyncio
import math
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

from bench import common, drive, payloads, runbook, servers, ttm
from bench.plan import Plan
from remediator.state.store import StateStore

P0_PAGER = "oncall"
P0_STREAM = 0x50  # fingerprint streams: P2 load 0, parked 0x4B, P0 0x50
PARK_STREAM = 0x4B
# Both generators start at the same wall-clock time, this long after they are
# launched (their imports and sessions are ready by then).
START_DELAY = 1.5


class StateReader:
    """One open state store (SQLite or Postgres) for the bench's reads while the
    daemon runs: opened once, not per poll (an open creates pools and checks the
    migrations)."""

    def __init__(self, url: str) -> None:
        self._runner = asyncio.Runner()
        self._store = self._runner.run(StateStore.open(url))

    async def _fetch(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        async with self._store.backend.read() as c:
            rows: list[dict[str, Any]] = await c.fetch(sql, *args)
            return rows

    def query(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        """``?`` placeholders, whatever the backend."""
        return self._runner.run(self._fetch(sql, *args))

    def count(self, sql: str, *args: Any) -> int:
        return int(self.query(sql, *args)[0]["n"])

    def parked_runs(self) -> int:
        return self.count(
            "SELECT count(*) AS n FROM runs WHERE runbook = ? AND state = 'parked'",
            runbook.PARK_ID,
        )

    def first_pages(self) -> list[dict[str, Any]]:
        """The P0 runs' first pages (the only P0/P1 runbook is BENCH-P0)."""
        return self.query(
            "SELECT dedup_key, created_at, sent_at, incident FROM outbox"
            " WHERE pager = ? AND idem LIKE ?",
            P0_PAGER,
            f"%:first:{P0_PAGER}",
        )

    def close(self) -> None:
        try:
            self._runner.run(self._store.close())
        finally:
            self._runner.close()


def _post(url: str, body: bytes) -> int:
    req = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return int(resp.status)


def _wait_for(what: str, check: Any, timeout: float) -> float:
    """Poll ``check()`` until true; returns the seconds it took."""
    t0 = time.monotonic()
    while not check():
        if time.monotonic() - t0 > timeout:
            raise RuntimeError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.1)
    return time.monotonic() - t0


def _quantiles(values: list[float]) -> dict[str, float]:
    return {
        "p50_ms": common.percentile(values, 50) * 1000,
        "p99_ms": common.percentile(values, 99) * 1000,
        "max_ms": (max(values) * 1000) if values else math.nan,
    }


def run_backend(kind: str, workdir: Path, plan: Plan) -> dict[str, Any]:
    wd = workdir / f"p0-{kind}"
    wd.mkdir(parents=True, exist_ok=True)
    nonce = drive.new_nonce()
    p2_total = int(plan.p0_load_rate * plan.p0_load_seconds)
    p0_total = plan.p0_alerts
    # Every BENCH-P2 alert has its target row (BENCH-P0 reads the table, and an alert
    # without a row would fail its run and open the circuit).
    fingerprints = [payloads.fingerprint(nonce, 0, i) for i in range(p2_total)]
    target_schema = common.new_schema("bench_target")
    target_dsn = common.with_search_path(common.PG_DSN, target_schema)
    server: servers.Server | None = None
    reader: StateReader | None = None
    running: list[drive.Loadgen] = []
    try:
        ttm.prepare_target(target_dsn, fingerprints)
        server = servers.start_ttm_daemon(
            kind,
            wd,
            target_dsn,
            rules=runbook.P0_RULES_YAML,
            workers=plan.p0_workers,
            split_pagers=True,
        )
        assert server.state_url is not None
        reader = db = StateReader(server.state_url)

        # 1. Runs parked in a long wait, holding no worker.
        park_fps = [payloads.fingerprint(nonce, PARK_STREAM, i) for i in range(plan.p0_parked)]
        status = _post(server.webhook, payloads.template(runbook.PARK_ALERTNAME).body(park_fps))
        if status != 202:
            raise RuntimeError(f"the parked alerts were answered {status}")
        park_s = _wait_for(
            f"{plan.p0_parked} runs to park",
            lambda: db.parked_runs() >= plan.p0_parked,
            30.0,
        )
        parked_before = db.parked_runs()

        # 2. The P2 load, and the P0 alerts during it.
        start = time.time() + START_DELAY
        common_spec = {"url": server.webhook, "mode": "rate", "connections": plan.connections}
        p2_spec = {
            **common_spec,
            "rate": plan.p0_load_rate / plan.p0_load_per_payload,
            "duration": plan.p0_load_seconds,
            "start_at": start,
            "plan": {
                "kind": "distinct",
                "alertname": runbook.P2_ALERTNAME,
                "per_payload": plan.p0_load_per_payload,
                "nonce": nonce,
            },
        }
        p0_spec = {
            **common_spec,
            "rate": 1 / plan.p0_interval,
            # Half an interval more: int(rate * duration) is exactly p0_total.
            "duration": (p0_total + 0.5) * plan.p0_interval,
            "start_at": start + plan.p0_lead,
            "plan": {
                "kind": "distinct",
                "alertname": runbook.P0_ALERTNAME,
                "per_payload": 1,
                "nonce": nonce,
                "stream": P0_STREAM,
            },
        }
        cpu0 = common.cpu_seconds(server.pid)
        running = [drive.Loadgen(p2_spec, wd, "p2-load"), drive.Loadgen(p0_spec, wd, "p0")]
        p0_load = running[1].wait()
        p2_load = running[0].wait()
        load_ended = time.time()
        # What the daemon got through under the load, and what it left queued.
        p2_processed = ttm.mitigated_count(target_dsn)
        backlog = db.count("SELECT count(*) AS n FROM occurrences WHERE state = 'pending'")
        cpu = common.cpu_seconds(server.pid) - cpu0

        # 3. Every P0's first page handed to its pager, or the drain deadline.
        accepted_p0 = int(p0_load["status"].get("202", 0))
        last_p0 = max(p0_load["sends"].values(), default=load_ended)

        def all_delivered() -> bool:
            pages = db.first_pages()
            return sum(1 for p in pages if p["sent_at"] is not None) >= accepted_p0

        deadline = last_p0 + plan.p0_drain_timeout
        while not all_delivered() and time.time() < deadline and server.child.alive():
            time.sleep(0.2)
        server.child.stop()
        runs = db.query(
            "SELECT id, fingerprint, received_at FROM runs WHERE runbook = ?",
            runbook.P0_ID,
        )
        pages = db.first_pages()
        parked_after = db.parked_runs()
        p2_runs = db.count("SELECT count(*) AS n FROM runs WHERE runbook = ?", runbook.P2_ID)
    finally:
        for lg in running:
            lg.stop()
        if reader is not None:
            reader.close()
        if server is not None:
            server.stop()
        common.drop_schema(target_schema)

    sends: dict[str, float] = p0_load["sends"]
    runs_per_fp = Counter(r["fingerprint"] for r in runs)
    run_of = {r["fingerprint"]: r for r in runs}
    page_of: dict[str, dict[str, Any]] = {}
    pages_per_run: Counter[str] = Counter()
    for p in pages:
        run_id = p["dedup_key"].removeprefix("remediator/")
        pages_per_run[run_id] += 1
        page_of[run_id] = p
    e2e: list[float] = []
    daemon: list[float] = []
    delivered: list[float] = []
    unpaged = undelivered = 0
    for fp, sent_at in sends.items():
        r = run_of.get(fp)
        page = page_of.get(r["id"]) if r is not None else None
        if r is None or page is None:
            unpaged += 1
            e2e.append(math.inf)
            daemon.append(math.inf)
            delivered.append(math.inf)
            continue
        e2e.append(page["created_at"] - sent_at)
        daemon.append(page["created_at"] - r["received_at"])
        if page["sent_at"] is None:
            undelivered += 1
            delivered.append(math.inf)
        else:
            delivered.append(page["sent_at"] - sent_at)
    p2_seconds = float(p2_load["seconds"])
    p2_sent = int(p2_load["requests"]) * plan.p0_load_per_payload
    return {
        "backend": kind,
        "workers": plan.p0_workers,
        "parked_planned": plan.p0_parked,
        "parked_before": parked_before,
        "parked_after": parked_after,
        "park_s": round(park_s, 2),
        "p2": {
            "rate": plan.p0_load_rate,
            "seconds": plan.p0_load_seconds,
            "per_payload": plan.p0_load_per_payload,
            "planned": p2_total,
            "requests": p2_load["requests"],
            "sent": p2_sent,
            # Alerts answered 202 and journaled (the replies' counts).
            "accepted": p2_load["journaled"],
            "non202": p2_load["non202"],
            "errors": p2_load["errors"],
            # Alerts sent over the generator's whole run (until its last reply).
            "achieved_rate": p2_sent / p2_seconds if p2_seconds else 0.0,
            "ack_p50_ms": p2_load["p50_ms"],
            "ack_p99_ms": p2_load["p99_ms"],
            # At the end of the load (the generator's last reply): stamped target rows,
            # runs started, and occurrences still waiting for a worker.
            "processed": p2_processed,
            "processed_per_s": p2_processed / p2_seconds if p2_seconds else 0.0,
            "backlog": backlog,
            "runs_at_stop": p2_runs,
        },
        "p0": {
            "planned": p0_total,
            "interval_s": plan.p0_interval,
            "sent": p0_load["requests"],
            "accepted": accepted_p0,
            "ack_p99_ms": p0_load["p99_ms"],
            "runs": len(runs),
            "doubled_runs": sum(1 for n in runs_per_fp.values() if n > 1),
            "first_pages": len(pages),
            "doubled_pages": sum(1 for n in pages_per_run.values() if n > 1),
            "folded": sum(1 for p in pages if p["incident"] not in ("new", None)),
            "paged": len(sends) - unpaged,
            "unpaged": unpaged,
            "undelivered": undelivered,
        },
        "end_to_end": _quantiles(e2e),
        "daemon": _quantiles(daemon),
        "delivered": _quantiles(delivered),
        "daemon_cpu_share": cpu / p2_seconds if p2_seconds else 0.0,
    }


def run(workdir: Path, plan: Plan, *, backends: tuple[str, ...]) -> dict[str, Any]:
    return {"rows": [run_backend(kind, workdir, plan) for kind in backends]}
