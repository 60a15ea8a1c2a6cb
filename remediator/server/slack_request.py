"""A Slack interactivity request: is it Slack's, and which button was clicked.

Slack signs each request: ``X-Slack-Signature`` is ``v0=`` and the hex HMAC-SHA256,
keyed with the app's signing secret, of ``v0:{X-Slack-Request-Timestamp}:{raw body}``.
A timestamp more than five minutes from now (either way) is refused, as Slack's own
SDK does, so a captured request cannot be replayed later. The check is written here
(a dozen lines) rather than taken from ``slack_sdk``: it must treat any bytes in the
headers as a refusal, never an exception.

The body is a form with one field, ``payload``: JSON of type ``block_actions`` with
``user.id``, ``actions[{action_id, value}]``, ``response_url``, ``container`` and
``channel``. Everything is checked against strict patterns before it is used: it goes
to the state store, to log lines and (the response_url) to an HTTP client.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from pydantic import BaseModel, ConfigDict, ValidationError

from remediator.paging.slack_blocks import ACTIONS

MAX_SKEW = 300.0  # seconds: Slack's five minutes
_TIMESTAMP = re.compile(rb"[0-9]{1,12}")
_VALUE = re.compile(r"([0-9]{1,18}):([0-9a-f]{32})")
_SLACK_ID = re.compile(r"[A-Z0-9]{2,32}")
_TS = re.compile(r"[0-9]{1,12}\.[0-9]{1,9}")


class PayloadError(ValueError):
    """The body is not a Slack interaction we can read: a 400."""


@dataclass(frozen=True)
class Click:
    approval_id: int
    nonce: str
    decision: str  # approved | rejected
    user_id: str
    response_url: str | None
    channel_id: str | None
    message_ts: str | None


def verify(
    secret: bytes, timestamp: str | None, signature: str | None, body: bytes, now: float
) -> str | None:
    """None when the request is Slack's; otherwise why not (the 401's detail)."""
    if not timestamp or not signature:
        return "X-Slack-Request-Timestamp and X-Slack-Signature are required"
    # surrogateescape: the bytes the client sent, whatever they are.
    ts = timestamp.encode("utf-8", "surrogateescape").strip()
    if not _TIMESTAMP.fullmatch(ts):
        return "X-Slack-Request-Timestamp is not a unix time"
    if abs(now - int(ts)) > MAX_SKEW:
        return "stale request: X-Slack-Request-Timestamp is more than 5 minutes from now"
    digest = hmac.new(secret, b"v0:" + ts + b":" + body, hashlib.sha256).hexdigest()
    presented = signature.encode("utf-8", "surrogateescape").strip()
    if not hmac.compare_digest(b"v0=" + digest.encode(), presented):
        return "bad signature"
    return None


class _Strictish(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class _User(_Strictish):
    id: str


class _Action(_Strictish):
    action_id: str
    value: str | None = None


class _Container(_Strictish):
    message_ts: str | None = None
    channel_id: str | None = None


class _Channel(_Strictish):
    id: str


class _Payload(_Strictish):
    type: str
    user: _User | None = None
    actions: list[_Action] = []
    response_url: str | None = None
    container: _Container | None = None
    channel: _Channel | None = None


def _clean(value: str | None, pattern: re.Pattern[str]) -> str | None:
    return value if value is not None and pattern.fullmatch(value) else None


def _url(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        value.encode("utf-8")
        parts = urlsplit(value)
    except (UnicodeEncodeError, ValueError):
        raise PayloadError("response_url is not a URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or len(value) > 2000:
        raise PayloadError("response_url is not an http(s) URL")
    return value


def parse(body: bytes) -> Click | None:
    """The clicked approval button, or None for an interaction that is not one
    (another type, another button): those are answered 200 and ignored."""
    try:
        form = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=20)
    except (UnicodeDecodeError, ValueError):
        raise PayloadError("the body is not a UTF-8 form") from None
    fields = form.get("payload", [])
    if len(fields) != 1:
        raise PayloadError("expected exactly one form field named payload")
    try:
        data = json.loads(fields[0])
        payload = _Payload.model_validate(data)
    except (ValueError, ValidationError, RecursionError):
        raise PayloadError("payload is not a Slack interaction (JSON of its shape)") from None
    if payload.type != "block_actions":
        return None
    action = next((a for a in payload.actions if a.action_id in ACTIONS), None)
    if action is None:
        return None
    if payload.user is None or _clean(payload.user.id, _SLACK_ID) is None:
        raise PayloadError("user.id is missing or not a Slack user id")
    match = _VALUE.fullmatch(action.value or "")
    if match is None:
        raise PayloadError("the button's value is not '<approval id>:<nonce>'")
    container = payload.container or _Container()
    channel = payload.channel.id if payload.channel else container.channel_id
    return Click(
        approval_id=int(match.group(1)),
        nonce=match.group(2),
        decision=ACTIONS[action.action_id],
        user_id=payload.user.id,
        response_url=_url(payload.response_url),
        channel_id=_clean(channel, _SLACK_ID),
        message_ts=_clean(container.message_ts, _TS),
    )


SLACK_RESPONSE_HOST = "hooks.slack.com"


def response_url_allowed(url: str, api_url: str | None) -> bool:
    """Slack's own response URLs (https://hooks.slack.com/...), or the host of the
    configured ``pagers.slack.api_url`` (a Slack-compatible server): a click whose
    signature verified but whose response_url points elsewhere (a leaked signing
    secret) must not make the daemon post to an address of the sender's choosing."""
    parts = urlsplit(url)
    if (
        parts.scheme == "https"
        and parts.hostname == SLACK_RESPONSE_HOST
        and parts.port in (None, 443)
    ):
        return True
    if api_url is None:
        return False
    api = urlsplit(api_url)
    return (parts.scheme, parts.hostname, parts.port) == (api.scheme, api.hostname, api.port)
