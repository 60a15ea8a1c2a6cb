"""PageEvent <-> JSON for the durable outbox: exact round trip, strict on bad input."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from paging_samples import WHEN, make_content, make_event

from remediator.paging import PageEvent


@pytest.mark.parametrize("action", ["trigger", "resolve"])
def test_round_trip_through_json_text_gives_an_equal_event(action: str) -> None:
    event = make_event(
        action,
        title="[RB-06] SuspiciousRequestRate: 203.0.113.9 — blocked «ok» 😀",
        details={"blocked": ["203.0.113.9"], "nested": {"n": 1, "ok": True, "none": None}},
        mode="dry-run",
    )
    stored = json.dumps(event.to_json())
    assert PageEvent.from_json(json.loads(stored)) == event


def test_never_fold_survives_the_round_trip_and_defaults_to_false_in_older_events() -> None:
    event = make_event(never_fold=True)
    assert PageEvent.from_json(json.loads(json.dumps(event.to_json()))).content.never_fold
    older = make_event().to_json()
    del older["content"]["never_fold"]
    assert PageEvent.from_json(older).content.never_fold is False


def test_to_json_is_the_documented_shape() -> None:
    d = make_event().to_json()
    assert d["v"] == 1
    assert d["action"] == "trigger"
    assert d["timestamp"] == "2026-11-28T00:09:04.123456+00:00"
    assert d["content"]["links"][0] == {"text": "Runbook", "href": "https://runbooks.example/RB-01"}
    assert d["content"]["left_for_human"] == ["scale scheduler to 0: remediator approve 42"]


def test_a_non_utc_timestamp_survives_the_round_trip() -> None:
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2)))
    event = PageEvent(action="trigger", content=make_content(), timestamp=when)
    assert PageEvent.from_json(event.to_json()).timestamp == when


def test_non_json_detail_values_are_stored_as_strings() -> None:
    event = make_event(details={"at": WHEN})
    d = json.loads(json.dumps(event.to_json()))
    assert d["content"]["details"] == {"at": "2026-11-28 00:09:04.123456+00:00"}


def test_a_new_event_gets_an_aware_utc_timestamp() -> None:
    event = PageEvent(action="trigger", content=make_content())
    assert event.timestamp.tzinfo is not None
    assert event.timestamp.utcoffset() == timedelta(0)


def _mutated(change: Any) -> dict[str, Any]:
    d = make_event().to_json()
    change(d)
    return d


@pytest.mark.parametrize(
    "bad",
    [
        _mutated(lambda d: d.update(v=2)),
        _mutated(lambda d: d.pop("action")),
        _mutated(lambda d: d.update(action="acknowledge")),
        _mutated(lambda d: d["content"].update(severity="P9")),
        _mutated(lambda d: d["content"].update(mode="yolo")),
        _mutated(lambda d: d["content"].update(done="not a list of str")),
        _mutated(lambda d: d["content"].update(done=[1, 2])),
        _mutated(lambda d: d["content"].update(labels=[["a", "b"]])),
        _mutated(lambda d: d["content"].update(labels={"a": 1})),
        _mutated(lambda d: d["content"].update(details="x")),
        _mutated(lambda d: d["content"].update(never_fold="yes")),
        _mutated(lambda d: d["content"].update(links=[["Runbook", "https://x"]])),
        _mutated(lambda d: d.update(timestamp="2026-11-28T00:09:04")),
        _mutated(lambda d: d.update(timestamp="yesterday")),
    ],
)
def test_from_json_refuses_malformed_events(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        PageEvent.from_json(bad)


def test_content_refuses_an_unknown_severity_or_mode() -> None:
    with pytest.raises(ValueError, match="severity"):
        make_content(severity="critical")
    with pytest.raises(ValueError, match="mode"):
        make_content(mode="dry_run")
    with pytest.raises(ValueError, match="dedup_key"):
        make_content(dedup_key="")
