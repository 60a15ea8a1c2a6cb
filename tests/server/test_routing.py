"""Occurrences no rule wants are journaled already done and never reach a worker."""

from __future__ import annotations

from pathlib import Path

import httpx

from remediator.metrics import Metrics
from remediator.models import Occurrence
from remediator.runbook_api.registry import load_entry_points
from remediator.state.journal import JournalWriter
from remediator.state.store import StateStore
from remediator.testing import make_alert, make_payload, resolved
from tests.helpers import running_daemon

RULES = """\
rules:
  - name: wanted
    matchers: ['alertname="Wanted"']
    runbook: RB-01
"""


def config(state_url: str, tmp_path: Path, rules: str) -> dict[str, object]:
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir(exist_ok=True)
    (rules_dir / "rules.yaml").write_text(rules)
    return {"state": state_url, "rules": str(rules_dir)}


async def journal(state_url: str) -> dict[str, dict[str, object]]:
    """The journal rows by alertname/status, and what a worker could claim now."""
    store = await StateStore.open(state_url)
    try:
        rows = await store.list_occurrences(100)
        claimable = await store.claim_occurrences("test-worker", 100, 30.0)
    finally:
        await store.close()
    out = {f"{r['alertname']}/{r['status']}": r for r in rows}
    for r in claimable:
        out[f"{r['alertname']}/{r['status']}"]["claimed"] = True
    return out


async def test_unmatched_firing_is_journaled_done_and_never_claimed(state_url, tmp_path):
    wanted = make_alert("Wanted", {"instance": "h1"})
    unwanted = make_alert("Unwanted", {"instance": "h1"})
    gone = resolved(make_alert("Unwanted", {"instance": "h2"}))
    body = make_payload(wanted, unwanted, gone)
    cfg = config(state_url, tmp_path, RULES)
    async with (
        running_daemon(cfg, registry=load_entry_points(), workers=False) as d,
        httpx.AsyncClient(base_url=d.url) as c,
    ):
        r = await c.post("/api/v1/alerts", json=body)
        assert r.status_code == 202
        assert r.json()["journaled"] == 3 and r.json()["duplicates"] == 0
        r = await c.post("/api/v1/alerts", json=body)  # a redelivery: all three are repeats
        assert r.status_code == 202
        assert r.json()["journaled"] == 0 and r.json()["duplicates"] == 3
        assert d.sample("remediator_alerts_deduplicated_total") == 3
        assert (
            d.sample("remediator_alerts_received_total", {"alertname": "other", "status": "firing"})
            == 2
        )
    rows = await journal(state_url)
    assert sorted(rows) == ["Unwanted/firing", "Unwanted/resolved", "Wanted/firing"]
    skipped = rows["Unwanted/firing"]
    assert skipped["state"] == "done"
    assert skipped["processed_at"] == skipped["received_at"]
    assert skipped["labels"] == unwanted["labels"]  # the row is otherwise complete
    assert "claimed" not in skipped
    # A matched alert waits for a worker; so does a resolve, whatever the rules say now:
    # a run started under an earlier rule set may need its undo.
    for key in ("Wanted/firing", "Unwanted/resolved"):
        assert rows[key]["state"] == "pending" and rows[key]["processed_at"] is None
        assert rows[key].get("claimed") is True


async def test_without_a_valid_rule_set_every_occurrence_waits_for_a_worker(state_url, tmp_path):
    cfg = config(state_url, tmp_path, "rules:\n  - name: broken\n")
    async with (
        running_daemon(cfg, registry=load_entry_points(), workers=False) as d,
        httpx.AsyncClient(base_url=d.url) as c,
    ):
        assert d.daemon.ruleset is None
        r = await c.post("/api/v1/alerts", json=make_payload(make_alert("Unwanted")))
        assert r.status_code == 202 and r.json()["journaled"] == 1
    rows = await journal(state_url)
    assert rows["Unwanted/firing"]["state"] == "pending"
    assert rows["Unwanted/firing"].get("claimed") is True


async def test_journal_wakes_the_workers_only_for_new_pending_rows(tmp_path):
    store = await StateStore.open(f"sqlite:///{tmp_path}/state.db")
    wakes: list[int] = []
    writer = JournalWriter(store, Metrics(), on_commit=lambda names: wakes.append(len(names)))
    writer.start()

    def occ(fingerprint: str, pending: bool) -> Occurrence:
        return Occurrence(
            fingerprint, "2026-11-28T00:09:04.123Z", "firing", "A", {"alertname": "A"},
            {}, "0001-01-01T00:00:00Z", "", "{}", 1.0, pending,
        )  # fmt: skip

    try:
        assert await writer.append([occ("a1", pending=False)]) == [True]
        assert wakes == []
        assert await writer.append([occ("a2", pending=True)]) == [True]
        assert wakes == [1]
        assert await writer.append([occ("a2", pending=True)]) == [False]  # a repeat
        assert wakes == [1]
    finally:
        await writer.close()
        await store.close()
