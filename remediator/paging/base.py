"""What a page is, and the one interface every pager implements.

A page is built once per run from the run's recorded steps (see ``text.py``) and
stored in the durable outbox (as ``PageEvent.to_json()``) before any network call, so a
restart never loses it. Pagers only translate a ``PageEvent`` into their HTTP call and
classify the answer; they never retry themselves: the outbox owns retries and backoff.

This module also holds what the HTTP pagers share: the classification of an HTTP
answer into a ``DeliveryResult`` and the redaction of secrets. It must never let a
secret (routing key, API key, Slack webhook URL) reach a ``reason``, a ``repr()`` or a
log line, and ``send`` must never raise for a peer problem: it returns a result.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Literal, Protocol, get_args
from urllib.parse import urlsplit

from remediator import __version__
from remediator.clients.http_post import HttpPoster, PostAnswer, PostFailed
from remediator.errors import ConfigError

Severity = Literal["P0", "P1", "P2", "P3"]
EventAction = Literal["trigger", "resolve"]
Mode = Literal["live", "dry-run", "paused"]

SEVERITIES: tuple[Severity, ...] = get_args(Severity)
ACTIONS: tuple[EventAction, ...] = get_args(EventAction)
MODES: tuple[Mode, ...] = get_args(Mode)

# Bumped when the stored shape changes; from_json refuses shapes it does not know
# rather than guessing, so an old daemon never sends a half-understood page.
JSON_VERSION = 1


@dataclass(frozen=True)
class PageContent:
    """Everything a human needs, independent of the pager that carries it."""

    dedup_key: str  # stable per run: "remediator/<run_id>"
    severity: Severity
    title: str  # one line: "[RB-01] PricingPackBuildSlow: ..."
    alertname: str
    runbook: str  # "RB-01"
    rule: str
    mode: str  # "live" | "dry-run" | "paused"
    done: tuple[str, ...] = ()  # "serve_last_good_pack: applied (marked PP-2025-10-20 fresh)"
    skipped: tuple[str, ...] = ()  # "rerun_build: skipped (providers unhealthy)"
    left_for_human: tuple[str, ...] = ()  # "scale scheduler to 0: remediator approve 42"
    links: tuple[tuple[str, str], ...] = ()  # (text, href): runbook, grafana, alert
    labels: dict[str, str] = field(default_factory=dict)
    # The values that fired the alert, as (name, shown value): Grafana Alerting's
    # per-alert ``values`` (query refIds, e.g. ("B", "44.24")); empty for Alertmanager.
    values: tuple[tuple[str, str], ...] = ()
    details: dict[str, Any] = field(default_factory=dict)  # JSON-compatible values
    source: str = "remediator"
    # A P0 whose runbook changed something: it always opens its own incident, even
    # past the pager's hourly budget (``pagers.max_pages_per_hour``); see outbox.py.
    never_fold: bool = False

    def __post_init__(self) -> None:
        # Fail where the page is built, not hours later in the outbox.
        if not self.dedup_key:
            raise ValueError("PageContent.dedup_key must not be empty")
        if self.severity not in SEVERITIES:
            raise ValueError(f"PageContent.severity must be one of {SEVERITIES}")
        if self.mode not in MODES:
            raise ValueError(f"PageContent.mode must be one of {MODES}")


@dataclass(frozen=True)
class PageEvent:
    action: EventAction
    content: PageContent
    # When the event was created (not sent): the outbox may send it much later.
    timestamp: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"PageEvent.action must be one of {ACTIONS}")
        if self.timestamp.tzinfo is None:
            raise ValueError("PageEvent.timestamp must be timezone-aware")

    def to_json(self) -> dict[str, Any]:
        """Plain JSON types only, for the outbox. Non-JSON detail values become str."""
        c = self.content
        return {
            "v": JSON_VERSION,
            "action": self.action,
            "timestamp": self.timestamp.isoformat(),
            "content": {
                "dedup_key": c.dedup_key,
                "severity": c.severity,
                "title": c.title,
                "alertname": c.alertname,
                "runbook": c.runbook,
                "rule": c.rule,
                "mode": c.mode,
                "done": list(c.done),
                "skipped": list(c.skipped),
                "left_for_human": list(c.left_for_human),
                "links": [{"text": text, "href": href} for text, href in c.links],
                "labels": dict(c.labels),
                "values": [[name, value] for name, value in c.values],
                "details": json.loads(json.dumps(c.details, default=str)),
                "source": c.source,
                "never_fold": c.never_fold,
            },
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> PageEvent:
        """Inverse of ``to_json``. Raises ValueError on a shape it does not know."""
        try:
            if d["v"] != JSON_VERSION:
                raise ValueError(f"unknown page event version {d['v']!r}")
            c = d["content"]
            content = PageContent(
                dedup_key=_str(c["dedup_key"]),
                severity=c["severity"],
                title=_str(c["title"]),
                alertname=_str(c["alertname"]),
                runbook=_str(c["runbook"]),
                rule=_str(c["rule"]),
                mode=_str(c["mode"]),
                done=tuple(_str(x) for x in _list(c["done"])),
                skipped=tuple(_str(x) for x in _list(c["skipped"])),
                left_for_human=tuple(_str(x) for x in _list(c["left_for_human"])),
                links=tuple((_str(x["text"]), _str(x["href"])) for x in _list(c["links"])),
                labels={_str(k): _str(v) for k, v in _dict(c["labels"]).items()},
                # Absent in events stored before the field existed.
                values=tuple((_str(n), _str(v)) for n, v in _list(c.get("values", []))),
                details=dict(_dict(c["details"])),
                source=_str(c["source"]),
                # Absent in events stored before the flag existed.
                never_fold=_bool(c.get("never_fold", False)),
            )
            return cls(
                action=d["action"],
                content=content,
                timestamp=datetime.fromisoformat(_str(d["timestamp"])),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"malformed page event: {exc!r}") from exc


def _list(value: object) -> list[Any]:
    # A bare string is iterable too; it must not become a tuple of characters.
    if not isinstance(value, list):
        raise TypeError(f"expected a list, got {type(value).__name__}")
    return value


def _dict(value: object) -> dict[Any, Any]:
    if not isinstance(value, dict):
        raise TypeError(f"expected an object, got {type(value).__name__}")
    return value


def _bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected a boolean, got {type(value).__name__}")
    return value


def _str(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


@dataclass(frozen=True)
class Delivered:
    status: int


@dataclass(frozen=True)
class RetryLater:
    """429, 5xx, timeouts, connection errors: the outbox tries again."""

    reason: str
    after: float | None = None  # seconds, from Retry-After when the peer sent one


@dataclass(frozen=True)
class Rejected:
    """400 and other 4xx: retrying cannot help; recorded as failed and logged."""

    status: int
    reason: str


DeliveryResult = Delivered | RetryLater | Rejected


class Pager(Protocol):
    name: str  # "pagerduty" | "slack" | "opsgenie"; used as the metric label

    def accepts(self, severity: Severity) -> bool:
        """Severity routing: P0/P1 page (PagerDuty, Opsgenie), P2 notify (Slack)."""
        ...

    async def send(self, event: PageEvent) -> DeliveryResult: ...

    async def aclose(self) -> None: ...


# --- shared by the HTTP pagers ---------------------------------------------------------

USER_AGENT = f"remediator/{__version__}"
_REASON_BODY_CHARS = 200


def severity_set(severities: Iterable[str], *, pager: str) -> frozenset[Severity]:
    """Validate a pager's ``severities`` option (from the config file)."""
    result: set[Severity] = set()
    for s in severities:
        if s not in SEVERITIES:
            raise ConfigError(f"pagers.{pager}.severities: unknown severity {s!r}")
        result.add(s)
    return frozenset(result)


def check_url(url: str, *, key: str, secret: bool = False) -> str:
    """Refuse a URL that could never work, so send() never meets a config error."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        shown = "<redacted>" if secret else repr(url)
        raise ConfigError(f"{key}: not an http(s) URL: {shown}")
    return url


class Redactor:
    """Replaces every known secret in a text with ``***``."""

    def __init__(self, secrets: Iterable[str]) -> None:
        # Longest first, so a URL is replaced whole before its token alone.
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text


class _LibraryLogRedactor(logging.Filter):
    """httpx logs every request URL at INFO; the Slack webhook URL is a secret."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a broken log call must not break a send; leave it alone
            return True
        redacted = Redactor(self.secrets)(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


_library_log_redactor = _LibraryLogRedactor()
logging.getLogger("httpx").addFilter(_library_log_redactor)


def hide_in_library_logs(*secrets: str) -> None:
    """Register secrets that must be redacted from httpx's own log lines."""
    _library_log_redactor.secrets.update(s for s in secrets if s)


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Retry-After as seconds: delta-seconds or an HTTP date; None if absent or bad."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if seconds != seconds or seconds in (float("inf"), float("-inf")):  # NaN, inf
        return None
    return max(0.0, seconds)


def classify(peer: str, response: PostAnswer, redact: Redactor) -> DeliveryResult:
    """2xx delivered; 429 and 5xx retry later; anything else is rejected."""
    status = response.status
    if 200 <= status < 300:
        return Delivered(status=status)
    # Redact the whole answer before cutting it: cutting first could leave half a
    # secret that no longer matches, and half a webhook URL is still a leak.
    excerpt = " ".join(redact(response.text).split())[:_REASON_BODY_CHARS]
    reason = f"{peer}: HTTP {status}" + (f": {excerpt}" if excerpt else "")
    if status == 429:
        after = parse_retry_after(response.headers.get("retry-after"))
        return RetryLater(reason=reason, after=after)
    if status >= 500:
        return RetryLater(reason=reason)
    # 4xx, and 1xx/3xx which only a misconfigured URL produces: retrying cannot help.
    return Rejected(status=status, reason=reason)


class HttpPager:
    """What the HTTP pagers share: severity routing, the client, one classified POST.

    The connection pool is created on first use (so building a pager for ``replay``
    or a test costs nothing) and closed by ``aclose`` only if this pager created it.
    """

    name: str

    def __init__(
        self,
        *,
        secrets: Iterable[str],
        client: HttpPoster | None,
        timeout: float,
        severities: Iterable[str],
    ) -> None:
        self._severities = severity_set(severities, pager=self.name)
        self._http = client if client is not None else HttpPoster()
        self._owns_client = client is None
        self._closed = False
        self._timeout = timeout
        secrets = [s for s in secrets if s]
        self._redact = Redactor(secrets)
        hide_in_library_logs(*secrets)

    def accepts(self, severity: Severity) -> bool:
        return severity in self._severities

    async def send(self, event: PageEvent) -> DeliveryResult:
        raise NotImplementedError  # each pager builds its own request

    async def aclose(self) -> None:
        self._closed = True
        if self._owns_client:
            await self._http.aclose()

    async def _post(
        self, url: str, body: bytes, headers: Mapping[str, str] | None = None
    ) -> DeliveryResult:
        """One POST, no retries. Network trouble becomes RetryLater, never an exception."""
        if self._closed:
            # A send after aclose() is a bug in the caller's shutdown order.
            raise RuntimeError(f"{self.name}: send() after aclose()")
        all_headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
        all_headers.update(headers or {})
        try:
            response = await self._http.post(url, body, all_headers, self._timeout)
        except PostFailed as exc:
            if exc.timeout:
                return RetryLater(reason=self._redact(f"{self.name}: timeout ({exc.kind})"))
            # Exception text can carry the URL, and the Slack URL is the secret.
            return RetryLater(reason=self._redact(f"{self.name}: {exc.kind}: {exc.detail}"))
        return classify(self.name, response, self._redact)


def dumps(body: Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON, so size checks measure exactly what goes on the wire."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), default=str).encode()
