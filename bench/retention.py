"""State-store bytes per 100,000 alerts, before and after retention (Postgres).

    .venv/bin/python bench/retention.py [--alerts 100000] [--run-every 10] [--json FILE]

Into a fresh schema, through the store API (as the daemon writes them): 100,000
firing occurrences shaped like Alertmanager's (bench/payloads.py's labels and
annotations, about 720 bytes of alert JSON each), journaled already done; and for one
alert in ``--run-every`` a finished run with four steps, a trigger and a resolve page
(sent), and for one run in ten an executed approval. Then one retention pass after
another (``remediator.state.retention.prune``, the daemon's own, with ``now`` moved 91
days on) until nothing is left to prune, and ``VACUUM``: what autovacuum does next.

Printed, per table and in total (``pg_total_relation_size``: heap, indexes, TOAST):
  before    after the 100,000 alerts
  pruned    right after the deletes: the same files, now full of dead rows; without
            (auto)vacuum they stay that size and the next alerts append to them
  vacuumed  after VACUUM: dead rows freed for reuse, and empty trailing pages given
            back (here every row went, so nearly all of it)
A session elsewhere on the server holding an old snapshot keeps VACUUM from freeing
rows deleted after it began: run it on a quiet server.
Postgres from $REMEDIATOR_BENCH_PG (default: the test database); the schema is
dropped afterwards. Under two minutes on the 2-core bench machine.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson

from bench import common
from remediator.models import Occurrence
from remediator.paging.base import PageContent, PageEvent
from remediator.state import retention
from remediator.state.store import StateStore
from remediator.testing import make_alert

DAY = 86400.0
TABLES = retention.TABLES
JOURNAL_BATCH = 1000
WRITERS = 8  # concurrent run writers, as the daemon's 8 workers


def alerts(nonce: str, n: int, received_at: float) -> list[Occurrence]:
    out = []
    for i in range(n):
        fp = f"{nonce}{i:08x}"
        a = make_alert(
            "BenchRetention",
            {"severity": "page", "service": "dawsos", "env": "prod", "team": "sre",
             "job": "node-exporter", "instance": f"host-{fp}"},
            annotations={
                "summary": f"BenchRetention on host-{fp}",
                "description": "Notifications per minute above 200 for 5 minutes; "
                "see the alert-storm runbook before acting by hand.",
                "runbook_url": "https://runbooks.example/dawsos#rb-03-alert-storm",
            },
            starts_at="2026-11-28T00:20:04.123Z",
            generator_url="http://prometheus.example:9090/graph?g0.expr=rate%28"
            "notifications_total%5B5m%5D%29+%3E+200&g0.tab=1",
            fingerprint=fp,
        )  # fmt: skip
        out.append(
            Occurrence(
                fp, a["startsAt"], "firing", "BenchRetention", a["labels"], a["annotations"],
                a["endsAt"], a["generatorURL"], '{}:{alertname="BenchRetention"}',
                received_at, False,
            )
        )  # fmt: skip
    return out


def page(run_id: str, action: str) -> dict[str, Any]:
    content = PageContent(
        dedup_key=f"remediator/{run_id}", severity="P1",
        title=f"[RB-03] BenchRetention: alert storm on host-{run_id}",
        alertname="BenchRetention", runbook="RB-03", rule="bench", mode="live",
        done=("set_global_cooldown: applied (60 min, was 15)",
              "find_top_offenders: applied (5 alerts above 200/min)",
              "disable_offenders: applied (3 alerts disabled)"),
        skipped=("check_dedupe: skipped (unique index present)",),
        left_for_human=(f"scale the scheduler to 0: remediator approve {run_id}",),
        links=(("runbook", "https://runbooks.example/dawsos#rb-03"),
               ("grafana", "https://grafana.example/d/remediator")),
        labels={"alertname": "BenchRetention", "instance": f"host-{run_id}"},
    )  # fmt: skip
    event: dict[str, Any] = PageEvent(action=action, content=content).to_json()  # type: ignore[arg-type]
    return event


async def write_run(store: StateStore, occ: Occurrence, n: int, at: float) -> None:
    run_id = f"r{occ.fingerprint[-12:]}"
    run = {
        "id": run_id, "rule": "bench", "runbook": "RB-03", "fingerprint": occ.fingerprint,
        "starts_at": occ.starts_at, "alertname": occ.alertname, "target": "RB-03:global",
        "mode": "live", "state": "running",
        "alert": {"labels": occ.labels, "annotations": occ.annotations,
                  "generator_url": occ.generator_url},
        "params": {"top_n": 5, "threshold": 200}, "severity": "P1", "received_at": at,
        "created_at": at, "updated_at": at, "owner": "bench", "lease_until": at + 30,
    }  # fmt: skip
    await store.create_run(run)
    for seq, name in enumerate(("set_global_cooldown", "find_top_offenders",
                                "disable_offenders", "check_dedupe")):  # fmt: skip
        await store.record_step(
            {
                "run_id": run_id, "phase": "fire", "seq": seq, "name": name,
                "kind": "mitigate", "mutates": seq != 1, "approval": "auto", "state": "done",
                "outcome": "applied",
                "rendered": "UPDATE alert_settings SET cooldown_minutes = $1 WHERE id = $2"
                " RETURNING cooldown_minutes -- binds: [60, 'global']",
                "result": {"data": {"alerts": [101, 102, 103], "previous": 15}},
                "changes": {"alert_settings": {"global": {"cooldown_minutes": 15}}},
                "reason": None, "attempts": 1, "started_at": at, "finished_at": at,
            }
        )  # fmt: skip
    if n % 10 == 0:
        a = await store.create_approval(run_id, "scale_scheduler", at + 3600)
        await store.transition_approval(a, "pending", "executed")
    await store.enqueue_pages(
        [(f"{run_id}:{action}:pagerduty", "pagerduty", action, f"remediator/{run_id}",
          page(run_id, action)) for action in ("trigger", "resolve")]
    )  # fmt: skip
    await store.update_run(
        run_id, state="done", outcome="mitigated", undo_state="done", finished_at=at,
        mitigated_at=at, resolved_at=at,
    )  # fmt: skip


async def storm(store: StateStore, nonce: str, n: int, run_every: int, at: float) -> None:
    occs = alerts(nonce, n, at)
    for i in range(0, n, JOURNAL_BATCH):
        await store.append_occurrences(occs[i : i + JOURNAL_BATCH])
    with_runs = occs[::run_every]
    queue: asyncio.Queue[tuple[int, Occurrence]] = asyncio.Queue()
    for item in enumerate(with_runs):
        queue.put_nowait(item)

    async def writer() -> None:
        while not queue.empty():
            k, occ = queue.get_nowait()
            await write_run(store, occ, k, at)

    await asyncio.gather(*(writer() for _ in range(WRITERS)))
    # Sent, as the outbox would have recorded them.
    async with store.backend.transaction() as c:
        await c.execute("UPDATE outbox SET state = 'sent', sent_at = created_at")


async def sizes(dsn: str, measure: str = "pg_total_relation_size") -> dict[str, int]:
    rows = await common.pg_fetch(
        f"SELECT t AS name, {measure}(to_regclass(t)) AS bytes FROM unnest($1::text[]) AS t",
        list(TABLES),
        dsn=dsn,
    )
    out = {str(r["name"]): int(r["bytes"]) for r in rows}
    out["total"] = sum(out.values())
    return out


async def bench(dsn: str, n: int, run_every: int) -> dict[str, Any]:
    store = await StateStore.open(dsn)
    figures: dict[str, Any] = {"alerts": n, "runs": len(range(0, n, run_every))}
    try:
        t0 = time.time()
        started = time.monotonic()
        await storm(store, "a", n, run_every, t0)
        figures["write_s"] = round(time.monotonic() - started, 1)
        figures["rows_before"] = await retention.count_rows(store)
        figures["before"] = await sizes(dsn)

        policy = retention.Policy(occurrences=7 * DAY, runs=90 * DAY)
        deleted = dict.fromkeys(TABLES, 0)
        passes = 0
        started = time.monotonic()
        while True:
            result = await retention.prune(store, policy, now=t0 + 91 * DAY)
            passes += 1
            for table, k in result.deleted.items():
                deleted[table] += k
            if not result.more:
                break
        figures["prune_s"] = round(time.monotonic() - started, 2)
        figures["passes"] = passes
        figures["deleted"] = deleted
        figures["pruned"] = await sizes(dsn)
        await common.pg_exec("VACUUM " + ", ".join(TABLES), dsn=dsn)
        figures["vacuumed"] = await sizes(dsn)
        figures["vacuumed_index_bytes"] = await sizes(dsn, "pg_indexes_size")
    finally:
        await store.close()
    return figures


def mb(n: int) -> str:
    return f"{n / 1e6:8.1f}"


def text(f: dict[str, Any]) -> str:
    cols = ("before", "pruned", "vacuumed")
    lines = [
        f"{f['alerts']:,} alerts, {f['runs']:,} runs (4 steps, 2 pages each; an approval"
        f" in 10); written in {f['write_s']} s",
        f"pruned in {f['prune_s']} s over {f['passes']} passes: "
        + ", ".join(f"{t} {k:,}" for t, k in f["deleted"].items()),
        "",
        f"{'MB':<12}" + "".join(f"{c:>12}" for c in cols),
    ]
    for table in (*TABLES, "total"):
        lines.append(f"{table:<12}" + "".join(f"{mb(f[c][table]):>12}" for c in cols))
    lines += [
        "",
        f"state-store bytes per {f['alerts']:,} alerts: {mb(f['before']['total']).strip()} MB"
        f" before retention, {mb(f['pruned']['total']).strip()} MB right after it,"
        f" {mb(f['vacuumed']['total']).strip()} MB once vacuumed (of which"
        f" {mb(f['vacuumed_index_bytes']['total']).strip()} MB indexes: VACUUM frees their"
        " pages for reuse but keeps the files)",
    ]
    heap_left = f["vacuumed"]["total"] - f["vacuumed_index_bytes"]["total"]
    if heap_left > f["before"]["total"] / 10:
        lines.append(
            f"warning: {mb(heap_left).strip()} MB of table pages survived VACUUM: a session"
            " elsewhere on the server held an older snapshot; run again on a quiet server"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench/retention.py", description=__doc__.splitlines()[0])
    p.add_argument("--alerts", type=int, default=100_000)
    p.add_argument("--run-every", type=int, default=10, help="one run per N alerts")
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args(argv)
    problem = common.pg_reachable()
    if problem:
        print(f"PostgreSQL not reachable: {problem}", file=sys.stderr)
        return 1
    schema = common.new_schema("bench_retention")
    try:
        figures = asyncio.run(bench(common.with_search_path(common.PG_DSN, schema), args.alerts,
                                    args.run_every))  # fmt: skip
    finally:
        common.drop_schema(schema)
    print(text(figures))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_bytes(orjson.dumps(figures, option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
