"""Slack approvals: how fast a click is answered, and how soon its step starts.

Starts the daemon in process (Postgres state in a fresh schema, or SQLite), a local
capture server standing in for the Slack Web API and the response_url, and fires N
alerts of a bench runbook whose one mutating step needs approval. Each run's page
is posted with buttons (chat.postMessage, captured); then N signed clicks on
"Approve", one after another as people click, each timed:

- click -> 200: from sending the request to reading Slack's acknowledgement (Slack
  wants it within 3 s);
- click -> step started: from sending the click to the ``started_at`` the approved
  step's row records (the maintenance loop runs it through the mutation gate).

    .venv/bin/python -m bench.slack_approvals [--clicks 100] [--state postgres|sqlite]

Prints one JSON object. The client shares the daemon's event loop (as a busy
daemon's own work would), so the figures include that contention. No target is
touched: the step only records that it ran.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from aiohttp import web

from bench.common import PG_DSN, drop_schema, new_schema, percentile, with_search_path
from remediator import logs
from remediator.daemon import Daemon
from remediator.metrics import Metrics
from remediator.runbook_api.context import StepContext
from remediator.runbook_api.registry import Registry
from remediator.runbook_api.steps import Done, Runbook, Step, describe
from remediator.server.app import create_app
from remediator.settings import from_mapping
from remediator.testing import make_alert, make_payload
from tests.fixtures.slack import SlackCapture, blocks_of, click

SECRET = "bench-signing-secret-0123456789abcdef"
APPROVER = "U0BENCH01"


async def _noop(*, ctx: StepContext, **_: Any) -> Done:
    return Done("recorded only", changes={"nothing": True})


async def _undo(*, ctx: StepContext, changes: Any, **_: Any) -> Done:
    return Done("nothing to put back")


RUNBOOK = Runbook(
    id="RB-SLACK",
    title="Slack approval bench",
    severity="P2",
    target=lambda labels, params: labels.get("instance", "none"),
    steps=(
        Step(
            "act",
            "mitigate",
            "Act after approval",
            _noop,
            describe("UPDATE nothing SET x = 1"),
            mutates=True,
            approval="approve",
            undo=_undo,
        ),
    ),
)

RULES = (
    "rules:\n  - name: slack-bench\n    matchers: ['alertname=\"SlackBench\"']\n"
    "    runbook: RB-SLACK\n"
)


async def _serve(daemon: Daemon) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(create_app(daemon), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


async def measure(clicks: int, state: str, workdir: Path) -> dict[str, Any]:
    rules = workdir / "rules.yaml"
    rules.write_text(RULES)
    registry = Registry()
    registry.register(RUNBOOK)
    async with SlackCapture() as slack:
        settings = from_mapping(
            {
                "mode": "live",
                "state": state,
                "rules": str(rules),
                "pagers": {
                    "slack": {
                        "bot_token": "xoxb-bench",
                        "channel": "#ops",
                        "api_url": slack.api_url,
                    },
                    # Every run's page its own message: none folded into a summary.
                    "max_pages_per_hour": 100_000,
                },
                "approvals": {
                    "slack": {"signing_secret": SECRET, "approvers": {APPROVER: "bench"}}
                },
            },
            env={},
        )
        daemon = Daemon(settings, metrics=Metrics(), registry=registry)
        await daemon.start()
        runner, url = await _serve(daemon)
        try:
            async with httpx.AsyncClient(base_url=url, timeout=30) as http:
                alerts = [make_alert("SlackBench", {"instance": f"i-{n}"}) for n in range(clicks)]
                for start in range(0, clicks, 50):
                    r = await http.post(
                        "/api/v1/alerts", json=make_payload(*alerts[start : start + 50])
                    )
                    assert r.status_code == 202, r.text

                def values(reqs: list[Any]) -> list[str]:
                    return [
                        e["value"]
                        for r in reqs
                        if r.path == "/api/chat.postMessage"
                        for b in blocks_of(r.json, "actions")
                        for e in b["elements"]
                        if e["action_id"] == "remediator_approve"
                    ]

                await slack.wait_for(lambda reqs: len(values(reqs)) >= clicks, within=120)
                answered: list[float] = []
                sent_at: dict[int, float] = {}
                for value in values(slack.requests)[:clicks]:
                    signed = click(
                        SECRET,
                        user_id=APPROVER,
                        value=value,
                        response_url=slack.response_url(value.split(":")[0]),
                    )
                    sent_at[int(value.split(":")[0])] = time.time()
                    t0 = time.perf_counter()
                    r = await http.post(
                        "/api/v1/slack/interactions", content=signed.body, headers=signed.headers
                    )
                    answered.append(time.perf_counter() - t0)
                    assert r.status_code == 200, r.text
                started = await _started(daemon, sent_at, within=120)
        finally:
            await runner.cleanup()
            await daemon.stop()
    to_start = [started[i] - sent_at[i] for i in started]
    ms = 1000.0
    return {
        "state": state.split(":", 1)[0],
        "clicks": clicks,
        "click_to_200_ms": {
            "p50": round(percentile(answered, 50) * ms, 1),
            "p99": round(percentile(answered, 99) * ms, 1),
            "max": round(max(answered) * ms, 1),
        },
        "click_to_step_started_ms": {
            "p50": round(percentile(to_start, 50) * ms, 1),
            "p99": round(percentile(to_start, 99) * ms, 1),
            "max": round(max(to_start) * ms, 1),
        },
        "steps_started": len(to_start),
    }


async def _started(daemon: Daemon, sent_at: dict[int, float], within: float) -> dict[int, float]:
    """approval id -> when its approved step's row says it started."""
    deadline = time.monotonic() + within
    found: dict[int, float] = {}
    while len(found) < len(sent_at) and time.monotonic() < deadline:
        for approval_id in sent_at:
            if approval_id in found:
                continue
            a = await daemon.store.get_approval(approval_id)
            if a is None or a["state"] not in ("executed", "failed"):
                continue
            steps = await daemon.store.steps_for_run(a["run_id"], "approved")
            if steps:
                found[approval_id] = float(steps[0]["started_at"])
        await asyncio.sleep(0.1)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clicks", type=int, default=100)
    parser.add_argument("--state", choices=("postgres", "sqlite"), default="postgres")
    args = parser.parse_args()
    logs.configure(json=True, level="warning")
    with tempfile.TemporaryDirectory() as tmp:
        schema = None
        if args.state == "postgres":
            schema = new_schema("slackbench")
            state = with_search_path(PG_DSN, schema)
        else:
            state = f"sqlite:///{tmp}/state.db"
        try:
            result = asyncio.run(measure(args.clicks, state, Path(tmp)))
        finally:
            if schema is not None:
                drop_schema(schema)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
