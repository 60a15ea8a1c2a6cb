"""The parts of Slack approvals on their own: the signature check, the config keys,
the Web API answers (``ok``/``error``) as delivery results, and the bot pager's
post-then-update against a real state store."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
import respx

from remediator.daemon import build_pagers, secret_values
from remediator.errors import ConfigError
from remediator.paging.base import Delivered, PageContent, PageEvent, Rejected, RetryLater
from remediator.paging.slack import SlackPager
from remediator.paging.slack_api import SlackWebApi
from remediator.paging.slack_bot import SlackBotPager
from remediator.server.slack_request import MAX_SKEW, verify
from remediator.settings import from_mapping
from remediator.state import slack as slack_state
from remediator.state.store import StateStore
from tests.fixtures.slack import sign

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
TOKEN = "xoxb-0000-1111-secret-token-value"
API = "http://slack.test/api"


def test_signature_accepts_slacks_and_refuses_anything_else() -> None:
    now = time.time()
    ts = int(now)
    body = b"payload=%7B%7D"
    good = sign(SECRET, ts, body)
    assert verify(SECRET.encode(), str(ts), good, body, now) is None
    assert verify(b"other-secret", str(ts), good, body, now) == "bad signature"
    assert verify(SECRET.encode(), str(ts), good, body + b"x", now) == "bad signature"
    assert verify(SECRET.encode(), str(ts), good.upper(), body, now) == "bad signature"
    for skew in (MAX_SKEW + 1, -MAX_SKEW - 1):
        old = int(now - skew)
        assert "stale" in str(verify(SECRET.encode(), str(old), sign(SECRET, old, body), body, now))
    assert verify(SECRET.encode(), None, good, body, now) is not None
    assert verify(SECRET.encode(), str(ts), None, body, now) is not None
    # Whatever bytes the headers carry (aiohttp hands them over surrogate-escaped).
    for bad_ts in ("", "-1", "1e9", "\udcff", "9" * 40, " "):
        assert verify(SECRET.encode(), bad_ts, good, body, now) is not None
    assert verify(SECRET.encode(), str(ts), "v0=\udcff\udcfe", body, now) == "bad signature"


def _settings(**slack: object) -> object:
    return from_mapping({"pagers": {"slack": slack}}, env={})


def test_config_keys_are_strict_and_name_the_key() -> None:
    with pytest.raises(ConfigError, match=r"pagers.slack: .*channel is required"):
        _settings(bot_token=TOKEN)
    with pytest.raises(ConfigError, match=r"pagers.slack: .*webhook_url or bot_token"):
        _settings(channel="#ops")
    with pytest.raises(ConfigError, match=r"pagers.slack.chanel: unknown key"):
        _settings(bot_token=TOKEN, chanel="#ops")
    approvals = {"slack": {"signing_secret": SECRET, "approvers": {"U024BE7LH": "alice"}}}
    s = from_mapping({"approvals": approvals}, env={})
    assert s.approvals.slack is not None and s.approvals.slack.approvers == {"U024BE7LH": "alice"}
    with pytest.raises(ConfigError, match=r"approvals.slack.approver: unknown key"):
        from_mapping({"approvals": {"slack": {"signing_secret": SECRET, "approver": {}}}}, env={})
    with pytest.raises(ConfigError, match=r"approvals.slack.approvers: .*not a Slack user id"):
        from_mapping(
            {"approvals": {"slack": {"signing_secret": SECRET, "approvers": {"alice": "x"}}}},
            env={},
        )
    with pytest.raises(ConfigError, match=r"approvals.slack.signing_secret: .*characters"):
        from_mapping({"approvals": {"slack": {"signing_secret": "short"}}}, env={})
    # The secrets are registered for redaction from every log line, and never repr'd.
    full = from_mapping(
        {
            "pagers": {"slack": {"bot_token": TOKEN, "channel": "#ops"}},
            "approvals": approvals,
        },
        env={},
    )
    assert {TOKEN, SECRET} <= set(secret_values(full))
    assert TOKEN not in repr(full) and SECRET not in repr(full)


async def test_bot_pager_is_chosen_with_a_token_and_the_webhook_without_a_store(
    tmp_path: Path,
) -> None:
    settings = from_mapping(
        {
            "pagers": {
                "slack": {
                    "bot_token": TOKEN,
                    "channel": "#ops",
                    "webhook_url": "https://hooks.slack.test/services/T0/B0/abcdefgh",
                }
            }
        },
        env={},
    )
    store = await StateStore.open(f"sqlite:///{tmp_path}/s.db")
    try:
        assert isinstance(build_pagers(settings, store)["slack"], SlackBotPager)
        assert isinstance(build_pagers(settings)["slack"], SlackPager)
        assert TOKEN not in repr(build_pagers(settings, store)["slack"])
    finally:
        await store.close()


@respx.mock
async def test_web_api_answers_become_delivery_results() -> None:
    api = SlackWebApi(TOKEN, API)
    route = respx.post(f"{API}/chat.postMessage")
    cases = [
        (httpx.Response(200, json={"ok": True, "channel": "C1", "ts": "1.2"}), Delivered),
        (httpx.Response(200, json={"ok": False, "error": "invalid_auth"}), Rejected),
        (httpx.Response(200, json={"ok": False, "error": "channel_not_found"}), Rejected),
        (httpx.Response(200, json={"ok": False, "error": "internal_error"}), RetryLater),
        (httpx.Response(429, headers={"Retry-After": "7"}, json={"ok": False}), RetryLater),
        (httpx.Response(503, text="down"), RetryLater),
        (httpx.Response(200, text="<html>"), RetryLater),
    ]
    for answer, kind in cases:
        route.mock(return_value=answer)
        result = await api.call("chat.postMessage", {"channel": "#ops", "text": "x"})
        assert isinstance(result.result, kind), (answer, result)
        assert TOKEN not in repr(result)
    assert route.calls.last.request.headers["Authorization"] == f"Bearer {TOKEN}"
    route.mock(return_value=httpx.Response(429, headers={"Retry-After": "7"}, json={"ok": False}))
    result = await api.call("chat.postMessage", {})
    assert isinstance(result.result, RetryLater) and result.result.after == 7.0
    await api.aclose()


def _content(run_id: str) -> PageContent:
    return PageContent(
        dedup_key=f"remediator/{run_id}",
        severity="P2",
        title="[RB-03] AlertStorm: storm",
        alertname="AlertStorm",
        runbook="RB-03",
        rule="storm",
        mode="live",
        details={"run_id": run_id},
    )


@respx.mock
async def test_bot_pager_posts_once_then_updates_and_reposts_a_deleted_message(
    tmp_path: Path,
) -> None:
    store = await StateStore.open(f"sqlite:///{tmp_path}/s.db")
    pager = SlackBotPager(SlackWebApi(TOKEN, API), "#ops", store)
    post = respx.post(f"{API}/chat.postMessage").mock(
        return_value=httpx.Response(200, json={"ok": True, "channel": "C0OPS", "ts": "10.1"})
    )
    update = respx.post(f"{API}/chat.update").mock(
        return_value=httpx.Response(200, json={"ok": True, "channel": "C0OPS", "ts": "10.1"})
    )
    try:
        event = PageEvent("trigger", _content("r1"))
        assert isinstance(await pager.send(event), Delivered)
        assert await slack_state.message_for(store, "remediator/r1") == slack_state.MessageRef(
            "C0OPS", "10.1"
        )
        assert isinstance(await pager.send(PageEvent("resolve", _content("r1"))), Delivered)
        assert (post.call_count, update.call_count) == (1, 1)
        body = update.calls.last.request.content
        assert b'"channel":"C0OPS"' in body and b'"ts":"10.1"' in body and b"Resolved: " in body
        # The message was deleted in Slack: the next page is posted anew and kept.
        update.mock(
            return_value=httpx.Response(200, json={"ok": False, "error": "message_not_found"})
        )
        post.mock(
            return_value=httpx.Response(200, json={"ok": True, "channel": "C0OPS", "ts": "11.1"})
        )
        assert isinstance(await pager.send(event), Delivered)
        assert post.call_count == 2
        assert (await slack_state.message_for(store, "remediator/r1")).ts == "11.1"  # type: ignore[union-attr]
    finally:
        await pager.aclose()
        await store.close()


@respx.mock
async def test_bot_pager_still_posts_when_the_state_store_is_down(tmp_path: Path) -> None:
    """The direct page of a state store outage goes out, without buttons."""
    store = await StateStore.open(f"sqlite:///{tmp_path}/s.db")
    await store.close()  # every read now raises StateUnavailable
    pager = SlackBotPager(SlackWebApi(TOKEN, API), "#ops", store)
    post = respx.post(f"{API}/chat.postMessage").mock(
        return_value=httpx.Response(200, json={"ok": True, "channel": "C0OPS", "ts": "12.1"})
    )
    content = PageContent(
        dedup_key="remediator/r9",
        severity="P1",
        title="state store unreachable",
        alertname="AlertStorm",
        runbook="RB-03",
        rule="storm",
        mode="live",
        details={
            "run_id": "r9",
            "approvals": [
                {"id": 4, "step": "x", "title": "X", "call": "DELETE", "state": "pending"}
            ],
        },
    )
    try:
        assert isinstance(await pager.send(PageEvent("trigger", content)), Delivered)
        body = post.calls.last.request.content
        assert b"state store unreachable" in body and b'"actions"' not in body
        assert b"remediator approve 4" in body  # the CLI way is still shown
    finally:
        await pager.aclose()


def test_runbooks_whose_approvals_cannot_reach_slack_are_named() -> None:
    """With PagerDuty beside the Slack bot, P0/P1 pages (and the approval buttons of
    RB-03..RB-06) go to PagerDuty by default: named, so the daemon warns at start;
    routing P1 to Slack too brings RB-03's back."""
    from remediator.runbook_api.registry import load_entry_points
    from remediator.server.slack import unrouted_approvals

    registry = load_entry_points()
    with_approvals = sorted(
        rb.id for rb in registry if any(s.approval == "approve" for s in rb.steps)
    )
    slack = {"bot_token": TOKEN, "channel": "#ops"}
    pd = {"routing_key": "0123456789abcdef0123456789abcdef"}
    alone = from_mapping({"pagers": {"slack": slack}}, env={})
    assert unrouted_approvals(alone, registry) == []  # Slack alone takes every severity
    both = from_mapping({"pagers": {"slack": slack, "pagerduty": pd}}, env={})
    unrouted = unrouted_approvals(both, registry)
    assert "RB-03" in unrouted and unrouted == [
        i for i in with_approvals if registry.get(i).severity in ("P0", "P1")
    ]
    routed = from_mapping(
        {
            "pagers": {
                "slack": slack,
                "pagerduty": pd,
                "routes": {
                    "P0": ["pagerduty", "slack"],
                    "P1": ["pagerduty", "slack"],
                    "P2": ["slack"],
                    "P3": ["slack"],
                },
            }
        },
        env={},
    )
    assert unrouted_approvals(routed, registry) == []
