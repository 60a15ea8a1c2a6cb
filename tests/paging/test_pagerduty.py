"""PagerDuty Events v2: exact bodies, severity mapping, limits, routing, client ownership."""

from __future__ import annotations

import json

import httpx
import pytest
import respx
from paging_samples import PD_KEY, PD_URL, make_event

from remediator.clients.http_post import HttpPoster
from remediator.errors import ConfigError
from remediator.paging import Delivered, PagerDutyPager
from remediator.paging.text import utf8_len


async def test_trigger_sends_the_exact_events_v2_body(
    router: respx.MockRouter, pagerduty: PagerDutyPager
) -> None:
    route = router.post(PD_URL).respond(202, json={"status": "success"})

    result = await pagerduty.send(make_event("trigger"))

    assert result == Delivered(status=202)
    request = route.calls.last.request
    assert request.headers["content-type"] == "application/json"
    assert "authorization" not in request.headers
    assert json.loads(request.content) == {
        "routing_key": PD_KEY,
        "event_action": "trigger",
        "dedup_key": "remediator/run-42",
        "payload": {
            "summary": "[RB-01] PricingPackBuildSlow: pack build is running for 14 min",
            "source": "remediator",
            "severity": "error",
            "timestamp": "2026-11-28T00:09:04.123456+00:00",
            "component": "RB-01",
            "group": "PricingPackBuildSlow",
            "class": "pricing-pack-build-slow",
            "custom_details": {
                "done": ["serve_last_good_pack: applied (marked PP-2025-10-20 fresh)"],
                "skipped": ["rerun_build: skipped (providers unhealthy)"],
                "left_for_human": ["scale scheduler to 0: remediator approve 42"],
                "mode": "live",
                "labels": {"alertname": "PricingPackBuildSlow", "severity": "page"},
                "details": {"pack_id": "PP-2025-10-20", "attempts": 2},
            },
        },
        "links": [
            {"href": "https://runbooks.example/RB-01", "text": "Runbook"},
            {"href": "https://grafana.example/d/remediator", "text": "Grafana"},
            {"href": "http://prom.example/graph?g0.expr=x", "text": "Alert"},
        ],
    }


async def test_resolve_sends_only_routing_key_action_and_dedup_key(
    router: respx.MockRouter, pagerduty: PagerDutyPager
) -> None:
    route = router.post(PD_URL).respond(202, json={"status": "success"})

    # Nothing left for a human at this resolve: one bare resolve event.
    result = await pagerduty.send(make_event("resolve", left_for_human=()))

    assert result == Delivered(status=202)
    assert route.call_count == 1
    assert json.loads(route.calls.last.request.content) == {
        "routing_key": PD_KEY,
        "event_action": "resolve",
        "dedup_key": "remediator/run-42",
    }


@pytest.mark.parametrize(
    ("severity", "expected"),
    [("P0", "critical"), ("P1", "error"), ("P2", "warning"), ("P3", "info")],
)
def test_severity_maps_to_pagerduty_levels(severity: str, expected: str) -> None:
    body = PagerDutyPager(PD_KEY).body(make_event(severity=severity))
    assert body["payload"]["severity"] == expected


def test_empty_generator_url_is_left_out_of_links() -> None:
    event = make_event(links=(("Runbook", "https://runbooks.example/RB-01"), ("Alert", "")))
    body = PagerDutyPager(PD_KEY).body(event)
    assert body["links"] == [{"href": "https://runbooks.example/RB-01", "text": "Runbook"}]


def test_summary_is_cut_to_1024_with_an_ellipsis() -> None:
    body = PagerDutyPager(PD_KEY).body(make_event(title="é" * 2000))
    summary = body["payload"]["summary"]
    assert utf8_len(summary) <= 1024
    assert summary.endswith("…")
    assert summary.rstrip("…") == "é" * len(summary.rstrip("…"))


def test_dry_run_summary_says_nothing_was_changed() -> None:
    body = PagerDutyPager(PD_KEY).body(make_event(mode="dry-run"))
    assert body["payload"]["summary"].startswith("[DRY-RUN] ")
    assert body["payload"]["custom_details"]["mode"] == "dry-run"


def test_long_dedup_key_is_shortened_to_255_and_same_for_trigger_and_resolve() -> None:
    pager = PagerDutyPager(PD_KEY)
    key = "remediator/" + "x" * 400
    trigger = pager.body(make_event("trigger", dedup_key=key))["dedup_key"]
    resolve = pager.body(make_event("resolve", dedup_key=key))["dedup_key"]
    other = pager.body(make_event("trigger", dedup_key=key + "y"))["dedup_key"]
    assert len(trigger) <= 255
    assert trigger == resolve
    assert trigger != other


def test_long_lists_are_capped_and_say_how_many_more() -> None:
    done = tuple(f"step {i}: applied" for i in range(80))
    body = PagerDutyPager(PD_KEY).body(make_event(done=done))
    shown = body["payload"]["custom_details"]["done"]
    assert shown[:50] == list(done[:50])
    assert shown[-1] == "... and 30 more"


def test_huge_page_still_fits_in_512_kb_and_keeps_the_approve_command() -> None:
    big = "y" * 900
    event = make_event(
        done=tuple(f"{i} {big}" for i in range(5000)),
        skipped=tuple(f"{i} {big}" for i in range(5000)),
        left_for_human=("failover: remediator approve 7", *(f"{i} {big}" for i in range(5000))),
        details={f"k{i}": big for i in range(2000)},
    )
    body = PagerDutyPager(PD_KEY).body(event)
    encoded = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    assert len(encoded) <= 512 * 1024
    assert (
        body["payload"]["custom_details"]["left_for_human"][0] == "failover: remediator approve 7"
    )


def test_accepts_p0_and_p1_by_default_and_can_be_configured() -> None:
    default = PagerDutyPager(PD_KEY)
    assert [default.accepts(s) for s in ("P0", "P1", "P2", "P3")] == [True, True, False, False]
    custom = PagerDutyPager(PD_KEY, severities=("P2",))
    assert [custom.accepts(s) for s in ("P0", "P1", "P2", "P3")] == [False, False, True, False]


def test_bad_configuration_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="routing_key"):
        PagerDutyPager("")
    with pytest.raises(ConfigError, match="severities"):
        PagerDutyPager(PD_KEY, severities=("P9",))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="url"):
        PagerDutyPager(PD_KEY, "ftp://events.pagerduty.com/v2/enqueue")


async def test_custom_url_is_used(router: respx.MockRouter, pagers: list[object]) -> None:
    route = router.post("http://127.0.0.1:9/pd").respond(202)
    pager = PagerDutyPager(PD_KEY, "http://127.0.0.1:9/pd")
    pagers.append(pager)
    assert await pager.send(make_event()) == Delivered(status=202)
    assert route.called


async def test_a_given_client_is_used_and_left_open(router: respx.MockRouter) -> None:
    route = router.post(PD_URL).respond(202)
    async with httpx.AsyncClient() as client:
        pager = PagerDutyPager(PD_KEY, client=HttpPoster(client))
        await pager.send(make_event())
        await pager.aclose()
        assert not client.is_closed
        assert route.called


async def test_an_own_client_is_closed_by_aclose(router: respx.MockRouter) -> None:
    router.post(PD_URL).respond(202)
    pager = PagerDutyPager(PD_KEY)
    await pager.send(make_event())
    client = pager._http._client
    assert client is not None and not client.is_closed
    await pager.aclose()
    assert client.is_closed


async def test_send_after_aclose_is_a_caller_bug() -> None:
    pager = PagerDutyPager(PD_KEY)
    await pager.aclose()
    with pytest.raises(RuntimeError, match="after aclose"):
        await pager.send(make_event())
