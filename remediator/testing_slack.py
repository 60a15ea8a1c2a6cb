"""Slack, as the approval flow meets it, for tests (ours and users').

- ``click``: a button click signed the way Slack signs it (form-encoded ``payload=``
  JSON of type ``block_actions``, ``X-Slack-Request-Timestamp`` and
  ``X-Slack-Signature: v0=<hex HMAC-SHA256 of "v0:{ts}:{body}">``).
- ``SlackCapture``: a local HTTP server on 127.0.0.1 standing in for the Web API
  (``/api/chat.postMessage``, ``/api/chat.update``, answered like Slack: HTTP 200 with
  ``ok``, ``channel`` and ``ts``) and for the clicks' ``response_url``
  (``/response/<key>``). It records every request for assertions.

It must never listen on anything but loopback.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

__all__ = ["Captured", "SignedClick", "SlackCapture", "click", "sign"]

CHANNEL_ID = "C0PAGES01"


@dataclass(frozen=True)
class SignedClick:
    body: bytes
    headers: dict[str, str]


def sign(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(
        secret.encode(), b"v0:" + str(timestamp).encode() + b":" + body, hashlib.sha256
    ).hexdigest()
    return f"v0={digest}"


def click(
    secret: str,
    *,
    user_id: str,
    value: str,
    action_id: str = "remediator_approve",
    response_url: str | None = None,
    channel_id: str = CHANNEL_ID,
    message_ts: str = "1700000000.000100",
    timestamp: int | None = None,
) -> SignedClick:
    """A signed ``block_actions`` request for one button of a message."""
    payload = {
        "type": "block_actions",
        "user": {"id": user_id, "username": user_id.lower(), "team_id": "T0TEST"},
        "api_app_id": "A0TEST",
        "team": {"id": "T0TEST", "domain": "test"},
        "container": {
            "type": "message",
            "message_ts": message_ts,
            "channel_id": channel_id,
            "is_ephemeral": False,
        },
        "trigger_id": "1.2.3",
        "channel": {"id": channel_id, "name": "ops"},
        "response_url": response_url,
        "actions": [
            {
                "type": "button",
                "action_id": action_id,
                "block_id": "approval",
                "text": {"type": "plain_text", "text": "Approve"},
                "value": value,
                "action_ts": f"{time.time():.6f}",
            }
        ],
    }
    body = urlencode({"payload": json.dumps(payload)}).encode()
    ts = int(time.time()) if timestamp is None else timestamp
    return SignedClick(
        body,
        {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Slack-Request-Timestamp": str(ts),
            "X-Slack-Signature": sign(secret, ts, body),
        },
    )


@dataclass
class Captured:
    path: str
    headers: dict[str, str]
    json: dict[str, Any]
    at: float = field(default_factory=time.time)


class SlackCapture:
    """``async with SlackCapture() as slack:`` then ``slack.api_url`` and
    ``slack.response_url(key)``; ``slack.requests`` holds what arrived, in order."""

    def __init__(self) -> None:
        self.requests: list[Captured] = []
        self._ts = itertools.count(1)
        self._changed = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.url = ""

    @property
    def api_url(self) -> str:
        return f"{self.url}/api"

    def response_url(self, key: str) -> str:
        return f"{self.url}/response/{key}"

    def calls(self, path: str) -> list[Captured]:
        return [r for r in self.requests if r.path == path]

    async def wait_for(
        self, predicate: Callable[[list[Captured]], bool], within: float = 30.0
    ) -> None:
        """Wait until ``predicate(requests)`` holds; AssertionError after ``within`` s."""
        deadline = time.monotonic() + within
        while not predicate(self.requests):
            left = deadline - time.monotonic()
            if left <= 0:
                got = [r.path for r in self.requests][-20:]
                raise AssertionError(f"Slack capture: condition not met; last requests: {got}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), min(left, 0.2))
            except TimeoutError:
                pass

    async def _record(self, request: web.Request) -> Captured:
        try:
            body = await request.json()
        except ValueError:
            body = {"_raw": (await request.read()).decode(errors="replace")}
        captured = Captured(request.path, dict(request.headers), body)
        self.requests.append(captured)
        self._changed.set()
        return captured

    async def _api(self, request: web.Request) -> web.Response:
        captured = await self._record(request)
        if not request.headers.get("Authorization", "").startswith("Bearer "):
            return web.json_response({"ok": False, "error": "not_authed"})
        if request.path.endswith("chat.update"):
            return web.json_response(
                {"ok": True, "channel": captured.json.get("channel"), "ts": captured.json.get("ts")}
            )
        ts = f"1700000000.{next(self._ts):06d}"
        return web.json_response({"ok": True, "channel": CHANNEL_ID, "ts": ts})

    async def _respond(self, request: web.Request) -> web.Response:
        await self._record(request)
        return web.json_response({"ok": True})

    async def __aenter__(self) -> SlackCapture:
        app = web.Application()
        app.router.add_post("/api/{method}", self._api)
        app.router.add_post("/response/{key}", self._respond)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def blocks_of(message: Mapping[str, Any], kind: str) -> list[dict[str, Any]]:
    """The blocks of one type in a message body."""
    return [b for b in message.get("blocks", []) if b.get("type") == kind]
