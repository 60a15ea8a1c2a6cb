"""Prometheus as a witness: does ``ALERTS`` show this alert firing right now?

A webhook payload is a claim. Prometheus evaluated the alerting rule itself, so its
``ALERTS{alertstate="firing"}`` series is the evidence a leaked webhook token cannot
forge. The query names every label the alert claims (values escaped as PromQL
strings; a label name PromQL cannot spell is on no series), so Prometheus answers with
that one series; the label set is then compared here, exactly (a series may have
more labels than the matchers name).

Labels: Alertmanager adds no labels of its own, but Prometheus adds its
``global.external_labels`` when it sends an alert, and ``ALERTS`` (queried locally)
has none of them. So the alert's labels less the external labels Prometheus reports
in its config must equal a firing series' labels less ``__name__`` and
``alertstate``. An extra label in the payload (a forged ``date`` or ``source_ip``, say)
therefore fails the check. Labels changed by ``alert_relabel_configs`` fail it too:
such setups must turn corroboration off and say so.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass

import httpx
import yaml

from remediator.errors import TargetTimeout, TargetUnavailable

_SERIES_META = frozenset({"__name__", "alertstate"})
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_CONFIG_TTL = 300.0  # external labels change only with a Prometheus reload


@dataclass(frozen=True)
class Witness:
    firing: bool
    detail: str


def promql_string(value: str) -> str:
    """A PromQL double-quoted string literal; JSON escapes are valid Go escapes.

    Non-ASCII stays as it is (UTF-8): ASCII-only JSON writes a character beyond the
    BMP as a surrogate pair (``\\ud83d\\udd25``), which Go refuses, and Prometheus
    answered 400. JSON still escapes every control character, newline included."""
    return json.dumps(value, ensure_ascii=False)


async def api_data(
    http: httpx.AsyncClient,
    target: str,
    url: str,
    path: str,
    params: Mapping[str, str] | None = None,
) -> object:
    """One GET of a Prometheus-style HTTP API (Prometheus's own, or Grafana's
    Prometheus-compatible alert state): the ``data`` of a ``status: success`` answer.
    Anything else is a TargetError naming ``target`` and ``path``, never the body."""
    try:
        response = await http.get(url, params=dict(params or {}))
    except httpx.TimeoutException as exc:
        raise TargetTimeout(target, f"{path}: timed out") from exc
    except httpx.HTTPError as exc:
        raise TargetUnavailable(target, f"{path}: {type(exc).__name__}") from exc
    if response.status_code != 200:
        # 401/403 included: a wrong or weak token is said as the status only.
        raise TargetUnavailable(target, f"{path}: HTTP {response.status_code}")
    try:
        body = response.json()
    except ValueError as exc:
        raise TargetUnavailable(target, f"{path}: answer is not JSON") from exc
    if not isinstance(body, dict) or body.get("status") != "success":
        raise TargetUnavailable(target, f"{path}: status is not success")
    return body.get("data")


class PrometheusClient:
    def __init__(self, url: str, *, timeout: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.AsyncClient(timeout=timeout, follow_redirects=False)
        self._external: dict[str, str] | None = None
        self._external_at = 0.0

    async def aclose(self) -> None:
        await self._http.aclose()

    async def build_info(self) -> str:
        """Prometheus's version (``/api/v1/status/buildinfo``): it answers, and is Prometheus."""
        data = await self._get("/api/v1/status/buildinfo", {})
        version = data.get("version") if isinstance(data, dict) else None
        return str(version or "unknown version")

    async def _get(self, path: str, params: Mapping[str, str]) -> object:
        return await api_data(self._http, "prometheus", f"{self.url}{path}", path, params)

    async def external_labels(self) -> dict[str, str]:
        now = time.monotonic()
        if self._external is not None and now - self._external_at < _CONFIG_TTL:
            return self._external
        data = await self._get("/api/v1/status/config", {})
        labels: dict[str, str] = {}
        text = data.get("yaml") if isinstance(data, dict) else None
        if isinstance(text, str):
            try:
                config = yaml.safe_load(text)
            except yaml.YAMLError:
                config = None
            glob = config.get("global") if isinstance(config, dict) else None
            external = glob.get("external_labels") if isinstance(glob, dict) else None
            if isinstance(external, dict):
                labels = {str(k): str(v) for k, v in external.items()}
        self._external, self._external_at = labels, now
        return labels

    async def _firing_series(self, matchers: Mapping[str, str]) -> list[object]:
        selector = ",".join(
            ['alertstate="firing"', *(f"{k}={promql_string(v)}" for k, v in matchers.items())]
        )
        data = await self._get("/api/v1/query", {"query": f"ALERTS{{{selector}}}"})
        result = data.get("result") if isinstance(data, dict) else None
        return result if isinstance(result, list) else []

    async def instant(self, query: str) -> Reading:
        """Evaluate ``query`` now (verification). TargetError when Prometheus cannot."""
        return reading(await self._get("/api/v1/query", {"query": query}))

    async def alert_firing(self, labels: Mapping[str, str]) -> Witness:
        """Whether ``ALERTS`` has a firing series with exactly these labels."""
        alertname = labels.get("alertname", "")
        external = await self.external_labels()
        claimed = {k: v for k, v in labels.items() if external.get(k) != v}
        odd = sorted(k for k in claimed if not _LABEL_NAME.fullmatch(k))
        if odd:
            return Witness(False, f"no Prometheus series can have labels named {odd}")
        # Every claimed label is a matcher, so Prometheus answers with this alert's
        # series only, not with every firing series of its alertname: in a storm of one
        # alertname (a thousand hosts) that was a thousand series per mitigation.
        exact = {k: v for k, v in sorted(claimed.items()) if k not in _SERIES_META}
        series = await self._firing_series(exact)
        if not series:
            # Refused: ask again by alertname alone, to say which labels differ.
            series = await self._firing_series({"alertname": alertname})
        closest = ""
        for item in series:
            metric = item.get("metric") if isinstance(item, dict) else None
            if not isinstance(metric, dict):
                continue
            seen = {k: v for k, v in metric.items() if k not in _SERIES_META}
            if seen == claimed:
                return Witness(True, f"ALERTS shows {alertname} firing")
            differ = sorted(set(seen.items()) ^ set(claimed.items()))
            closest = closest or ", ".join(sorted({k for k, _ in differ}))
        if not series:
            return Witness(False, f"ALERTS has no firing {alertname}")
        return Witness(
            False,
            f"ALERTS has {len(series)} firing {alertname} series, none with these labels"
            f" (labels that differ: {closest})",
        )


@dataclass(frozen=True)
class Reading:
    """What an instant query answered: whether it is true, and its value in words.

    ``true`` when the result holds a sample whose value is not 0 (nor NaN). A PromQL
    comparison without ``bool`` returns its series only where it holds, whatever
    their values (0 included): ``series`` lets the caller that knows the query is
    such a filter take any series as true (engine/verify.py's ``holds``).
    """

    true: bool
    value: str
    series: int = 0  # how many series a vector or matrix answer held


_SHOWN_SERIES = 3
EMPTY = "no series (empty result)"


def _number(text: object) -> float:
    try:
        return float(str(text))
    except ValueError:
        return math.nan


def _sample(item: object) -> tuple[str, float] | None:
    """(series labels in words, value) of one vector or matrix element."""
    if not isinstance(item, dict):
        return None
    metric = item.get("metric") if isinstance(item.get("metric"), dict) else {}
    assert isinstance(metric, dict)
    point = item.get("value")
    if point is None and isinstance(item.get("values"), list) and item["values"]:
        point = item["values"][-1]  # a range vector: its newest sample
    if not isinstance(point, list) or len(point) != 2:
        return None
    shown = ",".join(f"{k}={promql_string(str(v))}" for k, v in sorted(metric.items()))
    return (f"{{{shown}}}" if shown else "", _number(point[1]))


def reading(data: object) -> Reading:
    """Read an ``/api/v1/query`` answer's ``data``: scalar, vector or matrix."""
    if not isinstance(data, dict):
        return Reading(False, "no answer")
    kind, result = data.get("resultType"), data.get("result")
    if kind == "scalar" and isinstance(result, list) and len(result) == 2:
        value = _number(result[1])
        return Reading(value != 0 and not math.isnan(value), f"{value:g}")
    if kind == "string":
        return Reading(False, f"a string, not a number: {str(result)[:100]}")
    samples = [s for s in map(_sample, result if isinstance(result, list) else []) if s]
    if not samples:
        return Reading(False, EMPTY)
    true = any(v != 0 and not math.isnan(v) for _, v in samples)
    shown = [f"{labels} {value:g}".strip() for labels, value in samples[:_SHOWN_SERIES]]
    hidden = len(samples) - _SHOWN_SERIES
    more = f" (and {hidden} more series)" if hidden > 0 else ""
    return Reading(true, ", ".join(shown) + more, len(samples))
