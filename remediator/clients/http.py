"""HTTP checks against DawsOS's peers: provider status pages and the freshness gate.

``provider_status`` answers RB-01/RB-02's "is Polygon/FMP/FRED up?" by GETting the URL
configured for that provider; ``freshness_gate`` answers RB-01's last step, "does POST
/execute return 200 (not 503 'pack warming')?".

An HTTP answer, whatever its status, is a *result* (``ProviderHealth``,
``GateResult``); only a failure to get an answer is an error: timeout ->
TargetTimeout, connection or protocol failure -> TargetUnavailable.

Credentials: a provider is a URL, or a ``ProviderEndpoint`` with headers and query
params (API keys); the app gets ``Authorization: Bearer <app_token>``. ``probe`` is the
provider check that never raises (for RB-01's health step and ``doctor``), and
``auth_failed`` tells a refused credential (401/403) from an outage.

This module must never request a URL built from a label: only configured provider
names are accepted (anything else is InputRejected), and the gate path is a fixed
code-side value. It must never put a configured URL, header or param in a result or
an error, because they carry API keys (``?apikey=...``) and tokens.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
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


class _NoQueryInLogs(logging.Filter):
    """httpx logs each request's URL at INFO: without its query (API keys live there)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                a.copy_with(query=None) if isinstance(a, httpx.URL) else a for a in record.args
            )
        return True


logging.getLogger("httpx").addFilter(_NoQueryInLogs())


@dataclass(frozen=True)
class ProviderEndpoint:
    """Where a provider's check goes, with its credentials (never shown anywhere)."""

    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    params: Mapping[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:  # the URL and keys stay out of logs and tracebacks
        return f"ProviderEndpoint(headers={sorted(self.headers)}, params={sorted(self.params)})"


@dataclass(frozen=True)
class ProviderHealth:
    name: str
    healthy: bool
    status_code: int | None
    detail: str
    reachable: bool = True  # False: no answer at all (timeout, refused, TLS)

    @property
    def auth_failed(self) -> bool:
        """The provider refused our credentials (an API key problem, not an outage)."""
        return self.status_code in (401, 403)


@dataclass(frozen=True)
class GateResult:
    ok: bool  # 200: the app serves valuations again
    status_code: int
    detail: str = ""

    @property
    def warming(self) -> bool:
        """503 is the app's "pricing pack warming in progress"."""
        return self.status_code == 503

    @property
    def auth_failed(self) -> bool:
        """The app refused targets.http.app_token (missing, expired or wrong)."""
        return self.status_code in (401, 403)


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
        providers: Mapping[str, str | ProviderEndpoint],
        app_url: str | None,
        *,
        timeout: float = 5.0,
        client: httpx.AsyncClient | None = None,
        app_headers: Mapping[str, str] | None = None,
        app_token: str | None = None,
    ) -> None:
        endpoints = {
            name: e if isinstance(e, ProviderEndpoint) else ProviderEndpoint(e)
            for name, e in providers.items()
        }
        for name, endpoint in endpoints.items():
            if not endpoint.url.startswith(("http://", "https://")):
                raise ConfigError(f"targets.http.providers.{name}: expected an http(s) URL")
        if app_url is not None and not app_url.startswith(("http://", "https://")):
            raise ConfigError("targets.http.app_url: expected an http(s) URL")
        self._providers = endpoints
        self._app_url = app_url.rstrip("/") if app_url else None
        self._app_headers = dict(app_headers or {})
        if app_token:
            self._app_headers["Authorization"] = f"Bearer {app_token}"
        self._timeout = timeout
        self._owns_client = client is None
        # No redirects: a status page that redirects is not answering for itself.
        self._client = client or httpx.AsyncClient(timeout=timeout, follow_redirects=False)

    @property
    def providers(self) -> tuple[str, ...]:
        return tuple(self._providers)

    async def provider_status(self, name: str) -> ProviderHealth:
        """GET the provider's configured status URL and judge the answer."""
        endpoint = self._providers.get(name)
        if endpoint is None:
            raise InputRejected(
                "provider", f"not a configured provider (configured: {sorted(self._providers)})"
            )
        target = f"http.provider.{name}"
        # Merged into the URL's own query (httpx's params= would replace it).
        url = httpx.URL(endpoint.url).copy_merge_params(dict(endpoint.params))
        async with self._request(target, "GET", url, headers=dict(endpoint.headers)) as response:
            body = await _read_capped(response)
        healthy, detail = _judge(response.status_code, body)
        if response.status_code in (401, 403):
            detail = f"HTTP {response.status_code}: credentials refused (check its headers/params)"
        return ProviderHealth(name, healthy, response.status_code, detail)

    async def probe(self, name: str) -> ProviderHealth:
        """``provider_status``, but no answer at all is an unhealthy result, not an error."""
        try:
            return await self.provider_status(name)
        except (TargetTimeout, TargetUnavailable) as exc:
            return ProviderHealth(name, False, None, str(exc)[:_DETAIL_MAX], reachable=False)

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
        self, target: str, method: str, url: str | httpx.URL, **kwargs: Any
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
