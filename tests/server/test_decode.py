"""The webhook's fast decoder gives exactly the strict model's answers.

``decode_webhook`` decodes with msgspec and falls back to ``WebhookPayload`` when
that fails. Whatever the body, it must accept what the strict model accepts, with
the same occurrences, and refuse the rest with the same errors.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from bench.payloads import template
from remediator.bounds import BoundsExceeded, LabelBounds, Problem
from remediator.models import WebhookPayload, _decode_fast, decode_webhook, occurrences
from remediator.testing import make_alert, make_payload

FIXTURES = Path(__file__).parent.parent / "fixtures" / "alertmanager-0.25"
RECEIVED = 1_764_289_204.5


def refused(exc: ValidationError) -> Any:
    # Without ctx (it can hold the exception a validator raised, which compares by
    # identity) and as text (an input can be NaN, which equals nothing).
    return ("refused", repr(exc.errors(include_url=False, include_context=False)))


def strict(body: bytes) -> Any:
    try:
        p = WebhookPayload.model_validate_json(body)
    except ValidationError as exc:
        return refused(exc)
    return ("ok", p.groupKey, len(p.alerts), p.truncatedAlerts, occurrences(p, RECEIVED))


def decoded(body: bytes) -> Any:
    try:
        d = decode_webhook(body, RECEIVED)
    except ValidationError as exc:
        return refused(exc)
    return ("ok", d.group_key, d.alerts, d.truncated, d.occurrences)


def body(**over: Any) -> bytes:
    a = make_alert("X", {"service": "dawsos"})
    a.update(over.pop("alert", {}))
    p = make_payload(a)
    p.update(over)
    return json.dumps(p).encode()


def extra(raw: bytes) -> bytes:
    """A valid body with one more top-level member, written as raw JSON text."""
    return body()[:-1] + b', "x": ' + raw + b"}"


ORDINARY = [
    (FIXTURES / "firing.json").read_bytes(),
    (FIXTURES / "mixed-firing-resolved.json").read_bytes(),
    template("BenchAlert").body([f"{i:016x}" for i in range(20)]),
    body(alert={"startsAt": "2026-11-28T01:20:04.123456789+01:00"}),
    body(alert={"labels": {"alertname": "X", "a": '\U0001f600 \\ " </>'}}),
    body(alert={"fingerprint": "0123456789abcdef0123456789abcdef"}),
]

# Each is a case where msgspec and pydantic's parser could disagree.
AWKWARD = {
    "nesting past pydantic's limit": extra(b"[" * 300 + b"]" * 300),
    "100k nested arrays": b'{"version": "4", "receiver": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    "100k nested objects": b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
    "deep nesting in a label": body().replace(b'"dawsos"', b"[" * 5000 + b"]" * 5000),
    "number out of range": extra(b"9" * 5000),
    "1e999 ignored": extra(b"1e999"),
    "1e999 truncatedAlerts": body().replace(b'"truncatedAlerts": 0', b'"truncatedAlerts": 1e999'),
    "float truncatedAlerts": body().replace(b'"truncatedAlerts": 0', b'"truncatedAlerts": 2.0'),
    "string truncatedAlerts": body(truncatedAlerts="3"),
    "bool truncatedAlerts": body(truncatedAlerts=True),
    "negative truncatedAlerts": body(truncatedAlerts=-1),
    "huge truncatedAlerts": body(truncatedAlerts=10**30),
    "invalid UTF-8 ignored": extra(b'"\xff"'),
    "invalid UTF-8 in a label": body().replace(b'"dawsos"', b'"daw\xffsos"'),
    "overlong UTF-8": extra(b'"\xc0\xaf"'),
    "UTF-8 encoded surrogate": body().replace(b'"dawsos"', b'"\xed\xa0\x80"'),
    "lone surrogate escape": body().replace(b'"dawsos"', b'"\\ud800"'),
    "NaN": extra(b"NaN"),
    "raw control character": body().replace(b'"dawsos"', b'"a\x01"'),
    "NUL in a label": body(alert={"labels": {"alertname": "A\u0000B"}}),
    "NUL in a label name": body(alert={"labels": {"alertname": "A", "\u0000": "x"}}),
    "NUL in groupKey": body(groupKey="{}:\u0000"),
    "NUL in an ignored member": extra(b'"\\u0000"'),
    "escaped backslash before u0000": body(groupKey="\\u0000"),
    "fingerprint with a newline": body(alert={"fingerprint": "abc\n"}),
    "fingerprint upper case": body(alert={"fingerprint": "ABC"}),
    "fingerprint 33 digits": body(alert={"fingerprint": "a" * 33}),
    "fingerprint empty": body(alert={"fingerprint": ""}),
    "label name 1025 characters": body(alert={"labels": {"a" * 1025: "x"}}),
    "label name 1024 astral characters": body(alert={"labels": {"\U0001f600" * 1024: "x"}}),
    "empty label name": body(alert={"labels": {"": "x"}}),
    "startsAt before year 1 in UTC": body(alert={"startsAt": "0001-01-01T00:00:00+01:00"}),
    "startsAt not a time": body(alert={"startsAt": "yesterday"}),
    "endsAt missing": json.dumps(
        {**json.loads(body()), "alerts": [{**make_alert("X"), "endsAt": None}]}
    ).encode(),
    "duplicate member, invalid first": b'{"status": "bogus", ' + body()[1:],
    "duplicate member, valid both": b'{"status": "resolved", ' + body()[1:],
    "duplicate label": body().replace(b'"labels": {', b'"labels": {"service": "first", '),
    "unknown alert member": body(alert={"silenced": True}),
    "version as a number": body(version=4),
    "not an object": b"[]",
    "BOM": b"\xef\xbb\xbf" + body(),
    "trailing garbage": body() + b" x",
    "trailing whitespace": body() + b" \r\n\t",
    "empty body": b"",
    "repeats inside one payload": json.dumps(make_payload(*[make_alert("X")] * 3)).encode(),
}


@pytest.mark.parametrize("raw", ORDINARY)
def test_ordinary_payloads_take_the_fast_path_and_agree(raw: bytes) -> None:
    assert _decode_fast(raw, RECEIVED) is not None
    assert decoded(raw) == strict(raw)


@pytest.mark.parametrize("raw", AWKWARD.values(), ids=AWKWARD.keys())
def test_awkward_bodies_get_the_strict_models_answer(raw: bytes) -> None:
    assert decoded(raw) == strict(raw)


_TEXT = st.text(max_size=10)  # any code point but surrogates, NUL included
_STAMP = st.one_of(
    st.sampled_from(
        [
            "2026-11-28T00:20:04.123456789Z",
            "2026-11-28T01:20:04+01:00",
            "2026-11-28 00:20:04z",
            "0001-01-01T00:00:00Z",
            "0001-01-01T00:00:00+01:00",
            "2026-02-30T00:00:00Z",
            "now",
        ]
    ),
    _TEXT,
)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
    max_leaves=8,
)
_ALERT = st.fixed_dictionaries(
    {
        "status": st.sampled_from(["firing", "resolved", "pending"]),
        "labels": st.dictionaries(_TEXT, _TEXT | st.integers(), max_size=4),
        "startsAt": _STAMP,
        "fingerprint": st.one_of(st.text("0123456789abcdefA", min_size=0, max_size=3), _TEXT),
    },
    optional={
        "annotations": st.dictionaries(_TEXT, _TEXT, max_size=3),
        "endsAt": _STAMP,
        "generatorURL": _TEXT,
        "extra": _JSON,
    },
)
_PAYLOAD = st.fixed_dictionaries(
    {
        "version": st.sampled_from(["4", "4", "3", 4]),
        "status": st.sampled_from(["firing", "resolved", "x"]),
        "receiver": _TEXT,
        "groupKey": _TEXT,
        "alerts": st.lists(_ALERT, max_size=4),
    },
    optional={
        "truncatedAlerts": st.integers(min_value=-2, max_value=10**20) | st.floats(),
        "commonLabels": st.dictionaries(_TEXT, _TEXT | _JSON, max_size=3),
        "externalURL": _TEXT,
        "extra": _JSON,
    },
)


@settings(max_examples=400, deadline=None)
@given(payload=_PAYLOAD, ascii_only=st.booleans())
def test_any_payload_gets_the_strict_models_answer(payload: Any, ascii_only: bool) -> None:
    raw = json.dumps(payload, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
    assert decoded(raw) == strict(raw)


_CLEAN = st.text(st.characters(exclude_characters="\x00", exclude_categories=["Cs"]), max_size=30)
_VALID_STAMP = st.one_of(
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)).map(
        lambda d: f"{d.year:04d}" + d.strftime("-%m-%dT%H:%M:%S.%f") + "Z"
    ),
    st.sampled_from(["2026-11-28T00:20:04.123456789Z", "2026-11-28T01:20:04-01:30"]),
)
_VALID = st.fixed_dictionaries(
    {
        "version": st.just("4"),
        "status": st.sampled_from(["firing", "resolved"]),
        "receiver": _CLEAN,
        "groupKey": _CLEAN,
        "alerts": st.lists(
            st.fixed_dictionaries(
                {
                    "status": st.sampled_from(["firing", "resolved"]),
                    "labels": st.dictionaries(_CLEAN.filter(bool), _CLEAN, max_size=5),
                    "startsAt": _VALID_STAMP,
                    "fingerprint": st.text("0123456789abcdef", min_size=1, max_size=32),
                },
                optional={
                    "annotations": st.dictionaries(_CLEAN, _CLEAN, max_size=3),
                    "endsAt": _VALID_STAMP,
                    "generatorURL": _CLEAN,
                },
            ),
            max_size=6,
        ),
    },
    optional={
        "truncatedAlerts": st.integers(0, 10**6),
        "commonLabels": st.dictionaries(_CLEAN, _CLEAN),
    },
)


@settings(max_examples=300, deadline=None)
@given(payload=_VALID, ascii_only=st.booleans())
def test_valid_payloads_take_the_fast_path_and_agree(payload: Any, ascii_only: bool) -> None:
    raw = json.dumps(payload, ensure_ascii=ascii_only).encode()
    assert _decode_fast(raw, RECEIVED) is not None
    assert decoded(raw) == strict(raw)


# With label bounds the fast path constrains strings in code points and leaves longer
# ones to the strict path's exact check in bytes: the answers must still agree. The
# small bounds send most bodies to the strict path, the larger ones most to the fast.
TIGHT = LabelBounds(max_bytes=16, max_labels=3)
ROOMY = LabelBounds(max_bytes=120, max_labels=6)


def strict_bounded(body: bytes, bounds: LabelBounds) -> Any:
    try:
        p = WebhookPayload.model_validate_json(body)
        bounds.check(p)
    except ValidationError as exc:
        return refused(exc)
    except BoundsExceeded as exc:
        return ("bounds", exc.problems)
    return ("ok", p.groupKey, len(p.alerts), p.truncatedAlerts, occurrences(p, RECEIVED))


def decoded_bounded(body: bytes, bounds: LabelBounds) -> Any:
    try:
        d = decode_webhook(body, RECEIVED, bounds)
    except ValidationError as exc:
        return refused(exc)
    except BoundsExceeded as exc:
        return ("bounds", exc.problems)
    return ("ok", d.group_key, d.alerts, d.truncated, d.occurrences)


@settings(max_examples=300, deadline=None)
@given(payload=_VALID, ascii_only=st.booleans(), bounds=st.sampled_from([TIGHT, ROOMY]))
def test_bounded_decoding_gives_the_strict_model_and_exact_checks_answer(
    payload: Any, ascii_only: bool, bounds: LabelBounds
) -> None:
    raw = json.dumps(payload, ensure_ascii=ascii_only).encode()
    assert decoded_bounded(raw, bounds) == strict_bounded(raw, bounds)


def labelled(value: str) -> bytes:
    return body(alert={"labels": {"alertname": "X", "k": value}, "annotations": {}})


def test_strings_within_the_bounds_in_code_points_take_the_fast_path() -> None:
    assert ROOMY.max_chars == 30
    raw = labelled("\U0001f600" * 30)  # 120 bytes
    assert _decode_fast(raw, RECEIVED, ROOMY) is not None
    assert decoded_bounded(raw, ROOMY) == strict_bounded(raw, ROOMY)
    # 31 code points may still fit in 120 bytes: the strict path decides, exactly.
    fits = labelled("a" * 120)
    assert _decode_fast(fits, RECEIVED, ROOMY) is None
    assert decoded_bounded(fits, ROOMY)[0] == "ok"
    over = labelled("\u00e9" * 61)
    message = "value is 122 bytes of UTF-8; the limit is 120 (limits.max_label_bytes)"
    expected = ("bounds", (Problem("alerts.0.labels.k", message),))
    assert decoded_bounded(over, ROOMY) == strict_bounded(over, ROOMY) == expected
