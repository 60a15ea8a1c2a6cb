"""Bounded input (issue 17): limits.max_label_bytes, limits.max_labels and
truncatedAlerts. A payload over a bound is a 422 naming each field, and nothing of
it is journaled or counted; the body limit (413) still applies first."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from remediator.testing import make_alert, make_payload
from tests.helpers import Running, running_daemon

Payload = dict[str, Any]


@pytest.fixture
def config(tmp_path: Path) -> Callable[..., dict[str, Any]]:
    (tmp_path / "rules").mkdir()

    def make(**limits: int) -> dict[str, Any]:
        return {
            "state": f"sqlite:///{tmp_path}/state.db",
            "rules": str(tmp_path / "rules"),
            "limits": limits,
        }

    return make


@pytest.fixture
async def small(config: Callable[..., dict[str, Any]]) -> AsyncIterator[Running]:
    """A daemon whose label bounds are 64 bytes and 4 entries per set."""
    async with running_daemon(config(max_label_bytes=64, max_labels=4), workers=False) as d:
        yield d


async def post(d: Running, payload: Payload) -> httpx.Response:
    # ensure_ascii=False: multi-byte characters go out as UTF-8, not \u escapes.
    body = json.dumps(payload, ensure_ascii=False).encode()
    async with httpx.AsyncClient(base_url=d.url) as c:
        return await c.post(
            "/api/v1/alerts", content=body, headers={"Content-Type": "application/json"}
        )


async def assert_refused(d: Running, r: httpx.Response, fields: list[str], limit: str) -> None:
    assert r.status_code == 422, r.text
    assert r.json()["error"] == "schema_violation"
    assert [p["field"] for p in r.json()["detail"]] == fields
    assert all(limit in p["message"] for p in r.json()["detail"]), r.json()
    assert d.sample("remediator_webhooks_received_total", {"code": "202"}) == 0
    assert await d.daemon.store.count_occurrences() == 0


def alert(**kw: Any) -> Payload:
    return make_alert("Bounded", kw.pop("labels", {"instance": "h1"}), **kw)


def with_group(key: str, value: dict[str, str]) -> Payload:
    return {**make_payload(alert()), key: value}


OVER_BYTES = [
    (
        "ascii value",
        make_payload(alert(), alert(labels={"big": "v" * 65})),
        ["alerts.1.labels.big"],
    ),
    ("two-byte value", make_payload(alert(labels={"big": "\u00e9" * 33})), ["alerts.0.labels.big"]),
    (
        "four-byte value",
        make_payload(alert(labels={"e": "\U0001f600" * 17})),
        ["alerts.0.labels.e"],
    ),
    ("label name", make_payload(alert(labels={"n" * 65: "v"})), [f"alerts.0.labels.{'n' * 64}..."]),
    (
        "annotation value",
        make_payload(alert(annotations={"description": "d" * 65})),
        ["alerts.0.annotations.description"],
    ),
    ("groupLabels", with_group("groupLabels", {"team": "t" * 65}), ["groupLabels.team"]),
    ("commonLabels", with_group("commonLabels", {"team": "t" * 65}), ["commonLabels.team"]),
    (
        "commonAnnotations",
        with_group("commonAnnotations", {"s": "\u00e9" * 40}),
        ["commonAnnotations.s"],
    ),
    (
        "several",
        make_payload(alert(labels={"a": "v" * 65}), alert(), alert(labels={"b": "v" * 99})),
        ["alerts.0.labels.a", "alerts.2.labels.b"],
    ),
]


@pytest.mark.parametrize(
    ("payload", "fields"), [c[1:] for c in OVER_BYTES], ids=[c[0] for c in OVER_BYTES]
)
async def test_a_label_over_max_label_bytes_is_422_naming_it(
    small: Running, payload: Payload, fields: list[str]
):
    await assert_refused(small, await post(small, payload), fields, "limits.max_label_bytes")


OVER_COUNT = [
    ("labels", make_payload(alert(labels={f"l{i}": "v" for i in range(4)})), ["alerts.0.labels"]),
    (
        "annotations",
        make_payload(alert(annotations={f"a{i}": "v" for i in range(5)})),
        ["alerts.0.annotations"],
    ),
    (
        "commonLabels",
        with_group("commonLabels", {f"c{i}": "v" for i in range(5)}),
        ["commonLabels"],
    ),
]


@pytest.mark.parametrize(
    ("payload", "fields"), [c[1:] for c in OVER_COUNT], ids=[c[0] for c in OVER_COUNT]
)
async def test_more_entries_than_max_labels_is_422_naming_the_set(
    small: Running, payload: Payload, fields: list[str]
):
    await assert_refused(small, await post(small, payload), fields, "limits.max_labels")


async def test_labels_exactly_at_the_bounds_are_journaled(small: Running):
    labels = {"two": "\u00e9" * 32, "four": "\U0001f600" * 16, "n" * 64: "v"}  # 64 bytes each
    annotations = {f"a{i}": "x" * 64 for i in range(4)}
    r = await post(small, make_payload(alert(labels=labels, annotations=annotations)))
    assert r.status_code == 202, r.text
    rows = await small.daemon.store.list_occurrences()
    assert [row["labels"] for row in rows] == [{"alertname": "Bounded", **labels}]


async def test_default_bounds_are_4096_bytes_and_64_labels(config: Callable[..., dict[str, Any]]):
    async with running_daemon(config(), workers=False) as d:
        r = await post(d, make_payload(alert(labels={"v": "x" * 4097})))
        await assert_refused(d, r, ["alerts.0.labels.v"], "limits.max_label_bytes")
        r = await post(d, make_payload(alert(labels={f"l{i}": "v" for i in range(64)})))
        await assert_refused(d, r, ["alerts.0.labels"], "limits.max_labels")
        labels = {"v": "x" * 4096, **{f"l{i}": "v" for i in range(62)}}  # 64 with alertname
        assert (await post(d, make_payload(alert(labels=labels)))).status_code == 202


async def test_the_body_limit_answers_before_the_label_bounds(
    config: Callable[..., dict[str, Any]],
):
    cfg = config(max_body_bytes=2048, max_label_bytes=64)
    async with running_daemon(cfg, workers=False) as d:
        r = await post(d, make_payload(alert(labels={"big": "v" * 3000})))
        assert r.status_code == 413 and r.json()["error"] == "payload_too_large"
        assert await d.daemon.store.count_occurrences() == 0


@pytest.mark.parametrize("raw", [b"100000000000000000000000", b"1e23", b"1000001", b"-1", b"1e999"])
async def test_truncated_alerts_beyond_the_bound_is_422_and_counts_nothing(
    small: Running, raw: bytes
):
    body = json.dumps(make_payload(alert())).encode()
    body = body.replace(b'"truncatedAlerts": 0', b'"truncatedAlerts": ' + raw)
    async with httpx.AsyncClient(base_url=small.url) as c:
        r = await c.post(
            "/api/v1/alerts", content=body, headers={"Content-Type": "application/json"}
        )
    assert r.status_code == 422, r.text
    assert [p["field"] for p in r.json()["detail"]] == ["truncatedAlerts"]
    assert small.sample("remediator_truncated_alerts_total") == 0
    assert await small.daemon.store.count_occurrences() == 0


async def test_truncated_alerts_up_to_a_million_is_counted(small: Running):
    r = await post(small, make_payload(alert(), truncated=1_000_000))
    assert r.status_code == 202
    assert small.sample("remediator_truncated_alerts_total") == 1_000_000
