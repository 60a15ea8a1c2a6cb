"""Malformed input is a 4xx JSON error that changes nothing, never a 5xx (issue 17
item 5): credentials of any bytes, approval ids, Content-Encoding and charsets.

Requests are written byte for byte (tests.helpers.raw_request): HTTP clients refuse
to send most of these.
"""

from __future__ import annotations

import base64
import gzip
import json
import time
import zlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from remediator.testing import make_alert, make_payload
from tests.helpers import RawResponse, Running, raw_request, running_daemon

WEBHOOK = "webhook-token-for-malformed-1"
OPERATOR = "operator-token-for-malformed-2"
JSON = (b"Content-Type", b"application/json")
HOOK_AUTH = (b"Authorization", f"Bearer {WEBHOOK}".encode())
OPS_AUTH = (b"Authorization", f"Bearer {OPERATOR}".encode())
BODY = json.dumps(make_payload(make_alert("Malformed", {"instance": "h1"}))).encode()


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Running]:
    (tmp_path / "rules").mkdir()
    cfg = {
        "state": f"sqlite:///{tmp_path}/state.db",
        "rules": str(tmp_path / "rules"),
        "auth": {"webhook_tokens": [WEBHOOK], "operator_tokens": {"alice": OPERATOR}},
    }
    async with running_daemon(cfg, workers=False) as d:
        yield d


async def nothing_journaled(d: Running) -> bool:
    accepted = d.sample("remediator_webhooks_received_total", {"code": "202"})
    return accepted == 0 and await d.daemon.store.count_occurrences() == 0


def assert_error(r: RawResponse, status: int, error: str) -> None:
    assert r.status == status, r
    body = r.json()
    assert body["error"] == error and "detail" in body, body


# Bytes HTTP allows in a field value (RFC 9110 obs-text) but that are no valid token:
# invalid UTF-8, a lone continuation byte, Latin-1, valid UTF-8 that is not ASCII.
BAD_CREDENTIALS = [
    b"Bearer \xff\xfe\x80",
    b"\xff\xfe \x80\x81",
    b"Basic \xff\xfe\xfd",
    b"Basic " + base64.b64encode(b"am:\xff\xfe"),
    b"Bearer " + WEBHOOK.encode()[:-1] + b"\xe9",
    b"Bearer " + "caf\u00e9-t\u00f6ken-\u00fc\u00fc\u00fc\u00fc".encode(),
]


async def test_any_bytes_in_authorization_on_the_webhook_are_a_counted_401(daemon: Running):
    for value in BAD_CREDENTIALS:
        r = await raw_request(
            daemon.url, b"POST", b"/api/v1/alerts", [(b"Authorization", value), JSON], BODY
        )
        assert_error(r, 401, "unauthorized")
    n = len(BAD_CREDENTIALS)
    assert daemon.sample("remediator_auth_failures_total", {"realm": "webhook"}) == n
    assert daemon.sample("remediator_webhooks_received_total", {"code": "401"}) == n
    assert await nothing_journaled(daemon)
    r = await raw_request(daemon.url, b"POST", b"/api/v1/alerts", [HOOK_AUTH, JSON], BODY)
    assert r.status == 202  # the right token still works on the same daemon


async def test_any_bytes_in_authorization_on_operator_routes_are_a_counted_401(daemon: Running):
    for value in BAD_CREDENTIALS:
        for method, path in [
            (b"POST", b"/api/v1/pause"),
            (b"GET", b"/api/v1/actions"),
            (b"POST", b"/api/v1/actions/1/approve"),
            (b"POST", b"/-/reload"),
        ]:
            r = await raw_request(daemon.url, method, path, [(b"Authorization", value)])
            assert_error(r, 401, "unauthorized")
    failures = daemon.sample("remediator_auth_failures_total", {"realm": "operator"})
    assert failures == 4 * len(BAD_CREDENTIALS)
    assert not await daemon.daemon.engine.is_paused()


async def test_control_bytes_in_a_header_are_refused_by_the_http_parser_with_400(
    daemon: Running,
):
    """Bytes HTTP forbids in a field value never reach the app: aiohttp's parser
    answers 400 itself (plain text), which is still no 5xx and changes nothing."""
    r = await raw_request(
        daemon.url, b"POST", b"/api/v1/alerts", [(b"Authorization", b"Bearer \x01\x7f"), JSON]
    )
    assert r.status == 400
    assert await nothing_journaled(daemon)


async def pending_approval(d: Running) -> int:
    now = time.time()
    run = {
        "id": "run-1", "rule": "r", "runbook": "RB-T", "fingerprint": "f1",
        "starts_at": "2026-11-28T00:20:04Z", "alertname": "A", "target": "RB-T:x",
        "mode": "dry-run", "state": "awaiting_approval", "alert": {"labels": {}},
        "params": {}, "severity": "P1", "received_at": now, "created_at": now,
        "updated_at": now, "owner": None, "lease_until": None,
    }  # fmt: skip
    assert await d.daemon.store.create_run(run)
    return await d.daemon.store.create_approval("run-1", "scale_down", now + 3600)


BAD_IDS = [
    b"%C2%B2",  # superscript two: str.isdigit() accepts it, int() refuses it
    b"%D9%A1",  # Arabic-Indic one: int() reads it as 1, the pending approval's id
    b"%EF%BC%91",  # fullwidth one
    b"9" * 19,  # beyond int64
    b"99999999999999999999999999999",
    b"-1",
    b"+1",
    b"1.0",
    b"0x1",
    b"1e3",
    b"%20",
    b"%20" + b"1",
    b"%FF",
    b"%00",
    b"abc",
]


async def test_bad_approval_ids_are_400_and_decide_nothing(daemon: Running):
    approval = await pending_approval(daemon)
    assert approval == 1
    for raw in BAD_IDS:
        for verb in (b"approve", b"reject"):
            path = b"/api/v1/actions/" + raw + b"/" + verb
            r = await raw_request(daemon.url, b"POST", path, [OPS_AUTH])
            assert_error(r, 400, "bad_request")
    row = await daemon.daemon.store.get_approval(approval)
    assert row is not None and row["state"] == "pending"


async def test_empty_id_unknown_route_and_wrong_method_are_json_errors(daemon: Running):
    r = await raw_request(daemon.url, b"POST", b"/api/v1/actions//approve", [OPS_AUTH])
    assert_error(r, 404, "not_found")
    r = await raw_request(daemon.url, b"GET", b"/api/v1/nothing-here")
    assert_error(r, 404, "not_found")
    r = await raw_request(daemon.url, b"DELETE", b"/api/v1/pause", [OPS_AUTH])
    assert_error(r, 405, "method_not_allowed")
    assert "POST" in r.headers["allow"]
    assert not await daemon.daemon.engine.is_paused()


@pytest.mark.parametrize("limit", [b"%C2%B2", b"%D9%A1%D9%A0", b"x", b"1.5", b"9" * 5000])
async def test_a_bad_actions_limit_is_400(daemon: Running, limit: bytes):
    r = await raw_request(daemon.url, b"GET", b"/api/v1/actions?limit=" + limit, [OPS_AUTH])
    assert_error(r, 400, "bad_request")


@pytest.mark.parametrize("limit", [b"-5", b"0", b"9" * 30])
async def test_an_out_of_range_actions_limit_is_clamped(daemon: Running, limit: bytes):
    r = await raw_request(daemon.url, b"GET", b"/api/v1/actions?limit=" + limit, [OPS_AUTH])
    assert r.status == 200 and r.json() == {"actions": []}


def gzip_truncated() -> bytes:
    return gzip.compress(BODY)[:-12]


@pytest.mark.parametrize(
    ("coding", "body", "status", "error"),
    [
        (b"gzip", BODY, 400, "malformed_body"),
        (b"gzip", gzip_truncated(), 400, "malformed_body"),
        (b"gzip", gzip.compress(BODY) + b"trailing", 400, "malformed_body"),
        (b"x-gzip", b"\x1f\x8b\x08garbage", 400, "malformed_body"),
        (b"deflate", BODY, 400, "malformed_body"),
        (b"deflate", zlib.compress(BODY) + b"x", 400, "malformed_body"),
        (b"gzip", b"", 400, "malformed_body"),
        (b"br", BODY, 415, "unsupported_content_encoding"),
        (b"zstd", BODY, 415, "unsupported_content_encoding"),
        (b"compress", BODY, 415, "unsupported_content_encoding"),
        (b"bogus", BODY, 415, "unsupported_content_encoding"),
        (b"gzip, gzip", gzip.compress(gzip.compress(BODY)), 415, "unsupported_content_encoding"),
        (b"\xff\xfe", BODY, 415, "unsupported_content_encoding"),
        # 50 MB of spaces is 50 kB of gzip: refused once 1 MiB is decoded.
        (b"gzip", gzip.compress(b" " * 50_000_000), 413, "payload_too_large"),
    ],
    ids=lambda v: v.decode("latin-1")[:20] if isinstance(v, bytes) else str(v),
)
async def test_bad_or_unknown_content_encoding_is_4xx_and_journals_nothing(
    daemon: Running, coding: bytes, body: bytes, status: int, error: str
):
    headers = [HOOK_AUTH, JSON, (b"Content-Encoding", coding)]
    r = await raw_request(daemon.url, b"POST", b"/api/v1/alerts", headers, body)
    assert_error(r, status, error)
    assert daemon.sample("remediator_webhooks_received_total", {"code": str(status)}) == 1
    assert await nothing_journaled(daemon)


@pytest.mark.parametrize(
    ("coding", "body"),
    [
        (b"gzip", gzip.compress(BODY)),
        (b"GZIP", gzip.compress(BODY)),
        (b"x-gzip", gzip.compress(BODY)),
        (b"gzip", gzip.compress(BODY[:40]) + gzip.compress(BODY[40:])),  # two members
        (b"deflate", zlib.compress(BODY)),
        (b"deflate", zlib.compress(BODY, wbits=-15)),  # raw deflate, as some clients send
        (b"identity", BODY),
        (b"identity, gzip", gzip.compress(BODY)),
    ],
)
async def test_gzip_and_deflate_bodies_are_decoded_and_journaled(
    daemon: Running, coding: bytes, body: bytes
):
    headers = [HOOK_AUTH, JSON, (b"Content-Encoding", coding)]
    r = await raw_request(daemon.url, b"POST", b"/api/v1/alerts", headers, body)
    assert r.status == 202, r
    assert r.json()["journaled"] == 1
    assert await daemon.daemon.store.count_occurrences() == 1


@pytest.mark.parametrize(
    "content_type",
    [
        b"application/json; charset=latin-1",
        b"application/json; charset=iso-8859-1",
        b"application/json; charset=utf-16",
        b"application/json; charset=bogus",
        b"application/json; charset=\xff\xfe",
    ],
)
async def test_a_charset_other_than_utf8_is_415_and_journals_nothing(
    daemon: Running, content_type: bytes
):
    headers = [HOOK_AUTH, (b"Content-Type", content_type)]
    r = await raw_request(daemon.url, b"POST", b"/api/v1/alerts", headers, BODY)
    assert_error(r, 415, "unsupported_media_type")
    assert await nothing_journaled(daemon)


@pytest.mark.parametrize(
    "content_type",
    [
        b"application/json; charset=utf-8",
        b"application/json; charset=UTF-8",
        b"application/json;charset=utf8",
    ],
)
async def test_utf8_charset_is_taken(daemon: Running, content_type: bytes):
    headers = [HOOK_AUTH, (b"Content-Type", content_type)]
    r = await raw_request(daemon.url, b"POST", b"/api/v1/alerts", headers, BODY)
    assert r.status == 202, r
