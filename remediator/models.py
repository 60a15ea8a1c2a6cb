"""The Alertmanager webhook payload (version 4, as Alertmanager 0.25 sends it).

Parsed once at the edge into strict models; inside, code trusts these types.
Unknown extra fields are ignored (newer Alertmanagers add some), but every field
0.25 sends is type-checked, and timestamps are canonicalised so the idempotency
key (fingerprint, startsAt, status) is identical whichever peer sent it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal, cast

import msgspec
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from remediator.bounds import LabelBounds

_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
    r"(Z|z|[+-]\d{2}:\d{2})$"
)
ZERO_TIME = "0001-01-01T00:00:00Z"
# Alertmanager's truncatedAlerts counts the alerts of one group it left out; a group
# of a million alerts is already beyond any real one. Bounded so that one body cannot
# push remediator_truncated_alerts_total to 1e23 (a counter never comes back down).
MAX_TRUNCATED_ALERTS = 1_000_000


@functools.lru_cache(maxsize=16384)
def canonical_time(value: str) -> str:
    """RFC 3339 -> 'YYYY-MM-DDTHH:MM:SS[.fffffffff]Z' in UTC, keeping nanoseconds.

    Python's datetime stops at microseconds; Alertmanager sends up to nanoseconds,
    and two deliveries of one alert must produce the same key, so the fraction is
    kept as text rather than rounded. Cached: every repeat of an alert (and every
    firing alert's zero ``endsAt``) carries the same strings.
    """
    m = _RFC3339.match(value)
    if not m:
        raise ValueError("expected an RFC 3339 timestamp")
    y, mo, d, h, mi, s, frac, tz = m.groups()
    base = datetime(int(y), int(mo), int(d), int(h), int(mi), int(s))  # checks ranges
    if tz in ("Z", "z"):
        text = f"{y}-{mo}-{d}T{h}:{mi}:{s}"
    else:
        sign = 1 if tz[0] == "+" else -1
        try:
            base = base - sign * timedelta(hours=int(tz[1:3]), minutes=int(tz[4:6]))
        except OverflowError:  # 0001-01-01T00:00:00+01:00 is before year 1 in UTC
            raise ValueError("timestamp out of range once converted to UTC") from None
        text = (
            f"{base.year:04d}-{base.month:02d}-{base.day:02d}"
            f"T{base.hour:02d}:{base.minute:02d}:{base.second:02d}"
        )
    frac = (frac or "").rstrip("0")
    return text + (f".{frac}" if frac else "") + "Z"


def parse_time(value: str) -> datetime:
    """Canonical time -> aware datetime (microsecond precision)."""
    c = canonical_time(value)
    main, _, frac = c[:-1].partition(".")
    dt = datetime.strptime(main, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    if frac:
        dt = dt.replace(microsecond=int(frac[:6].ljust(6, "0")))
    return dt


Timestamp = Annotated[str, AfterValidator(canonical_time)]
Fingerprint = Annotated[str, Field(pattern=r"^[0-9a-f]{1,32}$")]
# No NUL (sent as the JSON escape \u0000): Postgres text cannot hold it, so one such
# string would fail the whole journal commit (503, and a "journal down" page) for
# every request in the batch, again on each retry. It is refused here with a 422.
Text = Annotated[str, Field(pattern=r"^[^\x00]*$")]
LabelName = Annotated[str, Field(min_length=1, max_length=1024, pattern=r"^[^\x00]*$")]


class Alert(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    status: Literal["firing", "resolved"]
    labels: dict[LabelName, Text]
    annotations: dict[Text, Text] = Field(default_factory=dict)
    startsAt: Timestamp
    endsAt: Timestamp = ZERO_TIME
    generatorURL: Text = ""
    fingerprint: Fingerprint

    @property
    def alertname(self) -> str:
        return self.labels.get("alertname", "")


class WebhookPayload(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    version: Literal["4"]
    status: Literal["firing", "resolved"]
    receiver: Text
    groupKey: Text
    alerts: list[Alert]
    groupLabels: dict[Text, Text] = Field(default_factory=dict)
    commonLabels: dict[Text, Text] = Field(default_factory=dict)
    commonAnnotations: dict[Text, Text] = Field(default_factory=dict)
    externalURL: Text = ""
    truncatedAlerts: int = Field(default=0, ge=0, le=MAX_TRUNCATED_ALERTS)


class GrafanaDetails(msgspec.Struct, gc=False):
    """What Grafana Alerting says of one alert beyond Alertmanager's fields
    (``remediator.grafana_payload``): links for the page and the values that fired it."""

    org_id: int = 0
    dashboard_url: str = ""
    panel_url: str = ""
    silence_url: str = ""
    values: dict[str, float | None] = {}
    value_string: str = ""  # Grafana before 9.x sent this instead of ``values``
    # True when Grafana sent no fingerprint and intake derived it from the labels.
    fingerprint_derived: bool = False


class Occurrence(msgspec.Struct, gc=False):
    """One alert occurrence: the unit the journal stores exactly once.

    Built once per alert at intake, so built cheaply: a msgspec Struct constructs
    several times faster than a frozen dataclass, and with gc=False it is never
    tracked by the garbage collector (it holds only strings, dicts of strings and
    numbers, so it cannot be part of a cycle), which spares the collections a storm
    of them would bring on. Only the webhook changes one, setting ``pending``.
    """

    fingerprint: str
    starts_at: str
    status: str
    alertname: str
    labels: dict[str, str]
    annotations: dict[str, str]
    ends_at: str
    generator_url: str
    group_key: str
    received_at: float  # unix seconds, when the webhook arrived
    # False: no loaded rule wants it, so it is journaled already done and no worker
    # ever claims it (see WebhookHandler).
    pending: bool = True
    # Who evaluated the alert: "alertmanager" (Prometheus rules) or "grafana" (Grafana
    # Alerting). It decides who corroborates it before a mitigation (engine/gate.py).
    source: str = "alertmanager"
    grafana: GrafanaDetails | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.fingerprint, self.starts_at, self.status)


def occurrences(payload: WebhookPayload, received_at: float) -> list[Occurrence]:
    """Split a group into occurrences, dropping repeats inside one payload."""
    seen: set[tuple[str, str, str]] = set()
    out: list[Occurrence] = []
    for a in payload.alerts:
        occ = Occurrence(
            a.fingerprint,
            a.startsAt,
            a.status,
            a.alertname,
            dict(a.labels),
            dict(a.annotations),
            a.endsAt,
            a.generatorURL,
            payload.groupKey,
            received_at,
        )
        if occ.key not in seen:
            seen.add(occ.key)
            out.append(occ)
    return out


# ----------------------------------------------------------- the webhook's fast path
#
# WebhookPayload.model_validate_json takes ~55 us for a 20-alert body, the msgspec
# mirror below ~20 us. The webhook decodes with the mirror and only falls back to
# WebhookPayload when that fails, so every body the fast path refuses gets exactly
# the strict model's answer (400 or 422, same detail).
# The mirror must therefore never accept what WebhookPayload refuses, which is why:
# - unknown fields are refused (the strict model ignores them): msgspec skips an
#   ignored value without the checks pydantic's parser makes (UTF-8, nesting depth,
#   number range), and Alertmanager 0.25 sends no field the model does not declare;
# - any \u0000 in the body (the only way a NUL can be in valid JSON) goes to the
#   strict model: one search of the body instead of a pattern per string (msgspec
#   checks patterns with Python's re, which would cost more than the whole decode);
# - fingerprints and timestamps are checked in Python after decoding, by the same
#   rules (canonical_time itself for timestamps).
# gc=False: these hold only strings, dicts of strings and lists of each other, so they
# can never be part of a cycle, and untracked they do not bring on collections.
# tests/server/test_decode.py checks the two paths against each other.

_LabelName = Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]
_HEX = "0123456789abcdef"
_ESCAPED_NUL = re.compile(rb"\\u0000")


class _FastAlert(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    status: Literal["firing", "resolved"]
    labels: dict[_LabelName, str]
    startsAt: str
    fingerprint: str
    annotations: dict[str, str] = {}
    endsAt: str = ZERO_TIME
    generatorURL: str = ""


class _FastPayload(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    version: Literal["4"]
    status: Literal["firing", "resolved"]
    receiver: str
    groupKey: str
    alerts: Sequence[_FastAlert]  # decoded as a list
    groupLabels: dict[str, str] = {}
    commonLabels: dict[str, str] = {}
    commonAnnotations: dict[str, str] = {}
    externalURL: str = ""
    truncatedAlerts: Annotated[int, msgspec.Meta(ge=0, le=MAX_TRUNCATED_ALERTS)] = 0


_FAST_DECODER = msgspec.json.Decoder(_FastPayload)


@functools.lru_cache(maxsize=8)
def _fast_decoder(bounds: LabelBounds | None) -> msgspec.json.Decoder[_FastPayload]:
    """The mirror with the label bounds as msgspec constraints, checked in C.

    Strings are bounded in code points (bounds.max_chars), which keeps them within
    max_label_bytes whatever they hold; a longer string that may still fit goes to
    the strict path, where the exact check in bytes decides. So the fast path never
    accepts what the bounds refuse.
    """
    if bounds is None:
        return _FAST_DECODER
    chars = bounds.max_chars
    text = Annotated[str, msgspec.Meta(max_length=chars)]
    name = Annotated[str, msgspec.Meta(min_length=1, max_length=min(chars, 1024))]
    labels = Annotated[dict[name, text], msgspec.Meta(max_length=bounds.max_labels)]
    texts = Annotated[dict[text, text], msgspec.Meta(max_length=bounds.max_labels)]

    # defstruct, not class statements: with postponed annotations msgspec could not
    # resolve these local types. Redefined fields keep their place and defaults.
    alert = msgspec.defstruct(
        "BoundedAlert",
        [("labels", labels), ("annotations", texts, {})],
        bases=(_FastAlert,),
        forbid_unknown_fields=True,
        gc=False,
    )
    payload = msgspec.defstruct(
        "BoundedPayload",
        [
            ("alerts", list[alert]),  # type: ignore[valid-type]
            ("groupLabels", texts, {}),
            ("commonLabels", texts, {}),
            ("commonAnnotations", texts, {}),
        ],
        bases=(_FastPayload,),
        forbid_unknown_fields=True,
        gc=False,
    )
    return cast("msgspec.json.Decoder[_FastPayload]", msgspec.json.Decoder(payload))


@dataclass(slots=True)
class Delivery:
    """What the webhook needs from one body."""

    group_key: str
    alerts: int  # as sent, repeats inside the payload included
    truncated: int
    occurrences: list[Occurrence]


def decode_webhook(
    body: bytes,
    received_at: float,
    bounds: LabelBounds | None = None,
    *,
    fallback: Callable[[bytes, float, LabelBounds | None], Delivery | None] | None = None,
) -> Delivery:
    """``WebhookPayload.model_validate_json``, ``bounds.check`` then ``occurrences``,
    cheaper.

    Same answers: raises pydantic's ValidationError, with the same errors, for every
    body the strict model refuses, then bounds.BoundsExceeded for every payload that
    breaks a bound. ``fallback`` decodes another sender's shape (Grafana's) when the
    fast path refuses the body, or returns None to leave the body to the strict model.
    """
    fast = _decode_fast(body, received_at, bounds)
    if fast is not None:
        return fast
    if fallback is not None and (other := fallback(body, received_at, bounds)) is not None:
        return other
    payload = WebhookPayload.model_validate_json(body)
    if bounds is not None:
        bounds.check(payload)
    return Delivery(
        payload.groupKey,
        len(payload.alerts),
        payload.truncatedAlerts,
        occurrences(payload, received_at),
    )


def _decode_fast(
    body: bytes, received_at: float, bounds: LabelBounds | None = None
) -> Delivery | None:
    """The Delivery, or None when the strict model has to decide."""
    if b"\\" in body and _ESCAPED_NUL.search(body):
        return None
    try:
        payload = _fast_decoder(bounds).decode(body)
    except (msgspec.MsgspecError, ValueError):  # ValueError: invalid UTF-8
        return None
    group_key = payload.groupKey
    seen: set[tuple[str, str, str]] = set()
    out: list[Occurrence] = []
    for a in payload.alerts:
        fingerprint = a.fingerprint
        # ^[0-9a-f]{1,32}$: strip leaves something iff there is a non-hex character.
        if not 0 < len(fingerprint) <= 32 or fingerprint.strip(_HEX):
            return None
        try:
            starts_at = canonical_time(a.startsAt)
            ends_at = canonical_time(a.endsAt)
        except ValueError:
            return None
        key = (fingerprint, starts_at, a.status)
        if key in seen:
            continue
        seen.add(key)
        # The decoded dicts belong to nobody else: no copies.
        out.append(
            Occurrence(
                fingerprint,
                starts_at,
                a.status,
                a.labels.get("alertname", ""),
                a.labels,
                a.annotations,
                ends_at,
                a.generatorURL,
                group_key,
                received_at,
            )
        )
    return Delivery(group_key, len(payload.alerts), payload.truncatedAlerts, out)
