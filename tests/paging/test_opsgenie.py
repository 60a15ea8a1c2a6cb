"""Opsgenie: exact create/close requests, priority mapping, field limits, routing."""

from __future__ import annotations

import json

import pytest
import respx
from paging_samples import OG_KEY, OG_URL, make_event

from remediator.paging import Delivered, OpsgeniePager
from remediator.paging.text import utf8_len


async def test_trigger_creates_an_alert_with_the_exact_body(
    router: respx.MockRouter, opsgenie: OpsgeniePager
) -> None:
    route = router.post(f"{OG_URL}/v2/alerts").respond(
        202, json={"result": "Request will be processed", "requestId": "r1"}
    )

    result = await opsgenie.send(make_event("trigger"))

    assert result == Delivered(status=202)
    request = route.calls.last.request
    assert request.headers["authorization"] == f"GenieKey {OG_KEY}"
    body = json.loads(request.content)
    description = body.pop("description")
    assert body == {
        "message": "[RB-01] PricingPackBuildSlow: pack build is running for 14 min",
        "alias": "remediator/run-42",
        "details": {
            "runbook": "RB-01",
            "rule": "pricing-pack-build-slow",
            "mode": "live",
            "severity": "P1",
            "alertname": "PricingPackBuildSlow",
            "label.severity": "page",
            "detail.pack_id": "PP-2025-10-20",
            "detail.attempts": "2",
        },
        "priority": "P2",
        "source": "remediator",
        "tags": ["RB-01", "PricingPackBuildSlow"],
    }
    assert "Left for you\n- scale scheduler to 0: remediator approve 42" in description
    assert "Grafana: https://grafana.example/d/remediator" in description


async def test_resolve_closes_by_url_quoted_alias(
    router: respx.MockRouter, opsgenie: OpsgeniePager
) -> None:
    route = router.post(
        f"{OG_URL}/v2/alerts/remediator%2Frun-42/close", params={"identifierType": "alias"}
    ).respond(202, json={"result": "Request will be processed"})

    result = await opsgenie.send(make_event("resolve"))

    assert result == Delivered(status=202)
    request = route.calls.last.request
    assert request.url.raw_path == b"/v2/alerts/remediator%2Frun-42/close?identifierType=alias"
    assert request.headers["authorization"] == f"GenieKey {OG_KEY}"
    # What the resolve leaves to a human goes in the close's note.
    assert json.loads(request.content) == {
        "source": "remediator",
        "note": "The alert resolved. Left for you:\n- scale scheduler to 0: remediator approve 42",
    }


def test_priority_maps_p0_to_p1_down_to_p3_to_p4() -> None:
    pager = OpsgeniePager(OG_KEY)
    got = [pager.request(make_event(severity=s))[1]["priority"] for s in ("P0", "P1", "P2", "P3")]
    assert got == ["P1", "P2", "P3", "P4"]


def test_fields_are_cut_to_opsgenie_limits() -> None:
    event = make_event(
        title="t" * 500,
        dedup_key="k" * 600,
        done=tuple("d" * 900 for _ in range(200)),
        labels={f"label{i}": "v" * 500 for i in range(100)},
    )
    body = OpsgeniePager(OG_KEY).request(event)[1]
    assert len(body["message"]) <= 130 and body["message"].endswith("…")
    assert len(body["alias"]) <= 512
    assert utf8_len(body["description"]) <= 15_000
    assert sum(len(k) + len(v) for k, v in body["details"].items()) <= 8_000
    assert body["details"]["omitted"].endswith("more entries")
    assert all(isinstance(v, str) for v in body["details"].values())


async def test_trailing_slash_in_url_does_not_double(
    router: respx.MockRouter, pagers: list[object]
) -> None:
    route = router.post("https://api.eu.opsgenie.com/v2/alerts").respond(202)
    pager = OpsgeniePager(OG_KEY, "https://api.eu.opsgenie.com/")
    pagers.append(pager)
    assert await pager.send(make_event()) == Delivered(status=202)
    assert route.called


@pytest.mark.parametrize(
    ("mode", "banner"),
    [
        ("dry-run", "DRY-RUN: nothing was changed"),
        ("paused", "PAUSED by kill switch: nothing was changed"),
    ],
)
def test_dry_run_and_paused_alerts_carry_the_banner(mode: str, banner: str) -> None:
    body = OpsgeniePager(OG_KEY).request(make_event(mode=mode))[1]
    assert body["description"].startswith(banner + "\n")
    assert body["details"]["mode"] == mode


def test_accepts_p0_and_p1_by_default_and_can_be_configured() -> None:
    default = OpsgeniePager(OG_KEY)
    assert [default.accepts(s) for s in ("P0", "P1", "P2", "P3")] == [True, True, False, False]
    custom = OpsgeniePager(OG_KEY, severities=("P0", "P3"))
    assert [custom.accepts(s) for s in ("P0", "P1", "P2", "P3")] == [True, False, False, True]
