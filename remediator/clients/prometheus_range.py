"""Prometheus's alert history: ``ALERTS{alertstate="firing"}`` over a long range.

``remediator backtest`` reads what alerts fired, and when, from the ``ALERTS`` series
Prometheus writes at each rule evaluation. ``query_range`` refuses a query of more
than 11,000 points per series, so a long range is asked in chunks of
``CHUNK_POINTS`` steps, one after another (each answer can hold every firing series
of its chunk; asking them all at once would hold them all in memory at once).

Read-only: it asks ``/api/v1/status/config``, ``/api/v1/status/runtimeinfo`` (the
storage retention) and ``/api/v1/query_range``, nothing else. Every failure is a
``TargetError`` naming what went wrong (the URL's host refused, Prometheus's own error
text), never an httpx exception.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import msgspec
import yaml

from remediator.errors import TargetError, TargetRejected, TargetTimeout, TargetUnavailable

QUERY = 'ALERTS{alertstate="firing"}'
# Prometheus's limit is 11,000 points per series; a margin for the rounding of the
# range's ends.
CHUNK_POINTS = 10_000
# Prometheus's own default, used when its config does not say.
DEFAULT_EVALUATION_INTERVAL = 60.0
_PROM_DURATION = re.compile(r"^((\d+)y)?((\d+)w)?((\d+)d)?((\d+)h)?((\d+)m)?((\d+)s)?((\d+)ms)?$")
_PROM_UNITS = (365 * 86400.0, 7 * 86400.0, 86400.0, 3600.0, 60.0, 1.0, 0.001)


def prometheus_duration(text: str) -> float:
    """Prometheus's duration syntax ('1m', '1h30m', '15s') in seconds."""
    m = _PROM_DURATION.match(text.strip())
    if not m or not text.strip():
        raise ValueError(f"not a Prometheus duration: {text!r}")
    groups = m.groups()[1::2]
    return sum(int(g) * unit for g, unit in zip(groups, _PROM_UNITS, strict=True) if g)


class SeriesPoints(msgspec.Struct, gc=False):
    """One series of a range answer: its labels and its [time, value] points."""

    metric: dict[str, str]
    values: list[tuple[float, str]] = []


class _Matrix(msgspec.Struct, gc=False):
    resultType: str
    result: list[SeriesPoints]


class _RangeAnswer(msgspec.Struct, gc=False):
    status: str
    data: _Matrix | None = None
    errorType: str = ""
    error: str = ""


_DECODE_RANGE = msgspec.json.Decoder(_RangeAnswer)


@dataclass(frozen=True)
class Chunk:
    """The points of one chunk of the range, from ``start`` to ``end`` inclusive."""

    start: float
    end: float
    series: list[SeriesPoints]


def chunks(start: float, end: float, step: float) -> list[tuple[float, float]]:
    """[start, end] cut into ranges of at most CHUNK_POINTS points of ``step``; each
    chunk starts one step after the previous one's end, so no point is asked twice."""
    out: list[tuple[float, float]] = []
    # start and end are whole steps apart (the caller aligns them to the step).
    points = round((end - start) / step) + 1
    for first in range(0, points, CHUNK_POINTS):
        last = min(points, first + CHUNK_POINTS) - 1
        out.append((start + first * step, start + last * step))
    return out


class PrometheusHistory:
    def __init__(self, url: str, *, timeout: float = 120.0) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.AsyncClient(timeout=timeout, follow_redirects=False)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _get(self, path: str, params: dict[str, str]) -> bytes:
        try:
            response = await self._http.get(f"{self.url}{path}", params=params)
        except httpx.TimeoutException as exc:
            raise TargetTimeout("prometheus", f"{self.url}{path}: timed out") from exc
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise TargetUnavailable(
                "prometheus", f"{self.url}{path}: {type(exc).__name__}: {exc}"
            ) from exc
        if response.status_code in (400, 422):
            raise TargetRejected("prometheus", f"{path}: {_error_text(response.content)}")
        if response.status_code != 200:
            raise TargetUnavailable("prometheus", f"{path}: HTTP {response.status_code}")
        return response.content

    async def evaluation_interval(self) -> float:
        """``global.evaluation_interval`` of the running config (its default if unset)."""
        body = await self._get("/api/v1/status/config", {})
        try:
            data = msgspec.json.decode(body)
            config = yaml.safe_load(data["data"]["yaml"])
        except (msgspec.DecodeError, yaml.YAMLError, KeyError, TypeError) as exc:
            raise TargetUnavailable(
                "prometheus", "/api/v1/status/config: not a Prometheus config answer"
            ) from exc
        glob = config.get("global") if isinstance(config, dict) else None
        text = glob.get("evaluation_interval") if isinstance(glob, dict) else None
        if not isinstance(text, str):
            return DEFAULT_EVALUATION_INTERVAL
        try:
            seconds = prometheus_duration(text)
        except ValueError as exc:
            raise TargetUnavailable("prometheus", f"evaluation_interval: {exc}") from exc
        return seconds if seconds > 0 else DEFAULT_EVALUATION_INTERVAL

    async def retention(self) -> float | None:
        """How far back Prometheus keeps data, in seconds: the time part of its
        ``storageRetention`` ("15d", "15d or 10GiB"). None when it does not say (a
        size-only retention, an older Prometheus): a backtest still runs without it."""
        try:
            data = msgspec.json.decode(await self._get("/api/v1/status/runtimeinfo", {}))
            text = str(data["data"]["storageRetention"])
        except (TargetError, msgspec.DecodeError, KeyError, TypeError):
            return None
        for part in text.split(" or "):
            try:
                return prometheus_duration(part.strip())
            except ValueError:
                continue
        return None

    async def firing(self, start: float, end: float, step: float) -> AsyncIterator[Chunk]:
        """Every firing ``ALERTS`` series, chunk after chunk of the range."""
        for first, last in chunks(start, end, step):
            body = await self._get(
                "/api/v1/query_range",
                {"query": QUERY, "start": _ts(first), "end": _ts(last), "step": _ts(step)},
            )
            try:
                answer = _DECODE_RANGE.decode(body)
            except msgspec.DecodeError as exc:
                raise TargetUnavailable(
                    "prometheus", "/api/v1/query_range: not a range answer"
                ) from exc
            if answer.status != "success" or answer.data is None:
                raise TargetUnavailable(
                    "prometheus", f"/api/v1/query_range: {answer.errorType} {answer.error}"
                )
            yield Chunk(first, last, answer.data.result)


def _ts(value: float) -> str:
    return f"{value:.3f}".rstrip("0").rstrip(".")


def _error_text(body: bytes) -> str:
    try:
        answer = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return body[:200].decode("utf-8", "replace")
    if isinstance(answer, dict):
        return f"{answer.get('errorType', '')}: {answer.get('error', '')}"
    return "bad request"
