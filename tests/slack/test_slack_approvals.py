"""Approvals from Slack buttons, end to end: a signed click on the page's button
deletes RB-03's duplicate notifications in the real DawsOS Postgres, exactly once,
through the same decision path as `remediator approve`; every refused click changes
nothing (target rows, approval, audit trail) and the message says why."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from remediator.daemon import Daemon
from remediator.metrics import Metrics
from remediator.server.app import create_app
from remediator.testing import make_payload, resolved
from tests.fixtures.slack import blocks_of, click, sign
from tests.slack.conftest import ALERT, ALICE, BOT_TOKEN, SECRET, STRANGER, World, slack_world

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
async def world(pg_schema_dsn: str, dawsos: Any, tmp_path: Path) -> Any:
    async with slack_world(pg_schema_dsn, dawsos, tmp_path) as w:
        await w.fire()
        yield w


def texts(message: dict[str, Any]) -> str:
    """Every text of a message body, in order, for assertions on words."""
    out = [message.get("text", "")]
    for block in message.get("blocks", []):
        if "text" in block:
            out.append(block["text"]["text"])
        for element in block.get("elements", []):
            if isinstance(element.get("text"), str):
                out.append(element["text"])
    return "\n".join(out)


async def unchanged(w: World, step: str = "delete_duplicates") -> None:
    """The target rows, the approval and the audit trail show no decision."""
    approval = (await w.approvals())[step]
    assert approval["state"] == "pending" and approval["decided_by"] is None
    assert approval["slack_nonce_used_at"] is None
    assert await w.approved_steps() == []
    assert set(w.duplicates) <= set(await w.notification_ids())


async def response(w: World, key: str) -> dict[str, Any]:
    path = f"/response/{key}"
    await w.slack.wait_for(lambda reqs: any(r.path == path for r in reqs))
    return w.slack.calls(path)[-1].json


async def test_page_offers_buttons_with_the_rendered_call(world: World) -> None:
    message = await world.offered()
    post = world.slack.calls("/api/chat.postMessage")[0]
    assert post.headers["Authorization"] == f"Bearer {BOT_TOKEN}"
    assert message["channel"] == "#ops"
    assert message["blocks"][0]["type"] == "header"
    assert "AlertStorm" in message["blocks"][0]["text"]["text"]
    approvals = await world.approvals()
    # scale_evaluator_down is offered only where Kubernetes is configured (it is not here).
    assert "delete_duplicates" in approvals
    for step, a in approvals.items():
        [call] = [
            b
            for b in blocks_of(message, "section")
            if b.get("block_id") == f"approval-{a['id']}-call"
        ]
        assert call["text"]["text"].startswith(f"*Approval {a['id']}: ")
        if step == "delete_duplicates":
            assert "DELETE FROM notifications WHERE id = ANY($1::bigint[])" in call["text"]["text"]
        [actions] = [
            b for b in blocks_of(message, "actions") if b["block_id"] == f"approval-{a['id']}"
        ]
        approve, reject = actions["elements"]
        assert (approve["text"]["text"], approve["style"], approve["action_id"]) == (
            "Approve",
            "primary",
            "remediator_approve",
        )
        assert (reject["text"]["text"], reject["style"], reject["action_id"]) == (
            "Reject",
            "danger",
            "remediator_reject",
        )
        # Both buttons carry the approval id and its single-use nonce, as stored.
        assert approve["value"] == reject["value"] == f"{a['id']}:{a['slack_nonce']}"
    # The page text is there too, with the CLI alternative.
    assert f"remediator approve {approvals['delete_duplicates']['id']}" in texts(message)


async def test_valid_click_runs_the_step_once_and_updates_the_message(world: World) -> None:
    value = await world.button("delete_duplicates")
    approval_id = int(value.split(":")[0])
    before = await world.notification_ids()
    signed = click(SECRET, user_id=ALICE, value=value, response_url=world.slack.response_url("a"))
    r = await world.click(signed)
    assert r.status_code == 200

    async def executed() -> bool:
        return (await world.approvals())["delete_duplicates"]["state"] == "executed"

    await world.until(executed)
    approval = (await world.approvals())["delete_duplicates"]
    assert approval["decided_by"] == "alice via Slack"
    [step] = await world.approved_steps()
    assert (step["name"], step["outcome"]) == ("delete_duplicates", "applied")
    # Exactly the duplicates are gone from the target; nothing else.
    assert await world.notification_ids() == sorted(set(before) - set(world.duplicates))
    # The audit trail (`remediator actions`, GET /api/v1/actions) names the approver.
    entries = (await world.http.get("/api/v1/actions")).json()["actions"]
    [offered] = [e for e in entries if (e["phase"], e["name"]) == ("fire", "delete_duplicates")]
    assert offered["decided_by"] == "alice via Slack"
    assert offered["status"].endswith("by alice via Slack"), offered["status"]
    # Right after the click: the message, in place, says who approved and that it runs.
    first = world.slack.calls("/response/a")[0].json
    assert first["replace_original"] is True
    assert "Approved by alice at" in texts(first)
    assert f"approval-{approval_id}" not in [b.get("block_id") for b in blocks_of(first, "actions")]
    # Then the outcome, through chat.update of the posted message.
    posted = world.slack.calls("/api/chat.postMessage")[0]

    def outcome_shown(reqs: list[Any]) -> bool:
        return any(
            r.path == "/api/chat.update" and "deleted 3 duplicate notifications" in texts(r.json)
            for r in reqs
        )

    await world.slack.wait_for(outcome_shown)
    update = next(r for r in world.slack.calls("/api/chat.update") if outcome_shown([r]))
    assert update.json["channel"] == "C0PAGES01"
    assert update.json["ts"] == "1700000000.000001" and posted.json["channel"] == "#ops"
    assert update.headers["Authorization"] == f"Bearer {BOT_TOKEN}"
    status = [
        b
        for b in blocks_of(update.json, "context")
        if b.get("block_id") == f"approval-{approval_id}-status"
    ]
    assert "Approved by alice at" in status[0]["elements"][0]["text"]
    assert "applied: deleted 3 duplicate notifications" in status[0]["elements"][0]["text"]


async def test_bad_signature_is_401_and_changes_nothing(world: World) -> None:
    value = await world.button("delete_duplicates")
    signed = click("another-secret-of-32-characters!", user_id=ALICE, value=value)
    r = await world.click(signed)
    assert r.status_code == 401 and r.json()["error"] == "unauthorized"
    assert r.json()["detail"] == "bad signature"
    r = await world.http.post("/api/v1/slack/interactions", content=signed.body)
    assert r.status_code == 401
    await asyncio.sleep(0.3)
    await unchanged(world)


async def test_stale_timestamp_is_401_and_changes_nothing(world: World) -> None:
    value = await world.button("delete_duplicates")
    for when in (int(time.time()) - 301, int(time.time()) + 301):
        signed = click(SECRET, user_id=ALICE, value=value, timestamp=when)
        r = await world.click(signed)
        assert r.status_code == 401 and "stale" in r.json()["detail"]
    await asyncio.sleep(0.3)
    await unchanged(world)


async def test_unknown_user_gets_an_ephemeral_refusal_and_changes_nothing(world: World) -> None:
    value = await world.button("delete_duplicates")
    signed = click(
        SECRET, user_id=STRANGER, value=value, response_url=world.slack.response_url("u")
    )
    r = await world.click(signed)
    assert r.status_code == 200
    body = await response(world, "u")
    assert body["response_type"] == "ephemeral" and body["replace_original"] is False
    assert "not allowed" in body["text"] and STRANGER in body["text"]
    await asyncio.sleep(0.3)
    await unchanged(world)


async def test_replayed_click_changes_nothing_and_says_why(world: World) -> None:
    value = await world.button("delete_duplicates")
    signed = click(SECRET, user_id=ALICE, value=value, response_url=world.slack.response_url("r"))
    assert (await world.click(signed)).status_code == 200

    async def executed() -> bool:
        return (await world.approvals())["delete_duplicates"]["state"] == "executed"

    await world.until(executed)
    rows = await world.notification_ids()
    assert (await world.click(signed)).status_code == 200  # the same request again

    def told(reqs: list[Any]) -> bool:
        return any(r.path == "/response/r" and "changed nothing" in texts(r.json) for r in reqs)

    await world.slack.wait_for(told)
    notice = next(r for r in world.slack.calls("/response/r") if told([r])).json
    assert "this click was already taken" in texts(notice)
    assert len(await world.approved_steps()) == 1
    assert await world.notification_ids() == rows


async def test_click_on_an_already_decided_approval_changes_nothing(world: World) -> None:
    value = await world.button("delete_duplicates")
    approval_id = int(value.split(":")[0])
    # Decided first through the operator API (the same path as `remediator reject`).
    r = await world.http.post(f"/api/v1/actions/{approval_id}/reject")
    assert r.status_code == 200
    signed = click(SECRET, user_id=ALICE, value=value, response_url=world.slack.response_url("d"))
    assert (await world.click(signed)).status_code == 200
    body = await response(world, "d")
    assert f"approval {approval_id} was already rejected by local-operator" in texts(body)
    approval = (await world.approvals())["delete_duplicates"]
    assert approval["state"] == "rejected" and approval["decided_by"] == "local-operator"
    await asyncio.sleep(0.5)
    assert await world.approved_steps() == []
    assert set(world.duplicates) <= set(await world.notification_ids())


async def test_nonce_mismatch_changes_nothing(world: World) -> None:
    value = await world.button("delete_duplicates")
    approval_id = value.split(":")[0]
    forged = f"{approval_id}:{'0' * 32}"
    signed = click(SECRET, user_id=ALICE, value=forged, response_url=world.slack.response_url("m"))
    assert (await world.click(signed)).status_code == 200
    body = await response(world, "m")
    assert "does not match" in texts(body)
    # The command it offers instead pastes as it is (this daemon has no config file).
    assert f"`remediator approve {approval_id} --url http://127.0.0.1:" in texts(body)
    await unchanged(world)


async def test_malformed_bodies_are_400_never_5xx(world: World) -> None:
    await world.offered()
    bodies = [
        b"",
        b"payload=",
        b"payload=%7B",
        b"\xff\xfe",
        b"payload={}&payload={}",
        b"payload=" + b"%5B" * 5000,
        b'payload={"type":"block_actions","user":{"id":"U1"},'
        b'"actions":[{"action_id":"remediator_approve","value":"1:zz"}]}',
        b'payload={"type":"block_actions","user":{"id":"\\ud800"},'
        b'"actions":[{"action_id":"remediator_approve","value":"1:' + b"a" * 32 + b'"}]}',
    ]
    for body in bodies:
        ts = int(time.time())
        headers = {
            "X-Slack-Request-Timestamp": str(ts),
            "X-Slack-Signature": sign(SECRET, ts, body),
        }
        r = await world.http.post("/api/v1/slack/interactions", content=body, headers=headers)
        assert r.status_code == 400, (body[:40], r.status_code, r.text)
        assert r.json()["error"] == "bad_request"
    headers: dict[str, Any]
    for headers in (
        {"X-Slack-Request-Timestamp": "nan", "X-Slack-Signature": "v0=00"},
        {
            "X-Slack-Request-Timestamp": "\uff11\uff12\uff13".encode(),
            "X-Slack-Signature": b"v0=\xff",
        },
    ):
        r = await world.http.post("/api/v1/slack/interactions", content=b"x", headers=headers)
        assert r.status_code == 401
    await unchanged(world)


async def test_expired_approval_changes_nothing(
    pg_schema_dsn: str, dawsos: Any, tmp_path: Path
) -> None:
    async with slack_world(pg_schema_dsn, dawsos, tmp_path, engine={"approval_ttl": "4s"}) as w:
        await w.fire()
        value = await w.button("delete_duplicates")
        approval = (await w.approvals())["delete_duplicates"]
        await asyncio.sleep(max(0.0, approval["expires_at"] - time.time()) + 0.5)
        signed = click(SECRET, user_id=ALICE, value=value, response_url=w.slack.response_url("e"))
        assert (await w.click(signed)).status_code == 200
        body = await response(w, "e")
        assert "expired" in texts(body) and "changed nothing" in texts(body)
        approval = (await w.approvals())["delete_duplicates"]
        assert approval["state"] in ("pending", "expired") and approval["decided_by"] is None
        assert approval["slack_nonce_used_at"] is None
        assert await w.approved_steps() == []
        assert set(w.duplicates) <= set(await w.notification_ids())


async def test_kill_switch_records_the_approval_and_runs_it_once_after_resume(
    world: World,
) -> None:
    value = await world.button("delete_duplicates")
    assert (await world.http.post("/api/v1/pause")).status_code == 200
    signed = click(SECRET, user_id=ALICE, value=value, response_url=world.slack.response_url("k"))
    assert (await world.click(signed)).status_code == 200
    body = await response(world, "k")
    assert "the kill switch is on" in texts(body) and "remediator resume" in texts(body)
    approval = (await world.approvals())["delete_duplicates"]
    assert approval["state"] == "approved" and approval["decided_by"] == "alice via Slack"
    await asyncio.sleep(1.5)  # several maintenance passes: none may run it
    assert (await world.approvals())["delete_duplicates"]["state"] == "approved"
    assert await world.approved_steps() == []
    assert set(world.duplicates) <= set(await world.notification_ids())
    assert (await world.http.post("/api/v1/resume")).status_code == 200

    async def executed() -> bool:
        return (await world.approvals())["delete_duplicates"]["state"] == "executed"

    await world.until(executed)
    await asyncio.sleep(1.0)  # and it stays run once
    [step] = await world.approved_steps()
    assert step["outcome"] == "applied"
    assert not set(world.duplicates) & set(await world.notification_ids())


async def test_not_configured_is_404(pg_schema_dsn: str, dawsos: Any, tmp_path: Path) -> None:
    async with slack_world(pg_schema_dsn, dawsos, tmp_path, approvals={}) as w:
        signed = click(SECRET, user_id=ALICE, value=f"1:{'a' * 32}")
        r = await w.click(signed)
        assert r.status_code == 404 and "approvals.slack" in r.json()["detail"]


async def test_without_approvals_slack_the_page_offers_commands_not_buttons(
    pg_schema_dsn: str, dawsos: Any, tmp_path: Path
) -> None:
    """A bot token without approvals.slack: no click could be taken (404), so the
    message carries no buttons, and each pending approval shows its CLI commands."""
    async with slack_world(pg_schema_dsn, dawsos, tmp_path, approvals={}) as w:
        await w.fire()

        def posted(reqs: list[Any]) -> bool:
            return any(
                r.path == "/api/chat.postMessage" and "Approval " in texts(r.json) for r in reqs
            )

        await w.slack.wait_for(posted)
        message = next(r.json for r in w.slack.calls("/api/chat.postMessage") if posted([r]))
        assert blocks_of(message, "actions") == []
        approval = (await w.approvals())["delete_duplicates"]
        assert approval["state"] == "pending" and approval["slack_nonce"] is None
        [status] = [
            b
            for b in blocks_of(message, "context")
            if b.get("block_id") == f"approval-{approval['id']}-status"
        ]
        # The commands paste as they are: they name the daemon (--url or --config).
        assert re.search(
            rf"`remediator approve {approval['id']} --(url|config) \S+`"
            rf" or `remediator reject {approval['id']} --(url|config) \S+`",
            status["elements"][0]["text"],
        ), status["elements"][0]["text"]


async def test_concurrent_clicks_decide_once(world: World) -> None:
    """Double clicks, a replay racing the original, and Reject racing Approve: the
    nonce is consumed once, so exactly one click decides and the step runs once."""
    approve = await world.button("delete_duplicates")
    reject = await world.button("delete_duplicates", "remediator_reject")
    clicks = [
        click(SECRET, user_id=ALICE, value=approve, response_url=world.slack.response_url("c")),
        click(SECRET, user_id=ALICE, value=reject, action_id="remediator_reject"),
    ]
    answers = await asyncio.gather(*(world.click(clicks[i % 2]) for i in range(8)))
    assert [r.status_code for r in answers] == [200] * 8
    approval = (await world.approvals())["delete_duplicates"]
    assert approval["state"] in ("approved", "executing", "executed", "rejected")
    assert approval["decided_by"] == "alice via Slack"

    async def settled() -> bool:
        a = (await world.approvals())["delete_duplicates"]
        return a["state"] in ("executed", "rejected")

    await world.until(settled)
    await asyncio.sleep(0.5)
    steps = await world.approved_steps()
    if (await world.approvals())["delete_duplicates"]["state"] == "executed":
        assert len(steps) == 1 and not set(world.duplicates) & set(await world.notification_ids())
    else:
        assert steps == [] and set(world.duplicates) <= set(await world.notification_ids())


async def test_a_body_sent_in_pieces_is_read_whole(world: World) -> None:
    """The signature covers every byte: a body that arrives in several chunks (a
    real Slack payload is several KB) is read to its end before it is checked."""
    value = await world.button("delete_duplicates")
    signed = click(SECRET, user_id=ALICE, value=value, response_url=world.slack.response_url("p"))

    async def pieces() -> Any:
        for i in range(0, len(signed.body), 100):
            yield signed.body[i : i + 100]
            await asyncio.sleep(0.01)

    r = await world.http.post(
        "/api/v1/slack/interactions", content=pieces(), headers=signed.headers
    )
    assert r.status_code == 200

    async def decided() -> bool:
        return (await world.approvals())["delete_duplicates"]["decided_by"] == "alice via Slack"

    await world.until(decided)


async def test_reject_click_records_the_rejection_and_runs_nothing(world: World) -> None:
    value = await world.button("delete_duplicates", "remediator_reject")
    signed = click(
        SECRET,
        user_id=ALICE,
        value=value,
        action_id="remediator_reject",
        response_url=world.slack.response_url("x"),
    )
    assert (await world.click(signed)).status_code == 200
    body = await response(world, "x")
    assert "Rejected by alice at" in texts(body) and "nothing was run" in texts(body)
    approval = (await world.approvals())["delete_duplicates"]
    assert approval["state"] == "rejected" and approval["decided_by"] == "alice via Slack"
    await asyncio.sleep(0.5)
    assert await world.approved_steps() == []
    assert set(world.duplicates) <= set(await world.notification_ids())


async def test_two_replicas_take_one_click_once(world: World) -> None:
    """The same click delivered to two replicas sharing the Postgres state store (a
    retry, or a replay racing the original): one decides, the other changes nothing."""
    second = Daemon(world.daemon.settings, metrics=Metrics(), registry=world.daemon.registry)
    await second.start()
    runner = web.AppRunner(create_app(second), access_log=None, shutdown_timeout=5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        value = await world.button("delete_duplicates")
        signed = click(
            SECRET, user_id=ALICE, value=value, response_url=world.slack.response_url("h")
        )
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as other:
            answers = await asyncio.gather(
                *(
                    (world.http if i % 2 else other).post(
                        "/api/v1/slack/interactions", content=signed.body, headers=signed.headers
                    )
                    for i in range(6)
                )
            )
        assert [r.status_code for r in answers] == [200] * 6

        async def executed() -> bool:
            return (await world.approvals())["delete_duplicates"]["state"] == "executed"

        await world.until(executed)
        await asyncio.sleep(1.0)
        [step] = await world.approved_steps()
        assert step["outcome"] == "applied"
        assert (await world.approvals())["delete_duplicates"]["decided_by"] == "alice via Slack"
        assert not set(world.duplicates) & set(await world.notification_ids())
    finally:
        await runner.cleanup()
        await second.stop()


async def test_no_secret_reaches_the_logs(world: World, capfd: pytest.CaptureFixture[str]) -> None:
    value = await world.button("delete_duplicates")
    url = world.slack.response_url("secret-path-0123456789")
    assert (
        await world.click(click(SECRET, user_id=ALICE, value=value, response_url=url))
    ).status_code == 200
    await world.click(click("wrong-secret-0123456789abcdef", user_id=ALICE, value=value))

    async def executed() -> bool:
        return (await world.approvals())["delete_duplicates"]["state"] == "executed"

    await world.until(executed)
    await world.slack.wait_for(lambda reqs: any(r.path.endswith("0123456789") for r in reqs))
    out, err = capfd.readouterr()
    for secret in (BOT_TOKEN, SECRET, "secret-path-0123456789"):
        assert secret not in out and secret not in err
    assert "approval_decided" in out + err  # the logs were captured at all


async def test_click_after_the_alert_resolved_changes_nothing(world: World) -> None:
    """The resolve closes the pending approvals and updates the message (no buttons
    left); a click on the old buttons then changes nothing and says the alert resolved."""
    value = await world.button("delete_duplicates")
    r = await world.http.post("/api/v1/alerts", json=make_payload(resolved(ALERT)))
    assert r.status_code == 202

    async def closed() -> bool:
        return (await world.approvals())["delete_duplicates"]["state"] == "expired"

    await world.until(closed)

    def resolved_shown(reqs: list[Any]) -> bool:
        return any(
            r.path == "/api/chat.update" and texts(r.json).startswith("Resolved: ") for r in reqs
        )

    await world.slack.wait_for(resolved_shown)
    update = next(r for r in world.slack.calls("/api/chat.update") if resolved_shown([r]))
    assert blocks_of(update.json, "actions") == []  # no buttons on a resolved page
    rows = await world.notification_ids()
    signed = click(SECRET, user_id=ALICE, value=value, response_url=world.slack.response_url("z"))
    assert (await world.click(signed)).status_code == 200
    body = await response(world, "z")
    assert "changed nothing" in texts(body) and "the alert resolved" in texts(body)
    approval = (await world.approvals())["delete_duplicates"]
    assert approval["state"] == "expired" and approval["decided_by"] is None
    assert approval["slack_nonce_used_at"] is None
    assert await world.approved_steps() == []
    assert await world.notification_ids() == rows
    assert set(world.duplicates) <= set(rows)


async def test_a_response_url_off_slack_is_never_posted_to(world: World) -> None:
    """A signed click (a leaked signing secret) whose response_url points at another
    server: the decision is taken as any approver's, but the daemon posts nothing to
    that address; the message is still updated through chat.update."""
    from tests.fixtures.slack import SlackCapture

    value = await world.button("delete_duplicates")
    async with SlackCapture() as elsewhere:
        signed = click(SECRET, user_id=ALICE, value=value, response_url=elsewhere.response_url("x"))
        r = await world.click(signed)
        assert r.status_code == 200

        async def executed() -> bool:
            return (await world.approvals())["delete_duplicates"]["state"] == "executed"

        await world.until(executed)
        await world.slack.wait_for(lambda reqs: any(r.path == "/api/chat.update" for r in reqs))
        assert elsewhere.requests == []
