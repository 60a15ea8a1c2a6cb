"""One HTTP POST, its answer as data: the transport of the pagers and Slack's Web API.

The pagers build their requests and classify the answers (``paging/base.py``); this
module only sends them, so httpx stays in ``clients/``. Network trouble is a
``PostFailed`` that says whether it was a timeout, never an httpx exception; the
caller decides what it means (the outbox retries later).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True, slots=True)
class PostAnswer:
    status: int
    text: str
    headers: Mapping[str, str]  # names in lower case

    def json(self) -> Any:
        """The body as JSON; ValueError when it is not."""
        return json.loads(self.text)


class PostFailed(Exception):
    """No answer: ``kind`` is the transport's error class name (``ConnectError``...).

    ``detail`` is the transport's message, which can carry the URL: redact it before
    it goes anywhere a secret URL must not.
    """

    def __init__(self, kind: str, detail: str, *, timeout: bool) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail
        self.timeout = timeout


class HttpPoster:
    """A connection pool created on first use and closed by ``aclose`` if it is ours.

    ``client`` lets a caller share one (tests hand in one whose transport they
    control); a shared client is left open.
    """

    def __init__(self, client: httpx.AsyncClient | None = None) -> None:
        self._client = client
        self._owns_client = client is None

    async def post(
        self, url: str, body: bytes, headers: Mapping[str, str], time_limit: float
    ) -> PostAnswer:
        if self._client is None:
            self._client = httpx.AsyncClient()
        try:
            response = await self._client.post(
                url, content=body, headers=dict(headers), timeout=time_limit
            )
        except httpx.TimeoutException as exc:
            raise PostFailed(type(exc).__name__, str(exc), timeout=True) from None
        except httpx.HTTPError as exc:
            raise PostFailed(type(exc).__name__, str(exc), timeout=False) from None
        return PostAnswer(
            status=response.status_code,
            text=response.text,
            headers={name.lower(): value for name, value in response.headers.items()},
        )

    async def aclose(self) -> None:
        if self._owns_client and self._client is not None:
            await self._client.aclose()
        self._client = None
