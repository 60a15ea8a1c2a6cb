"""HTTP checks against DawsOS's peers: provider status pages and the freshness gate.

``provider_status`` answers RB-01/RB-02's "is Polygon/FMP/FRED up?" by GETting the URL
configured for that provider; ``freshness_gate`` answers RB-01's last step, "does POST
/execute return 200 (not 503 'pack warming')?".

An HTTP answer, whatever its status, is a *result* (``ProviderHealth``,
``GateResult``); only a failure to get an answer is an error: timeout ->
TargetTimeout, connection or protocol failure -> TargetUnavailable.

This module must never request a URL built from a label: only configured provider
names are accepted (anything else is InputRejected), and the gate path is a fixed
code-side value. It must never put a configured URL in a result or an error, because
provider URLs carry API keys (``?apikey=...``).
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from remediator.errors import ConfigError, InputRejected, TargetTimeout, TargetUnavailable

# RB-01 step 7's request body.
DEFAULT_GATE_BODY: Mapping[str, Any] = {
    "pattern_id": "portfolio_overview",
    "portfolio_id": "test-portfolio-uuid",
    "inputs": {},
}
_MAX_BODY = 64 * 1024  # status pages are small; never buffer a runaway answer
_DETAIL_MAX = 200
_PATH = re.compile(r"^/[A-Za-z0-9/_.-]*$")


@dataclass(frozen=True)
class ProviderHealth:
    name: str
    healthy: bool
    status_code: int | None
    detail: str


@dataclass(frozen=True)
class GateResult:
    ok: bool  # 200: the app serves valuations again
    status_code: int
    detail: str = ""

    @property
    def warming(self) -> bool:
        """503 is the app's "pricing pack warming in progress"."""
        return self.status_code == 503


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _DETAIL_MAX else text[:_DETAIL_MAX] + "..."


async def _read_capped(response: httpx.Response) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size >= _MAX_BODY:
            break
    return b"".join(chunks)[:_MAX_BODY]


def _judge(status_code: int, body: bytes) -> tuple[bool, str]:
    """Healthy = 2xx and, if the body is a JSON object with "status", status "ok"."""
    if not 200 <= status_code < 300:
        return False, _short(f"HTTP {status_code}: {body.decode('utf-8', 'replace')}")
    try:
        doc = json.loads(body)
    except ValueError:
        return True, f"HTTP {status_code}"
    if isinstance(doc, dict) and "status" in doc:
        status = doc["status"]
        healthy = isinstance(status, str) and status.strip().lower() == "ok"
        return healthy, _short(f"HTTP {status_code}, status={status!r}")
    return True, f"HTTP {status_code}"


class HttpChecks:
    """Read-only HTTP probes. Open once; ``aclose()`` at shutdown."""

    def __init__(
        self,
        providers: Mapping[str, str],
        app_url: str | None,
        *,
        timeout: float = 5.0,
        client: httpx.AsyncClient | None = None,
        app_headers: Mapping[str, str] | None = None,
    ) -> None:
        for name, url in providers.items():
            if not url.startswith(("http://", "https://")):
                raise ConfigError(f"targets.http.providers.{name}: expected an http(s) URL")
        if app_url is not None and not app_url.startswith(("http://", "https://")):
            raise ConfigError("targets.http.app_url: expected an http(s) URL")
        self._providers = dict(providers)
        self._app_url = app_url.rstrip("/") if app_url else None
        self._app_headers = dict(app_headers or {})
        self._timeout = timeout
        self._owns_client = client is None
        # No redirects: a status page that redirects is not answering for itself.
        self._client = client or httpx.AsyncClient(timeout=timeout, follow_redirects=False)

    @property
    def providers(self) -> tuple[str, ...]:
        return tuple(self._providers)

    async def provider_status(self, name: str) -> ProviderHealth:
        """GET the provider's configured status URL and judge the answer."""
        url = self._providers.get(name)
        if url is None:
            raise InputRejected(
                "provider", f"not a configured provider (configured: {sorted(self._providers)})"
            )
        target = f"http.provider.{name}"
        async with self._request(target, "GET", url) as response:
            body = await _read_capped(response)
        healthy, detail = _judge(response.status_code, body)
        return ProviderHealth(name, healthy, response.status_code, detail)

    async def freshness_gate(
        self, path: str = "/execute", body: Mapping[str, Any] | None = None
    ) -> GateResult:
        """POST the app's /execute; ok only on 200."""
        if self._app_url is None:
            raise ConfigError("targets.http.app_url is not set; the freshness gate needs it")
        if not _PATH.match(path) or ".." in path or "//" in path:
            raise InputRejected("path", "expected an absolute URL path like /execute")
        payload = dict(DEFAULT_GATE_BODY if body is None else body)
        async with self._request(
            "http.app", "POST", self._app_url + path, json=payload, headers=self._app_headers
        ) as response:
            text = (await _read_capped(response)).decode("utf-8", "replace")
        code = response.status_code
        return GateResult(ok=code == 200, status_code=code, detail=_short(f"HTTP {code}: {text}"))

    @asynccontextmanager
    async def _request(
        self, target: str, method: str, url: str, **kwargs: Any
    ) -> AsyncIterator[httpx.Response]:
        """One streamed request; httpx errors (also while reading the body) wrapped."""
        try:
            async with self._client.stream(
                method, url, timeout=self._timeout, **kwargs
            ) as response:
                yield response
        except httpx.HTTPError as exc:
            # str(exc) of an httpx error can hold the URL; name the type only.
            if isinstance(exc, httpx.TimeoutException):
                raise TargetTimeout(target, f"no answer within {self._timeout:g}s") from exc
            raise TargetUnavailable(target, f"request failed ({type(exc).__name__})") from exc

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()
