"""The webhook contract: every status code, dedupe, journaling before 202."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import httpx
import pytest

from remediator.state.store import StateStore
from remediator.testing import make_alert, make_payload, resolved
from tests.helpers import running_daemon

FIXTURES = Path(__file__).parent.parent / "fixtures" / "alertmanager-0.25"
TOKEN = "webhook-secret-token-123"
OPERATOR = "operator-secret-token-456"


def config(state_url: str, tmp_path: Path, **extra: object) -> dict[str, object]:
    rules = tmp_path / "rules"
    rules.mkdir(exist_ok=True)
    return {"state": state_url, "rules": str(rules), **extra}


async def journal_rows(state_url: str) -> list[dict[str, object]]:
    store = await StateStore.open(state_url)
    try:
        return await store.list_occurrences(10_000)
    finally:
        await store.close()


async def test_accepts_a_payload_captured_from_alertmanager_0_25(state_url, tmp_path):
    body = (FIXTURES / "firing.json").read_bytes()
    async with (
        running_daemon(config(state_url, tmp_path), workers=False) as d,
        httpx.AsyncClient(base_url=d.url) as c,
    ):
        r = await c.post(
            "/api/v1/alerts",
            content=body,
            headers={"Content-Type": "application/json", "User-Agent": "Alertmanager/0.25.0"},
        )
        assert r.status_code == 202, r.text
        assert r.json()["journaled"] == 2
        assert d.sample("remediator_webhooks_received_total", {"code": "202"}) == 1
    rows = await journal_rows(state_url)
    sent = json.loads(body)["alerts"]
    assert sorted((x["fingerprint"], x["starts_at"], x["status"]) for x in rows) == sorted(
        (a["fingerprint"], a["startsAt"], a["status"]) for a in sent
    )
    polygon = next(x for x in rows if x["labels"].get("provider") == "polygon")
    assert polygon["generator_url"].startswith("http://prometheus.example")
    assert polygon["starts_at"].endswith(".123456789Z")  # nanoseconds kept, not rounded


async def test_mixed_firing_and_resolved_group_journals_each_alert_by_its_own_status(
    state_url, tmp_path
):
    async with (
        running_daemon(config(state_url, tmp_path), workers=False) as d,
        httpx.AsyncClient(base_url=d.url) as c,
    ):
        for name in ("firing.json", "mixed-firing-resolved.json"):
            r = await c.post(
                "/api/v1/alerts",
                content=(FIXTURES / name).read_bytes(),
                headers={"Content-Type": "application/json"},
            )
            assert r.status_code == 202
        # the second body repeats fmp (firing) and adds polygon (resolved)
        assert r.json() == {**r.json(), "journaled": 1, "duplicates": 1}
    rows = await journal_rows(state_url)
    keys = sorted((x["labels"]["provider"], x["status"]) for x in rows)
    assert keys == [("fmp", "firing"), ("polygon", "firing"), ("polygon", "resolved")]


async def test_same_payload_three_times_journals_once_and_counts_two_duplicates_each(
    state_url, tmp_path
):
    a1 = make_alert("DiskFull", {"instance": "h1"})
    a2 = make_alert("DiskFull", {"instance": "h2"})
    body = make_payload(a1, a2)
    async with (
        running_daemon(config(state_url, tmp_path), workers=False) as d,
        httpx.AsyncClient(base_url=d.url) as c,
    ):
        for _ in range(3):
            r = await c.post("/api/v1/alerts", json=body)
            assert r.status_code == 202
        assert d.sample("remediator_alerts_deduplicated_total") == 4  # 2 per occurrence
    assert len(await journal_rows(state_url)) == 2


async def test_concurrent_identical_deliveries_journal_each_occurrence_once(state_url, tmp_path):
    body = make_payload(*(make_alert("Storm", {"i": str(i)}) for i in range(20)))
    async with (
        running_daemon(config(state_url, tmp_path), workers=False) as d,
        httpx.AsyncClient(base_url=d.url) as c,
    ):
        rs = await asyncio.gather(*(c.post("/api/v1/alerts", json=body) for _ in range(5)))
        assert [r.status_code for r in rs] == [202] * 5
        assert sum(r.json()["journaled"] for r in rs) == 20
        assert d.sample("remediator_alerts_deduplicated_total") == 80
    assert len(await journal_rows(state_url)) == 20


async def test_fire_and_resolve_of_one_alert_are_two_occurrences(state_url, tmp_path):
    a = make_alert("DiskFull", {"instance": "h1"})
    async with (
        running_daemon(config(state_url, tmp_path), workers=False) as d,
        httpx.AsyncClient(base_url=d.url) as c,
    ):
        assert (await c.post("/api/v1/alerts", json=make_payload(a))).status_code == 202
        assert (await c.post("/api/v1/alerts", json=make_payload(resolved(a)))).status_code == 202
    assert sorted(x["status"] for x in await journal_rows(state_url)) == ["firing", "resolved"]


@pytest.mark.parametrize(
    ("body", "headers", "code", "error"),
    [
        (b"{not json", {"Content-Type": "application/json"}, 400, "malformed_json"),
        (b"\xff\xfe\x00garbage", {"Content-Type": "application/json"}, 400, "malformed_json"),
        (b'{"version": "4"}', {"Content-Type": "text/plain"}, 415, "unsupported_media_type"),
        (b"[]", {"Content-Type": "application/json"}, 422, "schema_violation"),
    ],
)
async def test_bad_requests_get_a_json_error_and_change_nothing(
    state_url, tmp_path, body, headers, code, error
):
    async with (
        running_daemon(config(state_url, tmp_path), workers=False) as d,
        httpx.AsyncClient(base_url=d.url) as c,
    ):
        r = await c.post("/api/v1/alerts", content=body, headers=headers)
        assert r.status_code == code
        assert r.json()["error"] == error and "detail" in r.json()
        assert d.sample("remediator_webhooks_received_total", {"code": str(code)}) == 1
    assert await journal_rows(state_url) == []


async def test_schema_violation_names_the_field_and_journals_nothing(state_url, tmp_path):
    good = make_alert("DiskFull", {"instance": "h1"})
    bad = {**make_alert("DiskFull", {"instance": "h2"}), "startsAt": "yesterday"}
    async with (
        running_daemon(config(state_url, tmp_path), workers=False) as d,
        httpx.AsyncClient(base_url=d.url) as c,
    ):
        r = await c.post("/api/v1/alerts", json=make_payload(good, bad))
        assert r.status_code == 422
        fields = [x["field"] for x in r.json()["detail"]]
        assert fields == ["alerts.1.startsAt"]
        r = await c.post("/api/v1/alerts", json={**make_payload(good), "version": "3"})
        assert r.status_code == 422 and r.json()["detail"][0]["field"] == "version"
    assert await journal_rows(state_url) == []  # no partial journal entry


async def test_oversized_body_gets_413(state_url, tmp_path):
    cfg = config(state_url, tmp_path, limits={"max_body_bytes": 2048})
    big = make_payload(*(make_alert("A", {"i": str(i)}) for i in range(40)))
    async with running_daemon(cfg, workers=False) as d, httpx.AsyncClient(base_url=d.url) as c:
        r = await c.post("/api/v1/alerts", json=big)
        assert r.status_code == 413 and r.json()["error"] == "payload_too_large"

        async def chunks():  # no Content-Length: the limit still holds while reading
            data = json.dumps(big).encode()
            for i in range(0, len(data), 512):
                yield data[i : i + 512]

        r = await c.post(
            "/api/v1/alerts", content=chunks(), headers={"Content-Type": "application/json"}
        )
        assert r.status_code == 413
    assert await journal_rows(state_url) == []


async def test_truncated_alerts_are_counted(state_url, tmp_path):
    async with (
        running_daemon(config(state_url, tmp_path), workers=False) as d,
        httpx.AsyncClient(base_url=d.url) as c,
    ):
        r = await c.post("/api/v1/alerts", json=make_payload(make_alert("A"), truncated=7))
        assert r.status_code == 202
        assert d.sample("remediator_truncated_alerts_total") == 7


async def test_auth_bearer_and_basic_accepted_wrong_or_missing_refused(state_url, tmp_path):
    cfg = config(
        state_url,
        tmp_path,
        auth={"webhook_tokens": [TOKEN], "operator_tokens": {"alice": OPERATOR}},
    )
    body = make_payload(make_alert("A"))
    basic = base64.b64encode(f"alertmanager:{TOKEN}".encode()).decode()
    async with running_daemon(cfg, workers=False) as d, httpx.AsyncClient(base_url=d.url) as c:
        for headers, code in [
            ({}, 401),
            ({"Authorization": "Bearer nope"}, 401),
            ({"Authorization": f"Bearer {OPERATOR}"}, 401),  # operator token: not a webhook
            ({"Authorization": "Basic !!!"}, 401),
            ({"Authorization": f"Bearer {TOKEN}"}, 202),
            ({"Authorization": f"Basic {basic}"}, 202),
        ]:
            r = await c.post("/api/v1/alerts", json=body, headers=headers)
            assert r.status_code == code, headers
            if code == 401:
                assert r.json()["error"] == "unauthorized"
        assert d.sample("remediator_webhooks_received_total", {"code": "401"}) == 4
        # webhook tokens never open operator routes
        r = await c.post("/api/v1/pause", headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 401
        r = await c.post("/api/v1/pause", headers={"Authorization": f"Bearer {OPERATOR}"})
        assert r.status_code == 200 and r.json() == {"paused": True, "by": "alice"}
        r = await c.get("/api/v1/actions", headers={"Authorization": f"Bearer {OPERATOR}"})
        assert r.status_code == 200 and r.json() == {"actions": []}


async def test_probes_and_metrics(state_url, tmp_path):
    async with (
        running_daemon(config(state_url, tmp_path), workers=False) as d,
        httpx.AsyncClient(base_url=d.url) as c,
    ):
        assert (await c.get("/healthz")).status_code == 200
        r = await c.get("/readyz")
        assert r.status_code == 200 and r.json()["status"] == "ready"
        text = (await c.get("/metrics")).text
        assert 'remediator_build_info{version="0.1.0"} 1.0' in text
        assert "remediator_queue_depth 0.0" in text


async def test_readyz_fails_when_rules_are_invalid(state_url, tmp_path):
    cfg = config(state_url, tmp_path)
    Path(str(cfg["rules"]), "bad.yaml").write_text("rules:\n  - name: x\n")
    async with running_daemon(cfg, workers=False) as d, httpx.AsyncClient(base_url=d.url) as c:
        r = await c.get("/readyz")
        assert r.status_code == 503
        assert "no valid rules loaded" in r.json()["problems"]
