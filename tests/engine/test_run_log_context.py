"""Every log line the engine writes about a run carries the run's context (its id,
rule, fingerprint and alertname), bound once per run instead of repeated per call."""

from __future__ import annotations

from structlog.testing import capture_logs

from remediator.runbook_api.context import Clients
from remediator.testing import Harness, make_alert, resolved
from tests.engine import _testbook

ALERT = make_alert("TestAlert", {"service": "checkout", "severity": "page"})
RUN_EVENTS = ("run_started", "run_fired", "run_undone")


async def test_a_runs_log_lines_carry_its_id_rule_fingerprint_and_alertname(
    clients: Clients,
) -> None:
    async with Harness(_testbook.registry(), _testbook.rules(), clients=clients) as h:
        with capture_logs() as logged:
            await h.deliver(ALERT)
            await h.deliver(resolved(ALERT))
        [run] = await h.runs()
    by_event = {e["event"]: e for e in logged if e["event"] in RUN_EVENTS}
    assert set(by_event) == set(RUN_EVENTS)
    for event in by_event.values():
        context = {k: event.get(k) for k in ("run_id", "rule", "fingerprint", "alertname")}
        assert context == {
            "run_id": run["id"],
            "rule": run["rule"],
            "fingerprint": run["fingerprint"],
            "alertname": "TestAlert",
        }, event
    assert by_event["run_started"]["mode"] == run["mode"]
    assert by_event["run_fired"]["outcome"] == "partial"  # an approval is pending
    assert by_event["run_undone"]["undone"] >= 1
