# ruff: noqa: F811 - the RB-02 fixtures, imported, are then asked for by name
"""What a resolve leaves to a human reaches one, through each pager's real HTTP API
(a local capture server): RB-02 at resolve, polygon still down, "replay the DLQ by hand"."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from remediator.paging.base import SEVERITIES, HttpPager
from remediator.paging.opsgenie import OpsgeniePager
from remediator.paging.pagerduty import PagerDutyPager
from remediator.paging.slack import SlackPager
from remediator.testing import resolved
from tests.runbooks import _rb0103_fixtures as fx
from tests.runbooks.test_rb02 import (  # noqa: F401 - fixtures
    ALERT,
    cache,
    fake,
    harness,
    http,
    kube,
    redis_prefix,
    target,
)

HAND_WORK = "replay the DLQ by hand once it recovers"


class Capture:
    def __init__(self) -> None:
        self.requests: list[tuple[str, Any]] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append((request.path, json.loads(await request.read())))
        return web.json_response({"status": "success"}, status=202)


@pytest.fixture
async def capture() -> AsyncIterator[Capture]:
    cap = Capture()
    app = web.Application()
    app.router.add_post("/{tail:.*}", cap.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    cap.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield cap
    await runner.cleanup()


def make_pager(kind: str, url: str) -> HttpPager:
    if kind == "pagerduty":
        return PagerDutyPager("routing-key-0123456789", f"{url}/v2/enqueue", severities=SEVERITIES)
    if kind == "opsgenie":
        return OpsgeniePager("genie-key-0123456789", url, severities=SEVERITIES)
    return SlackPager(f"{url}/services/T0/B0/secret-token-xyz", severities=SEVERITIES)


@pytest.mark.parametrize("kind", ["pagerduty", "opsgenie", "slack"])
async def test_the_resolve_tells_a_human_what_is_left(
    kind, capture, target, fake, kube, http, cache, redis_prefix
) -> None:
    checks, router = http
    fx.providers_answer(router, down={"polygon": 502})
    router.route(url__startswith=capture.url).pass_through()
    pager = make_pager(kind, capture.url)
    async with harness(target, kube, checks, cache, redis_prefix, pager=pager) as h:
        await h.deliver(ALERT)
        fired = len(capture.requests)
        await h.deliver(resolved(ALERT))
        [run] = await h.runs()
    await pager.aclose()
    after = capture.requests[fired:]
    key = f"remediator/{run['id']}"
    if kind == "pagerduty":
        [(_, resolve), (_, todo)] = after
        assert resolve == {
            "routing_key": "routing-key-0123456789",
            "event_action": "resolve",
            "dedup_key": key,
        }
        assert todo["event_action"] == "trigger"
        assert todo["dedup_key"] == f"{key}/left-for-human"
        assert todo["payload"]["severity"] == "warning"
        assert "resolved; left for you" in todo["payload"]["summary"]
        [item] = todo["payload"]["custom_details"]["left_for_human"]
        assert item.endswith(HAND_WORK), item
    elif kind == "opsgenie":
        [(path, close)] = after
        assert path.endswith("/close")
        assert close["note"].startswith("The alert resolved. Left for you:\n- ")
        assert HAND_WORK in close["note"]
    else:
        [(_, message)] = after
        assert message["text"].startswith("Resolved: ")
        assert "Left for you:\n- " in message["text"] and HAND_WORK in message["text"]


async def test_a_resolve_that_leaves_nothing_is_a_bare_resolve(
    capture, target, fake, kube, http, cache, redis_prefix
) -> None:
    checks, router = http
    status = router.get(fx.PROVIDER_URLS["polygon"])
    status.respond(503, json={"status": "down"})
    router.route(url__startswith=capture.url).pass_through()
    pager = make_pager("pagerduty", capture.url)
    async with harness(target, kube, checks, cache, redis_prefix, pager=pager) as h:
        await h.deliver(ALERT)
        fired = len(capture.requests)
        status.respond(200, json={"status": "ok"})  # recovered: the DLQ replays itself
        await h.deliver(resolved(ALERT))
    await pager.aclose()
    [(_, resolve)] = capture.requests[fired:]
    assert resolve["event_action"] == "resolve" and "payload" not in resolve
