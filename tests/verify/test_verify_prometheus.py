"""Verification of a mitigation against a real Prometheus (Debian 2.42).

The test runbook (tests/engine/_testbook.py) throttles a knob in a real Postgres
table; the rule's ``verify`` asks Prometheus whether ``verify_probe``, a gauge the
test serves and Prometheus scrapes every second, shows recovery. The engine runs on a
Postgres state store with a capture pager, driven pass by pass as the daemon's
maintenance loop would.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

import httpx
import pytest

from remediator.clients.database import TargetDatabase
from remediator.clients.prometheus import PrometheusClient
from remediator.engine.verify import holds
from remediator.errors import TargetUnavailable
from remediator.runbook_api.context import Clients
from remediator.state.backend import Row
from remediator.testing import Harness, make_alert, resolved
from tests.engine import _testbook
from tests.engine.conftest import knobs
from tests.verify.conftest import Exporter, PrometheusServer

ALERT = make_alert("TestAlert", {"service": "checkout", "severity": "page"})
QUERY = "max(verify_probe) == 1"
THROTTLED = {"throttle": 1, "replicas": 3, "other": 7}
UNTOUCHED = {"throttle": 0, "replicas": 3, "other": 7}


def rules(within: str, on_failure: str = "page", query: str = QUERY) -> str:
    return _testbook.rules(
        verify=f"{{query: '{query}', within: {within}, on_failure: {on_failure}}}"
    )


def harness(
    rules_yaml: str, db: TargetDatabase, state: str, prometheus_url: str, **kw: Any
) -> Harness:
    settings = {
        # corroborate off: the test's alert is not one Prometheus evaluates (ALERTS).
        "targets": {"prometheus": {"url": prometheus_url, "corroborate": False, "timeout": "2s"}},
        "engine": {"lease": "10s"},
    }
    return Harness(
        _testbook.registry(), rules_yaml, clients=Clients(database=db), state_url=state,
        settings=settings, **kw,
    )  # fmt: skip


async def until_verified(h: Harness, run_id: str, timeout: float = 60.0) -> Row:
    """Maintenance passes, as the daemon makes them, until the verification concludes."""
    deadline = time.monotonic() + timeout
    while True:
        await h.maintenance()
        rows = await h.steps(run_id, "verify")
        if rows and rows[0]["state"] == "done":
            return rows[0]
        assert time.monotonic() < deadline, f"verification did not conclude: {rows}"
        await asyncio.sleep(0.3)


async def scraped(prometheus: PrometheusServer, value: float) -> None:
    """Prometheus has the exporter's current value (the next query sees it)."""
    async with httpx.AsyncClient(timeout=2.0) as client:
        for _ in range(100):
            r = await client.get(f"{prometheus.url}/api/v1/query", params={"query": "verify_probe"})
            result = r.json()["data"]["result"]
            if result and float(result[0]["value"][1]) == value:
                return
            await asyncio.sleep(0.2)
    raise AssertionError(f"Prometheus never scraped verify_probe = {value}")


def verifications(h: Harness) -> Mapping[str, float]:
    """The counter's samples (a harness does not prime series: absent is 0)."""
    get = h.metrics.registry.get_sample_value
    return {
        o: get("remediator_verifications_total", {"runbook": "RB-T", "outcome": o}) or 0.0
        for o in ("held", "failed", "no_data")
    }


def outcome(row: Row) -> str:
    result: str = row["result"]["data"]["outcome"]
    return result


async def test_mitigation_that_recovers_the_metric_is_held(
    exporter: Exporter, prometheus: PrometheusServer, target_db: TargetDatabase,
    pg_schema_dsn: str,
) -> None:  # fmt: skip
    exporter.set(0)
    await scraped(prometheus, 0)
    async with harness(rules("30s", "undo"), target_db, pg_schema_dsn, prometheus.url) as h:
        await h.deliver(ALERT)
        [run] = await h.runs()
        assert run["verify_at"] is not None  # scheduled with the hand-over
        assert await knobs(target_db) == THROTTLED
        await h.maintenance()
        [pending] = await h.steps(run["id"], "verify")
        assert pending["state"] == "waiting"
        assert pending["result"]["data"]["last_value"] == "0 (not == 1)"
        exporter.set(1)  # the mitigation worked
        row = await until_verified(h, run["id"])
        assert outcome(row) == "held"
        assert (row["kind"], row["outcome"], row["rendered"]) == ("verify", "applied", QUERY)
        assert row["result"]["data"]["last_value"] == "1"
        assert row["result"]["summary"].startswith(f"held: {QUERY} is true (1)")
        assert verifications(h) == {"held": 1.0, "failed": 0.0, "no_data": 0.0}
        assert await knobs(target_db) == THROTTLED  # held: nothing undone
        assert (await h.store.get_run(run["id"]))["verify_at"] is None
        assert len(h.pager.triggers()) == 1  # only the run's own page

        # The resolve page says the mitigation held.
        await h.deliver(resolved(ALERT))
        [page] = h.pager.resolves()
        assert any(d.startswith(f"Verification held: {QUERY} is true") for d in page.content.done)


async def test_mitigation_that_does_not_hold_pages_and_undoes_through_the_gate(
    exporter: Exporter, prometheus: PrometheusServer, target_db: TargetDatabase,
    pg_schema_dsn: str,
) -> None:  # fmt: skip
    exporter.set(0)
    await scraped(prometheus, 0)
    query = "max(verify_probe)"  # a bare value: 0 is false, and the page shows it
    async with harness(rules("4s", "undo", query), target_db, pg_schema_dsn, prometheus.url) as h:
        await h.deliver(ALERT)
        [run] = await h.runs()
        assert await knobs(target_db) == THROTTLED
        row = await until_verified(h, run["id"])
        assert outcome(row) == "failed"
        assert row["outcome"] == "failed"
        assert row["result"]["data"]["last_value"] == "0"
        assert verifications(h) == {"held": 0.0, "failed": 1.0, "no_data": 0.0}
        # Undone through the gate: an undo step row, the target row restored.
        assert await knobs(target_db) == UNTOUCHED
        [undo] = await h.steps(run["id"], "undo")
        assert (undo["name"], undo["outcome"]) == ("throttle", "rolled_back")
        run = await h.store.get_run(run["id"])
        assert (run["undo_reason"], run["undo_state"], run["state"]) == (
            "verify_failed", "done", "done",
        )  # fmt: skip
        await h.flush_pages()
        titles = [p.content.title for p in h.pager.triggers()]
        assert len(titles) == 3, titles  # the run, did-not-hold, undone
        [failed] = [p.content for p in h.pager.triggers() if "did not hold: max" in p.content.title]
        assert f"mitigation did not hold: {query} was not true within 4 s, last value 0" in (
            failed.title
        )
        assert "temporary changes will be undone (on_failure: undo)" in failed.title
        assert failed.dedup_key == f"remediator/{run['id']}"
        assert any(
            x.startswith(f"Verification did not hold: {query} was never true; last value 0")
            for x in failed.left_for_human
        )
        [undone] = [
            p.content for p in h.pager.triggers() if "mitigations undone" in p.content.title
        ]
        assert any(d.startswith("Throttle [undo]: throttle back to 0") for d in undone.done)


async def test_a_comparison_that_holds_at_zero_is_held(
    exporter: Exporter, prometheus: PrometheusServer, target_db: TargetDatabase,
    pg_schema_dsn: str,
) -> None:  # fmt: skip
    """DESIGN's own example, ``max(pack_build_duration_seconds) < 600``: the gauge is 0
    once the build is done, and Prometheus answers the filter with ``{} 0``. That is
    the recovery, so held, not failed (nor undone)."""
    query = "max(verify_probe) < 600"
    exporter.set(900)
    await scraped(prometheus, 900)
    async with harness(rules("30s", "undo", query), target_db, pg_schema_dsn, prometheus.url) as h:
        await h.deliver(ALERT)
        [run] = await h.runs()
        await h.maintenance()
        [pending] = await h.steps(run["id"], "verify")
        assert pending["state"] == "waiting"
        assert pending["result"]["data"]["last_value"] == "900 (not < 600)"
        exporter.set(0)  # the build finished: idle
        row = await until_verified(h, run["id"])
        assert outcome(row) == "held"
        assert row["result"]["data"]["last_value"] == "0"
        assert verifications(h) == {"held": 1.0, "failed": 0.0, "no_data": 0.0}
        assert await knobs(target_db) == THROTTLED
        assert await h.steps(run["id"], "undo") == []


async def test_failed_verification_with_on_failure_page_only_pages(
    exporter: Exporter, prometheus: PrometheusServer, target_db: TargetDatabase,
    pg_schema_dsn: str,
) -> None:  # fmt: skip
    exporter.set(0)
    await scraped(prometheus, 0)
    async with harness(rules("3s", "page"), target_db, pg_schema_dsn, prometheus.url) as h:
        await h.deliver(ALERT)
        [run] = await h.runs()
        row = await until_verified(h, run["id"])
        assert outcome(row) == "failed"
        # The comparison filtered every series out: its left side says what failed.
        assert row["result"]["data"]["last_value"] == "0 (not == 1)"
        await h.maintenance()
        assert await knobs(target_db) == THROTTLED
        assert await h.steps(run["id"], "undo") == []
        [_, failed] = h.pager.triggers()
        assert "mitigation did not hold" in failed.content.title
        assert "nothing was undone (on_failure: page)" in failed.content.title
        assert f"{QUERY} was not true within 3 s, last value 0 (not == 1)" in failed.content.title
        assert verifications(h) == {"held": 0.0, "failed": 1.0, "no_data": 0.0}

        # The resolve undoes as usual, and its page says, with what was done, that the
        # mitigation had not held.
        await h.deliver(resolved(ALERT))
        assert await knobs(target_db) == UNTOUCHED
        [page] = h.pager.resolves()
        assert any(
            w.startswith(f"Verification did not hold: {QUERY} was never true")
            for w in page.content.done
        ), page.content


async def test_prometheus_down_is_no_data_pages_and_never_undoes(
    exporter: Exporter, prometheus: PrometheusServer, target_db: TargetDatabase,
    pg_schema_dsn: str,
) -> None:  # fmt: skip
    exporter.set(0)
    prometheus.service.stop()  # the witness is down for the whole window
    async with harness(rules("3s", "undo"), target_db, pg_schema_dsn, prometheus.url) as h:
        await h.deliver(ALERT)
        [run] = await h.runs()
        row = await until_verified(h, run["id"])
        assert outcome(row) == "no_data"
        data = row["result"]["data"]
        assert data["answered"] is False and "/api/v1/query" in data["last_error"]
        assert data["polls"] >= 2  # asked again until the window closed
        await h.maintenance()
        assert await knobs(target_db) == THROTTLED  # on_failure: undo, but no evidence
        assert await h.steps(run["id"], "undo") == []
        [_, page] = h.pager.triggers()
        assert page.content.title.startswith("[RB-T] TestAlert: mitigation not verified: no answer")
        assert "nothing was undone" in page.content.title
        assert verifications(h) == {"held": 0.0, "failed": 0.0, "no_data": 1.0}

        # The resolve's page says the mitigation was never verified.
        await h.deliver(resolved(ALERT))
        [resolve_page] = h.pager.resolves()
        assert any(
            w.startswith(f"Verification no_data: {QUERY} could not be checked: no answer")
            for w in resolve_page.content.done
        ), resolve_page.content


async def test_prometheus_down_after_an_early_answer_is_no_data_and_never_undoes(
    exporter: Exporter, prometheus: PrometheusServer, target_db: TargetDatabase,
    pg_schema_dsn: str,
) -> None:  # fmt: skip
    """Prometheus says "not yet" at the first poll, right after the mitigation, then
    goes down for the rest of the window: that early answer is no evidence that the
    mitigation did not hold, so no undo (on_failure: undo), only a page."""
    exporter.set(0)
    await scraped(prometheus, 0)
    async with harness(rules("4s", "undo"), target_db, pg_schema_dsn, prometheus.url) as h:
        await h.deliver(ALERT)
        [run] = await h.runs()
        await h.maintenance()
        [pending] = await h.steps(run["id"], "verify")
        assert pending["state"] == "waiting"
        assert pending["result"]["data"]["answered"] is True  # it did answer: false
        prometheus.service.stop()
        row = await until_verified(h, run["id"])
        assert outcome(row) == "no_data"
        data = row["result"]["data"]
        assert data["answered"] is True and data["answered_last"] is False
        await h.maintenance()
        assert await knobs(target_db) == THROTTLED
        assert await h.steps(run["id"], "undo") == []
        [_, page] = h.pager.triggers()
        assert page.content.title.startswith(
            "[RB-T] TestAlert: mitigation not verified: no answer from Prometheus since it"
            " answered 0 (not == 1)"
        ), page.content.title
        assert "nothing was undone" in page.content.title
        assert verifications(h) == {"held": 0.0, "failed": 0.0, "no_data": 1.0}


async def test_kill_switch_holds_the_verification_undo_until_resume(
    exporter: Exporter, prometheus: PrometheusServer, target_db: TargetDatabase,
    pg_schema_dsn: str,
) -> None:  # fmt: skip
    exporter.set(0)
    await scraped(prometheus, 0)
    async with harness(rules("3s", "undo"), target_db, pg_schema_dsn, prometheus.url) as h:
        await h.deliver(ALERT)
        [run] = await h.runs()
        await h.engine.set_paused(True, "test-operator")
        row = await until_verified(h, run["id"])  # polls only read: they go on
        assert outcome(row) == "failed"
        for _ in range(3):
            await h.maintenance()
        assert await knobs(target_db) == THROTTLED  # nothing mutates while paused
        assert await h.steps(run["id"], "undo") == []
        waiting = await h.store.get_run(run["id"])
        assert (waiting["state"], waiting["undo_state"], waiting["undo_reason"]) == (
            "waiting", "requested", "verify_failed",
        )  # fmt: skip
        await h.engine.set_paused(False, "test-operator")
        await h.maintenance()
        assert await knobs(target_db) == UNTOUCHED
        [undo] = await h.steps(run["id"], "undo")
        assert undo["outcome"] == "rolled_back"
        assert verifications(h)["failed"] == 1.0


async def test_a_restarted_or_other_replica_continues_the_verification(
    exporter: Exporter, prometheus: PrometheusServer, target_db: TargetDatabase,
    pg_schema_dsn: str,
) -> None:  # fmt: skip
    """The schedule is in the state store: the replica that acted goes away after one
    poll, and another one, started later, concludes."""
    exporter.set(0)
    await scraped(prometheus, 0)
    yaml_rules = rules("30s", "page")
    async with harness(yaml_rules, target_db, pg_schema_dsn, prometheus.url, owner="a") as a:
        await a.deliver(ALERT)
        [run] = await a.runs()
        await a.maintenance()
        [pending] = await a.steps(run["id"], "verify")
        assert pending["state"] == "waiting" and pending["attempts"] == 1
    exporter.set(1)
    async with harness(yaml_rules, target_db, pg_schema_dsn, prometheus.url, owner="b") as b:
        row = await until_verified(b, run["id"])
        assert outcome(row) == "held"
        assert row["attempts"] >= 2
        assert verifications(b)["held"] == 1.0


async def test_dry_run_is_not_verified(
    prometheus: PrometheusServer, target_db: TargetDatabase, pg_schema_dsn: str
) -> None:
    """Nothing was applied, so there is no mitigation to verify (and no page)."""
    async with harness(
        _testbook.rules(mode="dry-run", verify=f"{{query: '{QUERY}', within: 2s}}"),
        target_db, pg_schema_dsn, prometheus.url,
    ) as h:  # fmt: skip
        await h.deliver(ALERT)
        [run] = await h.runs()
        assert run["verify_at"] is None
        await h.maintenance()
        assert await h.steps(run["id"], "verify") == []


async def test_instant_reading_of_scalars_vectors_and_filters(
    prometheus: PrometheusServer,
) -> None:
    client = PrometheusClient(prometheus.url, timeout=2.0)
    try:
        cases = {
            "1": (True, "1"),
            "0": (False, "0"),
            "vector(2) > 1": (True, "2"),
            "vector(0) > 1": (False, "no series (empty result)"),
            "vector(0.05) < bool 0.1": (True, "1"),
            'label_replace(vector(3), "provider", "polygon", "", "")': (
                True, '{provider="polygon"} 3',
            ),
        }  # fmt: skip
        for query, (true, value) in cases.items():
            reading = await client.instant(query)
            assert (reading.true, reading.value) == (true, value), query
    finally:
        await client.aclose()


async def test_a_filter_that_keeps_a_zero_holds_and_a_bool_zero_does_not(
    prometheus: PrometheusServer,
) -> None:
    client = PrometheusClient(prometheus.url, timeout=2.0)
    try:
        cases = {
            "vector(0) < 600": True,  # a filter: the series is there, so it holds
            "max(vector(0)) == 0": True,
            "vector(900) < 600": False,  # filtered out: empty
            "vector(0) < bool 600": True,  # bool: 1
            "vector(900) < bool 600": False,  # bool: 0 is false
            "vector(0)": False,  # a bare value: 0 is false
        }
        for query, want in cases.items():
            assert holds(query, await client.instant(query)) is want, query
    finally:
        await client.aclose()


async def test_a_resolve_page_shows_a_verification_still_pending(
    exporter: Exporter, prometheus: PrometheusServer, target_db: TargetDatabase,
    pg_schema_dsn: str,
) -> None:  # fmt: skip
    exporter.set(0)
    await scraped(prometheus, 0)
    async with harness(rules("60s", "undo"), target_db, pg_schema_dsn, prometheus.url) as h:
        await h.deliver(ALERT)
        [run] = await h.runs()
        await h.maintenance()
        assert [r["state"] for r in await h.steps(run["id"], "verify")] == ["waiting"]
        await h.deliver(resolved(ALERT))
        assert await knobs(target_db) == UNTOUCHED  # the resolve's own undo
        [page] = h.pager.resolves()
        assert any(
            d == f"Verification pending: {QUERY} not true yet (0 (not == 1)); 1 poll(s) so far"
            for d in page.content.done
        ), page.content.done


async def test_a_verification_that_ends_after_the_resolve_is_recorded_not_paged(
    exporter: Exporter, prometheus: PrometheusServer, target_db: TargetDatabase,
    pg_schema_dsn: str,
) -> None:  # fmt: skip
    """The alert resolved (and its mitigation was undone) before the window ended:
    the outcome goes to the audit trail and the counter, but no page reopens the
    resolved incident to announce an undo that is already done."""
    exporter.set(0)
    await scraped(prometheus, 0)
    async with harness(rules("4s", "undo"), target_db, pg_schema_dsn, prometheus.url) as h:
        await h.deliver(ALERT)
        [run] = await h.runs()
        await h.maintenance()
        await h.deliver(resolved(ALERT))
        assert await knobs(target_db) == UNTOUCHED
        row = await until_verified(h, run["id"])
        assert outcome(row) == "failed"
        for _ in range(3):
            await h.maintenance()
        await h.flush_pages()
        assert [p.action for p in h.pager.sent] == ["trigger", "resolve"]
        assert len(await h.steps(run["id"], "undo")) == 1  # the resolve's, only
        done = await h.store.get_run(run["id"])
        assert (done.undo_state, done.undo_reason) == ("done", "resolved")
        assert verifications(h) == {"held": 0.0, "failed": 1.0, "no_data": 0.0}


async def test_without_targets_prometheus_every_verification_is_no_data(
    target_db: TargetDatabase,
) -> None:
    """On the embedded SQLite state store (the other tests use Postgres)."""
    async with Harness(
        _testbook.registry(), rules("10m", "undo"), clients=Clients(database=target_db)
    ) as h:
        await h.deliver(ALERT)
        [run] = await h.runs()
        row = await until_verified(h, run["id"])  # at once: nothing could ever answer
        assert outcome(row) == "no_data"
        assert row["result"]["data"]["last_error"] == "targets.prometheus is not configured"
        assert await knobs(target_db) == THROTTLED
        [_, page] = h.pager.triggers()
        assert "mitigation not verified: no answer from Prometheus (targets.prometheus is not" in (
            page.content.title
        )
        assert verifications(h)["no_data"] == 1.0


async def test_shipped_verify_queries_are_valid_promql_on_the_alert_rules_metrics(
    prometheus: PrometheusServer,
) -> None:
    """Every shipped verify query, rendered with an alert's labels, is accepted by
    Prometheus, and names only metrics the shipped alert rules use."""
    import re
    from pathlib import Path

    from remediator.engine import rules as rules_mod
    from remediator.engine.verify import render_query
    from remediator.runbook_api.registry import load_entry_points

    root = Path(__file__).parents[2]
    ruleset, errors = rules_mod.load(root / "rules", load_entry_points())
    assert ruleset is not None, errors
    alert_rules = (root / "deploy" / "prometheus" / "dawsos-alerts.yml").read_text()
    verified = {r.runbook for r in ruleset.rules if r.verify is not None}
    assert verified == {"RB-01", "RB-02", "RB-03"}
    client = PrometheusClient(prometheus.url, timeout=2.0)
    try:
        with pytest.raises(TargetUnavailable):  # the check below is real
            await client.instant("max(dawsos_pricing_pack_fresh")
        for rule in ruleset.rules:
            if rule.verify is None:
                continue
            query = render_query(rule.verify.query, {"provider": "polygon"})
            assert "{{" not in query
            await client.instant(query)  # a PromQL error is HTTP 400: TargetUnavailable
            for name in re.findall(r"\b(?:dawsos[a-z_:]*|pack_[a-z_]+)\b", query):
                assert name in alert_rules, (rule.name, name)
    finally:
        await client.aclose()
