"""POST /api/v1/alerts: the Alertmanager webhook.

Order matters: authenticate, bound the body, parse strictly, journal durably, and
only then answer 202. Anything that goes wrong answers with a JSON error and
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
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web
from pydantic import SecretStr, ValidationError

from remediator import logs
from remediator.errors import StateUnavailable
from remediator.metrics import Metrics
from remediator.models import WebhookPayload, occurrences
from remediator.server import auth
from remediator.server.responses import error, json_response
from remediator.settings import Settings
from remediator.state.journal import JournalWriter

log = logs.get("remediator.webhook")

_JSON_TYPES = ("application/json",)


def _schema_detail(exc: ValidationError) -> list[dict[str, str]]:
    out = []
    for e in exc.errors(include_input=False, include_url=False)[:20]:
        field = ".".join(str(p) for p in e["loc"]) or "(body)"
        out.append({"field": field, "message": e["msg"]})
    return out


class WebhookHandler:
    def __init__(
        self,
        settings: Settings,
        journal: JournalWriter,
        metrics: Metrics,
        *,
        known_alertnames: Callable[[], frozenset[str]],
        on_journal_down: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self.settings = settings
        self.journal = journal
        self.metrics = metrics
        self.tokens: Mapping[str, SecretStr] = {
            f"webhook-{i + 1}": t for i, t in enumerate(settings.auth.webhook_tokens)
        }
        self.known_alertnames = known_alertnames
        # Request ids: a random per-process prefix and a counter (unique, and cheaper
        # than drawing 8 random bytes per request).
        self._id_prefix = secrets.token_hex(4)
        self._ids = itertools.count(1)
        self.on_journal_down = on_journal_down

    def _reply(self, resp: web.Response) -> web.Response:
        self.metrics.webhooks_received.labels(code=str(resp.status)).inc()
        return resp

    async def handle(self, request: web.Request) -> web.Response:
        request_id = f"{self._id_prefix}{next(self._ids):08x}"
        # request_id is passed to each log call rather than bound in contextvars:
        # binding cost more than the rest of the logging on this path.
        resp = await self._handle(request, request_id)
        resp.headers["X-Request-Id"] = request_id
        return self._reply(resp)

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
        if request.content_length is not None and request.content_length > limit:
            return err(413, "payload_too_large", f"body exceeds {limit} bytes")
        if request.content_type not in _JSON_TYPES:
            return err(
                415,
                "unsupported_media_type",
                f"expected application/json, got {request.content_type or 'none'}",
            )
        chunks: list[bytes] = []
        size = 0
        # A client that trickles its body (slowloris) must not hold a connection and a
        # handler for ever: the whole body has read_timeout seconds to arrive.
        read_timeout = self.settings.limits.read_timeout
        try:
            async with asyncio.timeout(read_timeout):
                while chunk := await request.content.read(65536):
                    size += len(chunk)
                    if size > limit:  # chunked bodies have no Content-Length to check
                        return err(413, "payload_too_large", f"body exceeds {limit} bytes")
                    chunks.append(chunk)
        except TimeoutError:
            resp = err(408, "request_timeout", f"body not received within {read_timeout:g} s")
            resp.force_close()
            return resp
        body = b"".join(chunks)

        try:
            payload = WebhookPayload.model_validate_json(body)
        except ValidationError as exc:
            if any(e["type"] == "json_invalid" for e in exc.errors()):
                return err(400, "malformed_json", "request body is not valid JSON")
            return err(422, "schema_violation", _schema_detail(exc))

        if len(payload.alerts) > self.settings.limits.max_alerts_per_payload:
            return err(
                413,
                "too_many_alerts",
                f"{len(payload.alerts)} alerts; limit is "
                f"{self.settings.limits.max_alerts_per_payload}",
            )
        if payload.truncatedAlerts:
            self.metrics.truncated_alerts.inc(payload.truncatedAlerts)
            log.warning(
                "alerts_truncated",
                truncated=payload.truncatedAlerts,
                group_key=payload.groupKey,
                request_id=request_id,
            )

        occs = occurrences(payload, received_at)
        try:
            fresh = await self.journal.append(occs)
        except StateUnavailable as exc:
            log.error(
                "journal_unavailable", error=str(exc), alerts=len(occs), request_id=request_id
            )
            if self.on_journal_down is not None:
                await self.on_journal_down(str(exc))
            return err(503, "journal_unavailable", "the state store cannot be reached; retry later")

        known = self.known_alertnames()
        counts: Counter[tuple[str, str]] = Counter()
        debug = log.is_enabled_for(logging.DEBUG)
        for occ, new in zip(occs, fresh, strict=True):
            # alertname comes from the sender: only names our rules know become label
            # values, so a hostile sender cannot explode metric cardinality.
            counts[(occ.alertname if occ.alertname in known else "other", occ.status)] += 1
            if debug:  # per-alert lines are for debugging; the journal is the record
                log.debug(
                    "alert_journaled" if new else "alert_duplicate",
                    request_id=request_id,
                    fingerprint=occ.fingerprint,
                    alertname=occ.alertname,
                    status=occ.status,
                    starts_at=occ.starts_at,
                )
        for (name, status), n in counts.items():
            self.metrics.alerts_received.labels(alertname=name, status=status).inc(n)
        journaled = sum(fresh)
        # Repeats inside the same payload are duplicates too.
        dups = len(payload.alerts) - journaled
        if dups:
            self.metrics.alerts_deduplicated.inc(dups)
        log.info(
            "webhook_accepted",
            request_id=request_id,
            journaled=journaled,
            duplicates=dups,
            group_key=payload.groupKey[:200],
            alertnames=sorted({o.alertname[:100] for o in occs})[:10],
        )
        body_out: dict[str, Any] = {
            "status": "accepted",
            "request_id": request_id,
            "journaled": journaled,
            "duplicates": dups,
        }
        return json_response(body_out, 202)
