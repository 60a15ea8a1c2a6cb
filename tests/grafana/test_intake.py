"""Grafana Alerting's webhook payload (version "1") at POST /api/v1/alerts.

Same door as Alertmanager's: same auth, body limits, label bounds, the same
occurrence key (fingerprint, startsAt in canonical UTC, status) and the same dedupe.
Bad bodies are a 4xx and journal nothing. Each test runs on SQLite and Postgres.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from remediator.grafana_payload import labels_fingerprint
from remediator.state.store import StateStore
from tests.grafana.payloads import alert, documented, payload
from tests.helpers import running_daemon

TOKEN = "grafana-contact-point-token-0123"
AM_FIXTURES = Path(__file__).parent.parent / "fixtures" / "alertmanager-0.25"
LABELS = {"alertname": "ProviderErrorRateHigh", "service": "dawsos", "provider": "polygon"}


def config(state_url: str, tmp_path: Path, **extra: object) -> dict[str, object]:
    rules = tmp_path / "rules"
    rules.mkdir(exist_ok=True)
    return {"state": state_url, "rules": str(rules), "auth": {"webhook_tokens": [TOKEN]}, **extra}


async def journal(state_url: str) -> list[dict[str, Any]]:
    store = await StateStore.open(state_url)
    try:
        return sorted(await store.list_occurrences(1000), key=lambda r: r["id"])
    finally:
        await store.close()


async def post(c: httpx.AsyncClient, body: object) -> httpx.Response:
    return await c.post("/api/v1/alerts", json=body, headers={"Authorization": f"Bearer {TOKEN}"})


async def test_the_documented_firing_body_journals_each_alert_with_its_grafana_details(
    state_url: str, tmp_path: Path
) -> None:
    body = documented()
    async with (
        running_daemon(config(state_url, tmp_path), workers=False) as d,
        httpx.AsyncClient(base_url=d.url) as c,
    ):
        r = await post(c, body)
        assert r.status_code == 202, r.text
        assert r.json()["journaled"] == 2 and r.json()["duplicates"] == 0
    polygon, fmp = await journal(state_url)
    # +02:00 is taken off and the fraction kept: the same instant as Alertmanager's key.
    assert (polygon["fingerprint"], polygon["starts_at"], polygon["status"]) == (
        "5a1c0de8f1e2d3c4",
        "2021-10-12T07:51:03.157076Z",
        "firing",
    )
    assert fmp["starts_at"] == "2021-10-12T07:56:03.157076Z"
    assert polygon["source"] == fmp["source"] == "grafana"
    assert polygon["ends_at"] == "0001-01-01T00:00:00Z"
    assert polygon["alertname"] == "ProviderErrorRateHigh"
    assert polygon["labels"] == body["alerts"][0]["labels"]
    assert polygon["generator_url"] == body["alerts"][0]["generatorURL"]
    assert polygon["grafana"] == {
        "org_id": 1,
        "dashboard_url": "",
        "panel_url": "",
        "silence_url": body["alerts"][0]["silenceURL"],
        "values": {"B": 44.23943737541908, "C": 1.0},
        "value_string": "",
        "fingerprint_derived": False,
    }
    assert (
        fmp["grafana"]["dashboard_url"] == "https://grafana.dawsos.test/d/dawsos-providers?orgId=1"
    )
    assert fmp["grafana"]["panel_url"].endswith("viewPanel=3")


async def test_the_resolved_body_journals_resolves_under_the_same_fingerprints(
    state_url: str, tmp_path: Path
) -> None:
    async with (
        running_daemon(config(state_url, tmp_path), workers=False) as d,
        httpx.AsyncClient(base_url=d.url) as c,
    ):
        assert (await post(c, documented())).status_code == 202
        r = await post(c, documented("webhook-resolved.json"))
        assert r.status_code == 202 and r.json()["journaled"] == 2
    rows = await journal(state_url)
    keys = sorted((x["fingerprint"], x["starts_at"], x["status"]) for x in rows)
    assert keys == [
        ("5a1c0de8f1e2d3c4", "2021-10-12T07:51:03.157076Z", "firing"),
        ("5a1c0de8f1e2d3c4", "2021-10-12T07:51:03.157076Z", "resolved"),
        ("b07c4e11d9a06f52", "2021-10-12T07:56:03.157076Z", "firing"),
        ("b07c4e11d9a06f52", "2021-10-12T07:56:03.157076Z", "resolved"),
    ]
    ends = {x["fingerprint"]: x["ends_at"] for x in rows if x["status"] == "resolved"}
    assert ends == {
        "5a1c0de8f1e2d3c4": "2021-10-12T08:20:03.5Z",
        "b07c4e11d9a06f52": "2021-10-12T08:21:00Z",
    }


async def test_one_instant_written_with_any_offset_is_one_occurrence(
    state_url: str, tmp_path: Path
) -> None:
    """Grafana, a proxy and Alertmanager may write one startsAt differently; it is one
    key: the same alert at +02:00, at Z and at -05:30 is a duplicate, within one body
    and across bodies."""
    same = [
        "2022-01-01T12:00:00.5+02:00",
        "2022-01-01T10:00:00.500Z",
        "2022-01-01T04:30:00.5-05:30",
    ]
    async with (
        running_daemon(config(state_url, tmp_path), workers=False) as d,
        httpx.AsyncClient(base_url=d.url) as c,
    ):
        r = await post(c, payload([alert(LABELS, same[0], fingerprint="00aa11bb22cc33dd")]))
        assert r.json()["journaled"] == 1
        r = await post(
            c, payload([alert(LABELS, s, fingerprint="00aa11bb22cc33dd") for s in same[1:]])
        )
        assert r.status_code == 202 and r.json()["journaled"] == 0
        assert r.json()["duplicates"] == 2
        assert d.sample("remediator_alerts_deduplicated_total") == 2
    [row] = await journal(state_url)
    assert row["starts_at"] == "2022-01-01T10:00:00.5Z"


async def test_an_alertmanager_and_a_grafana_delivery_of_one_alert_share_a_key(
    state_url: str, tmp_path: Path
) -> None:
    """A label set routed through both (Grafana's Alertmanager forwarding to
    Alertmanager's webhook, say) is journaled once: the keys do not depend on the shape."""
    am = json.loads((AM_FIXTURES / "firing.json").read_text())
    first = am["alerts"][0]
    # Grafana sends no fingerprint here: the derived one is Alertmanager's own.
    g = alert(first["labels"], first["startsAt"].replace("Z", "+00:00"))
    async with (
        running_daemon(config(state_url, tmp_path), workers=False) as d,
        httpx.AsyncClient(base_url=d.url) as c,
    ):
        assert (await post(c, am)).json()["journaled"] == len(am["alerts"])
        r = await post(c, payload([g]))
        assert r.status_code == 202 and r.json() == {**r.json(), "journaled": 0, "duplicates": 1}


def test_a_derived_fingerprint_is_alertmanagers_label_fingerprint() -> None:
    """Checked against fingerprints Alertmanager 0.25 computed (captured payloads)."""
    for name in ("firing.json", "mixed-firing-resolved.json"):
        for a in json.loads((AM_FIXTURES / name).read_text())["alerts"]:
            assert labels_fingerprint(a["labels"]) == a["fingerprint"]
    assert labels_fingerprint({}) == "cbf29ce484222325"  # FNV-1a 64's offset basis
    assert labels_fingerprint({"a": "b"}) != labels_fingerprint({"ab": ""})


async def test_minimal_body_without_optional_fields_is_accepted_and_fingerprinted(
    state_url: str, tmp_path: Path
) -> None:
    """Only version, status, alerts and each alert's status, labels and startsAt are
    required; no fingerprint means one derived from the labels (in any order)."""
    minimal = {
        "version": "1",
        "status": "firing",
        "alerts": [{"status": "firing", "labels": LABELS, "startsAt": "2022-01-01T12:00:00+02:00"}],
    }
    reordered = dict(reversed(list(LABELS.items())))
    again = {**minimal, "alerts": [{**minimal["alerts"][0], "labels": reordered}]}  # type: ignore[dict-item]
    async with (
        running_daemon(config(state_url, tmp_path), workers=False) as d,
        httpx.AsyncClient(base_url=d.url) as c,
    ):
        r = await post(c, minimal)
        assert r.status_code == 202, r.text
        assert r.json()["journaled"] == 1
        assert (await post(c, again)).json()["duplicates"] == 1
    [row] = await journal(state_url)
    assert row["fingerprint"] == labels_fingerprint(LABELS)
    assert (row["starts_at"], row["ends_at"], row["generator_url"]) == (
        "2022-01-01T10:00:00Z",
        "0001-01-01T00:00:00Z",
        "",
    )
    assert row["annotations"] == {}
    assert row["grafana"]["fingerprint_derived"] is True
    assert row["grafana"]["values"] == {} and row["grafana"]["dashboard_url"] == ""


def _good() -> dict[str, Any]:
    return payload([alert(LABELS, "2022-01-01T12:00:00+02:00", fingerprint="0123456789abcdef")])


def _with_alert(**changes: Any) -> dict[str, Any]:
    body = _good()
    body["alerts"][0].update(changes)
    return body


BAD: dict[str, tuple[Any, int, str]] = {
    "neither version 4 nor 1": ({**_good(), "version": "2"}, 422, "version"),
    "version 1 as a number": ({**_good(), "version": 1}, 422, "version"),
    "bad status": ({**_good(), "status": "alerting"}, 422, "status"),
    "no alerts": ({k: v for k, v in _good().items() if k != "alerts"}, 422, "alerts"),
    "alert status": (_with_alert(status="pending"), 422, "alerts.0.status"),
    "no startsAt": (
        {**_good(), "alerts": [{"status": "firing", "labels": LABELS}]},
        422,
        "alerts.0.startsAt",
    ),
    "startsAt without a zone": (
        _with_alert(startsAt="2022-01-01T12:00:00"),
        422,
        "alerts.0.startsAt",
    ),
    "startsAt out of range": (
        _with_alert(startsAt="2022-13-01T12:00:00Z"),
        422,
        "alerts.0.startsAt",
    ),
    "fingerprint not hex": (_with_alert(fingerprint="ZZZ"), 422, "alerts.0.fingerprint"),
    "values not numbers": (_with_alert(values={"B": "high"}), 422, "alerts.0.values.B"),
    "labels not strings": (_with_alert(labels={"alertname": 3}), 422, "alerts.0.labels.alertname"),
    "NUL in a label": (
        _with_alert(labels={"alertname": "a\x00b"}),
        422,
        "alerts.0.labels.alertname",
    ),
    "orgId negative": ({**_good(), "orgId": -1}, 422, "orgId"),
    "label over max_label_bytes": (
        _with_alert(labels={"alertname": "x", "provider": "p" * 5000}),
        422,
        "alerts.0.labels.provider",
    ),
    "more values than max_labels": (
        _with_alert(values={f"R{i}": i for i in range(65)}),
        422,
        "alerts.0.values",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
async def test_bad_grafana_bodies_are_a_4xx_naming_the_field_and_journal_nothing(
    case: str, state_url: str, tmp_path: Path
) -> None:
    body, status, field = BAD[case]
    async with (
        running_daemon(config(state_url, tmp_path), workers=False) as d,
        httpx.AsyncClient(base_url=d.url) as c,
    ):
        r = await post(c, body)
        assert r.status_code == status, r.text
        detail = r.json()["detail"]
        assert field in [p["field"] for p in detail], detail
        if field == "version":
            [problem] = [p for p in detail if p["field"] == "version"]
            assert "'4'" in problem["message"] and "'1'" in problem["message"]
    assert await journal(state_url) == []


async def test_grafana_bodies_pass_the_same_door_auth_size_and_json(
    state_url: str, tmp_path: Path
) -> None:
    good = json.dumps(_good()).encode()
    async with (
        running_daemon(
            config(state_url, tmp_path, limits={"max_body_bytes": 2048}), workers=False
        ) as d,
        httpx.AsyncClient(base_url=d.url) as c,
    ):
        headers = {"Content-Type": "application/json"}
        r = await c.post("/api/v1/alerts", content=good, headers=headers)
        assert r.status_code == 401
        auth = {**headers, "Authorization": f"Bearer {TOKEN}"}
        big = json.dumps({**_good(), "message": "m" * 4096}).encode()
        assert (await c.post("/api/v1/alerts", content=big, headers=auth)).status_code == 413
        bad_json = good[:-1]
        r = await c.post("/api/v1/alerts", content=bad_json, headers=auth)
        assert r.status_code == 400 and r.json()["error"] == "malformed_json"
        # Basic auth, as Grafana's contact point can send it, is accepted as well.
        basic = httpx.BasicAuth("grafana", TOKEN)
        r = await c.post("/api/v1/alerts", content=good, headers=headers, auth=basic)
        assert r.status_code == 202, r.text
    assert len(await journal(state_url)) == 1
