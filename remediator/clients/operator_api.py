"""HTTP to a running daemon's operator API, for the operator commands' ``--url``.

Answers are (status, JSON body); an unreachable daemon or a 5xx is StateUnavailable,
so the CLI reports it as it reports an unreachable state store (exit 3).
"""

from __future__ import annotations

from typing import Any

import httpx

from remediator.errors import StateUnavailable


class OperatorApi:
    def __init__(self, url: str, token: str | None, *, timeout: float = 30.0) -> None:
        self.url = url
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.AsyncClient(base_url=url, headers=headers, timeout=timeout)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def call(self, method: str, path: str, **params: str) -> tuple[int, Any]:
        try:
            r = await self._client.request(method, path, params=params or None)
        except httpx.HTTPError as exc:
            raise StateUnavailable(f"cannot reach the daemon at {self.url}: {exc}") from None
        try:
            body = r.json()
        except ValueError:
            body = {"error": "bad_response", "detail": r.text[:200]}
        if r.status_code >= 500:
            raise StateUnavailable(f"the daemon at {self.url} answered {r.status_code}: {body}")
        return r.status_code, body
