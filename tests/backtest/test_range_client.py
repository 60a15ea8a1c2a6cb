"""The range client: chunks under Prometheus's points limit, the step from its
config API, and Prometheus's own error text on a refusal (respx as Prometheus)."""

from __future__ import annotations

import itertools

import httpx
import pytest
import respx

from remediator.clients import prometheus_range as pr
from remediator.errors import TargetRejected, TargetUnavailable

URL = "http://prometheus.test:9090"


def test_chunks_cover_every_point_once_and_stay_under_the_limit() -> None:
    start, step = 1_800_000_000.0, 15.0
    end = start + 30 * 86400  # 172,801 points at 15 s
    parts = pr.chunks(start, end, step)
    assert parts[0][0] == start and parts[-1][1] == end
    for (_, b), (c, _) in itertools.pairwise(parts):
        assert c == b + step  # the next chunk starts one step after
    points = [round((b - a) / step) + 1 for a, b in parts]
    assert max(points) <= pr.CHUNK_POINTS < 11_000
    assert sum(points) == round((end - start) / step) + 1


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1m", 60), ("15s", 15), ("1h30m", 5400), ("2d", 172800), ("500ms", 0.5)],
)
def test_prometheus_durations(text: str, seconds: float) -> None:
    assert pr.prometheus_duration(text) == seconds


def test_a_bad_prometheus_duration_is_refused() -> None:
    with pytest.raises(ValueError):
        pr.prometheus_duration("1 minute")


@respx.mock
async def test_step_is_the_configs_evaluation_interval_or_prometheus_default() -> None:
    route = respx.get(f"{URL}/api/v1/status/config")
    route.mock(
        return_value=httpx.Response(
            200,
            json={"status": "success", "data": {"yaml": "global:\n  evaluation_interval: 30s\n"}},
        )
    )
    client = pr.PrometheusHistory(URL)
    assert await client.evaluation_interval() == 30
    route.mock(return_value=httpx.Response(200, json={"status": "success", "data": {"yaml": "{}"}}))
    assert await client.evaluation_interval() == pr.DEFAULT_EVALUATION_INTERVAL
    await client.aclose()


@respx.mock
async def test_each_chunk_is_one_query_range_of_alerts_firing() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            200,
            json={
                "status": "success",
                "data": {
                    "resultType": "matrix",
                    "result": [{"metric": {"alertname": "A"}, "values": [[1.0, "1"]]}],
                },
            },
        )

    respx.get(f"{URL}/api/v1/query_range").mock(side_effect=answer)
    client = pr.PrometheusHistory(URL)
    start = 1_800_000_000.0
    got = [c async for c in client.firing(start, start + 25_000 * 60, 60)]
    await client.aclose()
    assert len(got) == len(seen) == 3
    assert {r.url.params["query"] for r in seen} == {'ALERTS{alertstate="firing"}'}
    assert [float(r.url.params["start"]) for r in seen] == [c.start for c in got]
    assert got[0].series[0].metric == {"alertname": "A"}


@respx.mock
async def test_a_refusal_carries_prometheus_error_text() -> None:
    respx.get(f"{URL}/api/v1/query_range").mock(
        return_value=httpx.Response(
            400, json={"status": "error", "errorType": "bad_data", "error": "exceeded maximum"}
        )
    )
    client = pr.PrometheusHistory(URL)
    with pytest.raises(TargetRejected, match="exceeded maximum"):
        _ = [c async for c in client.firing(0, 60, 60)]
    await client.aclose()


@respx.mock
async def test_an_answer_that_is_not_prometheus_is_unavailable_not_a_crash() -> None:
    respx.get(f"{URL}/api/v1/query_range").mock(return_value=httpx.Response(200, text="<html>"))
    client = pr.PrometheusHistory(URL)
    with pytest.raises(TargetUnavailable, match="not a range answer"):
        _ = [c async for c in client.firing(0, 60, 60)]
    await client.aclose()
