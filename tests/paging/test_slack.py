"""Slack incoming webhook: exact bodies, escaping, block limits, routing."""

from __future__ import annotations

import json

import pytest
import respx
from paging_samples import SLACK_URL, make_event

from remediator.paging import Delivered, SlackPager
from remediator.paging.slack import chunks


async def test_trigger_posts_text_and_header_plus_section_blocks(
    router: respx.MockRouter, slack: SlackPager
) -> None:
    route = router.post(SLACK_URL).respond(200, text="ok")

    result = await slack.send(make_event("trigger", severity="P2"))

    assert result == Delivered(status=200)
    assert json.loads(route.calls.last.request.content) == {
        "text": "[RB-01] PricingPackBuildSlow: pack build is running for 14 min",
        "blocks": [
            {
                "type": "header",
                "text": {
                    "type": "plain_text",
                    "text": "[RB-01] PricingPackBuildSlow: pack build is running for 14 min",
                },
            },
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": "\n".join(
                        [
                            "[RB-01] PricingPackBuildSlow: pack build is running for 14 min",
                            "Alert: PricingPackBuildSlow | Runbook: RB-01"
                            " | Rule: pricing-pack-build-slow | Severity: P2 | Mode: live",
                            "",
                            "Done",
                            "- serve_last_good_pack: applied (marked PP-2025-10-20 fresh)",
                            "",
                            "Skipped (why)",
                            "- rerun_build: skipped (providers unhealthy)",
                            "",
                            "Left for you",
                            "- scale scheduler to 0: remediator approve 42",
                            "",
                            "Links",
                            "- Runbook: https://runbooks.example/RB-01",
                            "- Grafana: https://grafana.example/d/remediator",
                            "- Alert: http://prom.example/graph?g0.expr=x",
                        ]
                    ),
                },
            },
        ],
    }


async def test_resolve_posts_a_short_message_naming_the_dedup_key(
    router: respx.MockRouter, slack: SlackPager
) -> None:
    route = router.post(SLACK_URL).respond(200, text="ok")

    result = await slack.send(make_event("resolve", left_for_human=()))

    assert result == Delivered(status=200)
    assert json.loads(route.calls.last.request.content) == {
        "text": "Resolved: [RB-01] PricingPackBuildSlow: pack build is running for 14 min"
        " (dedup key remediator/run-42)"
    }


def test_mrkdwn_control_characters_are_escaped() -> None:
    body = SlackPager(SLACK_URL).body(make_event(title="a <b> & c", done=("x <!channel>",)))
    assert body["text"] == "a &lt;b&gt; &amp; c"
    assert body["blocks"][0]["text"]["text"] == "a <b> & c"  # plain_text needs no escaping
    assert "- x &lt;!channel&gt;" in body["blocks"][1]["text"]["text"]


def test_long_body_is_split_into_sections_of_at_most_3000_chars() -> None:
    event = make_event(done=tuple(f"step {i} " + "&" * 300 for i in range(40)))
    blocks = SlackPager(SLACK_URL).body(event)["blocks"]
    sections = [b["text"]["text"] for b in blocks[1:]]
    assert len(sections) > 1
    assert all(0 < len(s) <= 3000 for s in sections)
    assert len(blocks) <= 50
    assert len(blocks[0]["text"]["text"]) <= 150


def test_chunks_never_split_an_escaped_entity() -> None:
    pieces = chunks("&" * 7000, 3000)
    assert all(len(p) <= 3000 for p in pieces)
    assert "".join(pieces) == "&amp;" * 7000


@pytest.mark.parametrize(
    ("mode", "banner"),
    [
        ("dry-run", "DRY-RUN: nothing was changed"),
        ("paused", "PAUSED by kill switch: nothing was changed"),
    ],
)
def test_dry_run_and_paused_pages_carry_the_banner(mode: str, banner: str) -> None:
    body = SlackPager(SLACK_URL).body(make_event(mode=mode))
    assert body["blocks"][1]["text"]["text"].startswith(banner + "\n")


def test_accepts_p2_and_p3_by_default_and_can_be_configured() -> None:
    default = SlackPager(SLACK_URL)
    assert [default.accepts(s) for s in ("P0", "P1", "P2", "P3")] == [False, False, True, True]
    everything = SlackPager(SLACK_URL, severities=("P0", "P1", "P2", "P3"))
    assert all(everything.accepts(s) for s in ("P0", "P1", "P2", "P3"))
