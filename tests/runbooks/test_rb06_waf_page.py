# ruff: noqa: F811 - the RB-06 fixtures, imported, are then asked for by name
"""RB-06 step 2 on the whole run: the page lists what the WAF sampled from the source
address, next to the block in the same WAF.

moto keeps WAFv2 IP sets and web ACLs but does not implement GetSampledRequests. So
the real AwsClient talks to a local endpoint that answers GetSampledRequests (and
GetWebACL, for the rules to sample) in WAFv2's JSON protocol and passes every other
call through to moto: the block is real moto state, the samples are what AWS would
answer. What is checked is the page and the IP set.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from aiohttp import web

from remediator.runbook_api.context import Clients
from remediator.testing import Harness
from tests.fixtures.dawsos import SUSPICIOUS_IP
from tests.runbooks import _rb0406_fixtures as fx
from tests.runbooks.test_rb06 import (  # noqa: F401 - fixtures
    EXISTING_BLOCK,
    SUSPICIOUS,
    WEB_ACL,
    WEB_ACL_ID,
    World,
    _sample,
    moto_url,
    world,
)

SAMPLES = {
    "rate-limit": [
        _sample(SUSPICIOUS_IP, "/api/portfolio/1", weight=40),
        _sample("203.0.113.7", "/api/portfolio/1", action="ALLOW"),
    ],
    "sqli": [_sample(SUSPICIOUS_IP, "/search?q=1'%20OR%201=1--")],
}


@asynccontextmanager
async def waf_with_samples(moto: str) -> AsyncIterator[str]:
    """WAFv2 in front of moto, with the two reads moto lacks."""

    async def handle(request: web.Request) -> web.Response:
        op = request.headers.get("X-Amz-Target", "").rsplit(".", 1)[-1]
        body = await request.read()
        if op == "GetWebACL":
            rules = [
                {
                    "Name": rule,
                    "Priority": i,
                    "Statement": {},
                    "VisibilityConfig": {
                        "SampledRequestsEnabled": True,
                        "CloudWatchMetricsEnabled": True,
                        "MetricName": rule,
                    },
                }
                for i, rule in enumerate(SAMPLES)
            ]
            arn = f"arn:aws:wafv2:us-east-1:1:regional/webacl/{WEB_ACL}/{WEB_ACL_ID}"
            acl = {"Name": WEB_ACL, "Id": WEB_ACL_ID, "ARN": arn, "Rules": rules}
            return web.json_response({"WebACL": acl, "LockToken": "t"})
        if op == "GetSampledRequests":
            asked: dict[str, Any] = await request.json()
            items = SAMPLES[asked["RuleMetricName"]]
            return web.json_response(
                {
                    "SampledRequests": items,
                    "PopulationSize": len(items),
                    "TimeWindow": asked["TimeWindow"],
                }
            )
        headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
        async with httpx.AsyncClient() as client:
            answer = await client.post(moto + request.path_qs, content=body, headers=headers)
        kept = {k: v for k, v in answer.headers.items() if k.lower() == "content-type"}
        return web.Response(body=answer.content, status=answer.status_code, headers=kept)

    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def test_the_page_lists_the_waf_samples_from_the_source_ip(
    world: World, moto_url: str
) -> None:
    rules = world.rules(params={"waf_web_acl_name": WEB_ACL, "waf_web_acl_id": WEB_ACL_ID})
    async with waf_with_samples(moto_url) as url, fx.aws_client(url) as aws:
        clients = Clients(database=world.db, aws=aws, kubernetes=world.clients.kubernetes)
        async with Harness(fx.registry(), rules, clients=clients) as h:
            await h.deliver(SUSPICIOUS)
            [run] = await h.runs()
            steps = await fx.steps_by_name(h, run["id"])
            body = fx.page_text(h.pager.triggers()[-1])
    assert world.blocked() == {EXISTING_BLOCK, f"{SUSPICIOUS_IP}/32"}  # moto's IP set
    assert steps["waf_sampled_requests"]["outcome"] == "applied"
    done = body.split("Skipped (why)")[0]
    [line] = [x for x in done.splitlines() if "sampled requests" in x]
    assert line.startswith(
        "- Read the WAF's sampled requests from the source address: 2 of 3 sampled requests"
        f" in the last 60 min came from {SUSPICIOUS_IP}/32"
    ), line
    assert "rate-limit BLOCK: 1, sqli BLOCK: 1" in line, line
