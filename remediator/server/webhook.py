"""POST /api/v1/alerts: the Alertmanager webhook.

Order matters: authenticate, bound the body, undo its Content-Encoding (bounded
too), parse strictly, check the label bounds, journal durably, and only then answer
202. Anything that goes wrong answers with a JSON error and
changes nothing. When the journal cannot be reached the answer is 503, which
Alertmanager retries; it is never a 2xx.

This handler never runs a runbook: it journals and returns, so Alertmanager's
flush deadline (about 10 s) is never at risk.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import hdrs, web
from pydantic import SecretStr, ValidationError

from remediator import logs
from remediator.bounds import BoundsExceeded, LabelBounds
from remediator.errors import StateUnavailable
from remediator.grafana_payload import VERSION_MESSAGE, decode_grafana, is_version_error
from remediator.metrics import Metrics
from remediator.models import Occurrence, decode_webhook
from remediator.server import auth, encoding
from remediator.server.responses import error, json_response, printable
from remediator.settings import Settings
from remediator.state.journal import JournalWriter

log = logs.get("remediator.webhook")

_JSON_TYPES = ("application/json",)


def _schema_detail(exc: ValidationError) -> list[dict[str, str]]:
    out = []
    for e in exc.errors(include_input=False, include_url=False)[:20]:
        # A location can hold a label name as sent (any length, any characters).
        field = ".".join(printable(str(p), 64) for p in e["loc"]) or "(body)"
        message = VERSION_MESSAGE if is_version_error(dict(e)) else e["msg"]
        out.append({"field": field, "message": message})
    return out


class WebhookHandler:
    def __init__(
        self,
        settings: Settings,
        journal: JournalWriter,
        metrics: Metrics,
        *,
        known_alertnames: Callable[[], frozenset[str]],
        routed: Callable[[dict[str, str]], bool] | None = None,
        on_journal_down: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self.settings = settings
        self.journal = journal
        self.metrics = metrics
        limits = settings.limits
        self.bounds = LabelBounds(limits.max_label_bytes, limits.max_labels)
        self.tokens: Mapping[str, SecretStr] = {
            f"webhook-{i + 1}": t for i, t in enumerate(settings.auth.webhook_tokens)
        }
        self.known_alertnames = known_alertnames
        # Whether any loaded rule selects a firing alert's labels; None: assume so.
        self.routed = routed
        # Metric children by label values: labels() costs a lock and a lookup per call.
        self._by_code: dict[int, Any] = {}
        self._by_alert: dict[tuple[str, str], Any] = {}
        # Request ids: a random per-process prefix and a counter (unique, and cheaper
        # than drawing 8 random bytes per request).
        self._id_prefix = secrets.token_hex(4)
        self._ids = itertools.count(1)
        self.on_journal_down = on_journal_down
        # The module's logger is a lazy proxy that looks the real one up on every
        # attribute access; the hot path keeps the real one (logs.configure runs first).
        self._log = log.bind()

    def _reply(self, resp: web.Response) -> web.Response:
        counter = self._by_code.get(resp.status)
        if counter is None:
            counter = self.metrics.webhooks_received.labels(code=str(resp.status))
            self._by_code[resp.status] = counter
        counter.inc()
        return resp

    def _count_alerts(self, occs: list[Occurrence]) -> None:
        known = self.known_alertnames()
        counts: dict[tuple[str, str], int] = {}
        for occ in occs:
            # alertname comes from the sender: only names our rules know become label
            # values, so a hostile sender cannot explode metric cardinality.
            key = (occ.alertname if occ.alertname in known else "other", occ.status)
            counts[key] = counts.get(key, 0) + 1
        for key, n in counts.items():
            counter = self._by_alert.get(key)
            if counter is None:
                counter = self.metrics.alerts_received.labels(alertname=key[0], status=key[1])
                self._by_alert[key] = counter
            counter.inc(n)

    def _mark_unrouted(self, occs: list[Occurrence]) -> None:
        """Firing occurrences no rule selects are journaled already done: the engine
        would claim each one only to find nothing to do. A resolve always goes to the
        workers: a run started under an earlier rule set may need its undo."""
        routed = self.routed
        if routed is None:
            return
        for occ in occs:
            if occ.status == "firing" and not routed(occ.labels):
                occ.pending = False

    async def handle(self, request: web.Request) -> web.Response:
        request_id = f"{self._id_prefix}{next(self._ids):08x}"
        # request_id is passed to each log call rather than bound in contextvars:
        # binding cost more than the rest of the logging on this path.
        resp = await self._handle(request, request_id)
        resp.headers["X-Request-Id"] = request_id
        return self._reply(resp)

    async def _read_body(
        self, request: web.Request, limit: int, err: Callable[..., web.Response]
    ) -> bytes | web.Response:
        content = request.content
        if content.is_eof():
            # The whole body arrived with the headers, as an alert group's usually does:
            # nothing to wait for, so no timeout to arm (that cost ~4 us per request).
            body = content.read_nowait()
            if len(body) > limit:  # chunked bodies have no Content-Length to check
                return err(413, "payload_too_large", f"body exceeds {limit} bytes")
            return body
        chunks: list[bytes] = []
        size = 0
        # A client that trickles its body (slowloris) must not hold a connection and a
        # handler for ever: the whole body has read_timeout seconds to arrive.
        read_timeout = self.settings.limits.read_timeout
        try:
            async with asyncio.timeout(read_timeout):
                while chunk := await content.read(65536):
                    size += len(chunk)
                    if size > limit:
                        return err(413, "payload_too_large", f"body exceeds {limit} bytes")
                    chunks.append(chunk)
        except TimeoutError:
            resp = err(408, "request_timeout", f"body not received within {read_timeout:g} s")
            resp.force_close()
            return resp
        return b"".join(chunks)

    async def _handle(self, request: web.Request, request_id: str) -> web.Response:
        received_at = time.time()
        err = functools.partial(error, request_id=request_id)
        if self.tokens:
            if auth.match_token(auth.presented_secret(request), self.tokens) is None:
                self.metrics.auth_failures.labels("webhook").inc()
                resp = err(
                    401, "unauthorized", "missing or invalid credentials", remote=request.remote
                )
                resp.headers["WWW-Authenticate"] = 'Bearer realm="remediator"'
                return resp

        limit = self.settings.limits.max_body_bytes
        declared = request.content_length
        if declared is not None and declared > limit:
            return err(413, "payload_too_large", f"body exceeds {limit} bytes")
        # The exact header Alertmanager sends needs no parsing (parsing costs ~4 us);
        # anything else is parsed and judged as before.
        exact = request.headers.get(hdrs.CONTENT_TYPE) == "application/json"
        if not exact and request.content_type not in _JSON_TYPES:
            return err(
                415,
                "unsupported_media_type",
                f"expected application/json, got {printable(request.content_type) or 'none'}",
            )
        try:
            if not exact:
                encoding.check_charset(request.charset)
            coding = encoding.coding_of(request.headers.get(hdrs.CONTENT_ENCODING))
        except encoding.Refused as exc:
            return err(exc.status, exc.error, exc.detail)
        body = await self._read_body(request, limit, err)
        if isinstance(body, web.Response):
            return body
        if coding is not None:
            try:
                body = encoding.decode(body, coding, limit)
            except encoding.Refused as exc:
                return err(exc.status, exc.error, exc.detail)

        try:
            # Alertmanager's version 4 first (its fast path); a body that is not one
            # may be Grafana Alerting's version 1, and is otherwise refused as before.
            delivery = decode_webhook(body, received_at, self.bounds, fallback=decode_grafana)
        except ValidationError as exc:
            if any(e["type"] == "json_invalid" for e in exc.errors()):
                return err(400, "malformed_json", "request body is not valid JSON")
            return err(422, "schema_violation", _schema_detail(exc))
        except BoundsExceeded as exc:
            detail = [{"field": p.field, "message": p.message} for p in exc.problems]
            return err(422, "schema_violation", detail)

        if delivery.alerts > self.settings.limits.max_alerts_per_payload:
            return err(
                413,
                "too_many_alerts",
                f"{delivery.alerts} alerts; limit is {self.settings.limits.max_alerts_per_payload}",
            )
        if delivery.truncated:
            self.metrics.truncated_alerts.inc(delivery.truncated)
            log.warning(
                "alerts_truncated",
                truncated=delivery.truncated,
                group_key=delivery.group_key,
                request_id=request_id,
            )

        occs = delivery.occurrences
        self._mark_unrouted(occs)
        try:
            fresh = await self.journal.append(occs)
        except StateUnavailable as exc:
            log.error(
                "journal_unavailable", error=str(exc), alerts=len(occs), request_id=request_id
            )
            if self.on_journal_down is not None:
                await self.on_journal_down(str(exc))
            return err(503, "journal_unavailable", "the state store cannot be reached; retry later")

        self._count_alerts(occs)
        if self._log.is_enabled_for(logging.DEBUG):  # per-alert lines: for debugging only
            for occ, new in zip(occs, fresh, strict=True):
                self._log.debug(
                    "alert_journaled" if new else "alert_duplicate",
                    request_id=request_id,
                    fingerprint=occ.fingerprint,
                    alertname=occ.alertname,
                    status=occ.status,
                    starts_at=occ.starts_at,
                    pending=occ.pending,
                )
        journaled = sum(fresh)
        # Repeats inside the same payload are duplicates too.
        dups = delivery.alerts - journaled
        if dups:
            self.metrics.alerts_deduplicated.inc(dups)
        self._log.info(
            "webhook_accepted",
            request_id=request_id,
            journaled=journaled,
            duplicates=dups,
            group_key=delivery.group_key[:200],
            alertnames=sorted({o.alertname[:100] for o in occs})[:10],
        )
        body_out: dict[str, Any] = {
            "status": "accepted",
            "request_id": request_id,
            "journaled": journaled,
            "duplicates": dups,
        }
        return json_response(body_out, 202)
