"""Every `remediator ...` command a page shows pastes as it is, from another directory.

Not only the approve line of the page text: the kill switch's "goes on after
`remediator resume`", the step reason the audit trail keeps, and what the Slack bot
message shows beside its buttons ("Pending: ...", "runs after ...", "see ...") were
printed bare, so that pasting them from anywhere but the daemon's directory found no
state. Real parts: the state store in SQLite next to a config file, a Postgres target,
the real engine through the Harness, the Slack Block Kit a bot page is posted with, and
the CLI run as a user runs it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from pathlib import Path
from typing import Any

from remediator import settings as settings_mod
from remediator.paging import slack_blocks, text
from remediator.paging.base import PageContent
from remediator.runbook_api.context import Clients
from remediator.testing import Harness, make_alert
from tests.engine import _testbook
from tests.engine.conftest import knobs
from tests.engine.test_operator_commands import paste, run_cli, write_config

COMMAND = re.compile(r"`(remediator [^`]+)`")


def mrkdwn(message: dict[str, Any]) -> list[str]:
    """The texts of a Slack message's sections and context lines (the header is a
    plain-text summary cut to Slack's 150 characters: the section below it is whole)."""
    texts = [message["text"]]
    for block in message["blocks"]:
        if block["type"] == "section":
            texts.append(block["text"]["text"])
        elif block["type"] == "context":
            texts += [e["text"] for e in block["elements"]]
    return texts


def shown(content: PageContent) -> list[str]:
    """Every text a human reads of this page: its text, and its Slack bot message."""
    views = slack_blocks.views(content)
    decided = [dataclasses.replace(v, state="approved", decided_by="x") for v in views]
    return [
        text.body(content),
        *mrkdwn(slack_blocks.message(content, views)),
        *mrkdwn(slack_blocks.message(content, views * 11)),  # "... and N more approvals"
        *mrkdwn(slack_blocks.message(content, decided, paused=True)),  # "runs after ..."
    ]


def commands(texts: list[str]) -> set[str]:
    return {c for t in texts for c in COMMAND.findall(t)}


async def test_every_command_in_pages_and_the_slack_message_pastes_from_anywhere(
    tmp_path: Path, clients: Clients
) -> None:
    cfg = write_config(tmp_path / "etc", "sqlite:///state.db")
    settings = settings_mod.load(cfg, env={})
    elsewhere = tmp_path / "home"
    elsewhere.mkdir()
    # As the daemon opens them (daemon/clients.py): the clients know the settings.
    clients = dataclasses.replace(clients, settings=settings)
    harness = Harness(
        _testbook.registry(), _testbook.rules(), clients=clients,
        state_url=settings.state.get_secret_value(),
    )  # fmt: skip
    harness.settings = settings
    async with harness as h:
        paused = await asyncio.to_thread(run_cli, "pause", "--config", str(cfg), cwd=elsewhere)
        assert paused.returncode == 0, paused.stderr
        assert f"`remediator resume --config {cfg}`" in paused.stdout
        await h.deliver(make_alert("TestAlert", {"service": "checkout"}))
        [run] = await h.runs()
        parked = [s for s in await h.steps(run.id) if s.reason and "kill switch" in s.reason]
        texts: list[str] = [s.reason or "" for s in parked]
        for page in h.pager.triggers():
            texts += shown(page.content)
        found = commands(texts)
        assert f"remediator resume --config {cfg}" in found, texts
        bad = [c for c in found if not c.endswith(f" --config {cfg}")]
        assert not bad, bad

        resumed = await asyncio.to_thread(paste, f"remediator resume --config {cfg}", cwd=elsewhere)
        assert resumed.returncode == 0, resumed.stderr
        await h.maintenance()
        await h.deliver(make_alert("TestAlert", {"service": "checkout"}))
        [approval] = [a.id for a in await h.approvals(run.id)]
        texts = []
        for page in h.pager.triggers():
            texts += shown(page.content)
        found = commands(texts)
        want = {
            f"remediator approve {approval} --config {cfg}",
            f"remediator reject {approval} --config {cfg}",
            f"remediator approvals --config {cfg}",
            f"remediator resume --config {cfg}",
        }
        assert want <= found, found
        bad = [c for c in found if not c.endswith(f" --config {cfg}")]
        assert not bad, bad
        # The one Slack shows beside a pending approval, pasted as it is.
        pending: Any = slack_blocks.views(h.pager.triggers()[-1].content)
        [view] = [v for v in pending if v.id == approval]
        status = slack_blocks.status(view, paused=False)
        [approve, _reject] = COMMAND.findall(status)
        approved = await asyncio.to_thread(paste, approve, cwd=elsewhere)
        assert approved.returncode == 0, approved.stderr
        await h.maintenance()
    assert clients.database is not None
    assert (await knobs(clients.database))["replicas"] == 0  # the approved step ran
