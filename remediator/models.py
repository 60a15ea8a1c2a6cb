"""The Alertmanager webhook payload (version 4, as Alertmanager 0.25 sends it).

Parsed once at the edge into strict models; inside, code trusts these types.
Unknown extra fields are ignored (newer Alertmanagers add some), but every field
0.25 sends is type-checked, and timestamps are canonicalised so the idempotency
key (fingerprint, startsAt, status) is identical whichever peer sent it.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
    r"(Z|z|[+-]\d{2}:\d{2})$"
)
ZERO_TIME = "0001-01-01T00:00:00Z"


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
    truncatedAlerts: int = Field(default=0, ge=0)


@dataclass(frozen=True, slots=True)
class Occurrence:
    """One alert occurrence: the unit the journal stores exactly once."""

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

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.fingerprint, self.starts_at, self.status)


def occurrences(payload: WebhookPayload, received_at: float) -> list[Occurrence]:
    """Split a group into occurrences, dropping repeats inside one payload."""
    seen: set[tuple[str, str, str]] = set()
    out: list[Occurrence] = []
    for a in payload.alerts:
        occ = Occurrence(
            fingerprint=a.fingerprint,
            starts_at=a.startsAt,
            status=a.status,
            alertname=a.alertname,
            labels=dict(a.labels),
            annotations=dict(a.annotations),
            ends_at=a.endsAt,
            generator_url=a.generatorURL,
            group_key=payload.groupKey,
            received_at=received_at,
        )
        if occ.key not in seen:
            seen.add(occ.key)
            out.append(occ)
    return out
