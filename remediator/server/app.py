"""The aiohttp application: routes, probes and the operator API.

Routes (fixed by the contract):
  POST /api/v1/alerts                      Alertmanager webhook (webhook tokens)
  GET  /metrics, /healthz, /readyz         open
  GET  /api/v1/actions                     operator tokens
  GET  /api/v1/approvals                   operator tokens (the pending ones)
  POST /api/v1/actions/{id}/approve|reject operator tokens
  POST /api/v1/pause, /api/v1/resume       operator tokens
  POST /-/reload                           operator tokens (Alertmanager's convention)
  POST /api/v1/slack/interactions          Slack's signed button clicks (server/slack.py)

The server only translates HTTP into calls on the daemon; it holds no state.

Operator routes are never open off loopback: with no operator tokens they answer
only when the daemon's bind address (settings.listen, not the client's address) is
loopback; bound anywhere else they answer 403, whatever the webhook auth. Every
error, the router's own 404 and 405 included, is a JSON {"error", "detail"}.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import SecretStr

from remediator import logs
from remediator.errors import StateUnavailable
from remediator.ops.backends import who_may_decide
from remediator.server import auth
from remediator.server.middleware import store_down_is_503
from remediator.server.responses import error, json_response
from remediator.server.slack import SlackInteractions
from remediator.server.webhook import WebhookHandler
from remediator.settings import Settings, is_loopback
from remediator.state import audit

if TYPE_CHECKING:
    from remediator.daemon import Daemon

log = logs.get("remediator.server")

# ASCII digits only: str.isdigit() also accepts "²" (which int() refuses) and
# Arabic-Indic digits (which it reads as a number). 18 digits always fit the
# store's 64-bit ids.
_ID = re.compile(r"[0-9]{1,18}")
# A limit is clamped to 1..1000 whatever its size; only absurd lengths are refused.
_LIMIT = re.compile(r"-?[0-9]{1,64}")


@dataclass(frozen=True, slots=True)
class OperatorAccess:
    """Who may use the operator routes, decided once at start from the settings."""

    tokens: Mapping[str, SecretStr]
    listen: str
    # No tokens and a loopback bind: a local, single-user setup, open without them.
    open_locally: bool

    @classmethod
    def from_settings(cls, settings: Settings) -> OperatorAccess:
        tokens = settings.auth.named_operator_tokens()
        return cls(tokens, settings.listen, not tokens and is_loopback(settings.host))

    @property
    def closed(self) -> bool:
        """No tokens and a non-loopback bind: nobody can use the operator routes."""
        return not self.tokens and not self.open_locally


DAEMON: web.AppKey[Daemon] = web.AppKey("daemon")
OPERATOR_ACCESS: web.AppKey[OperatorAccess] = web.AppKey("operator_access")


def _operator(request: web.Request) -> str | web.Response:
    """The operator's token name, or an error response."""
    access = request.app[OPERATOR_ACCESS]
    if not access.tokens:
        if access.open_locally:
            return "local-operator"
        # The client's address proves nothing (a proxy or a port-forward on the host
        # connects from loopback too): only the bind address closes the door.
        return error(
            403,
            "forbidden",
            f"operator routes are closed: the daemon listens on {access.listen}, which "
            "is not loopback, and auth.operator_tokens is empty",
            path=request.path,
        )
    name = auth.match_token(auth.presented_secret(request), access.tokens)
    if name is None:
        request.app[DAEMON].metrics.auth_failures.labels("operator").inc()
        resp = error(401, "unauthorized", "operator token required", path=request.path)
        resp.headers["WWW-Authenticate"] = 'Bearer realm="remediator-operator"'
        return resp
    return name


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON]
    problems = await daemon.readiness_problems()
    if problems:
        return json_response({"status": "not ready", "problems": problems}, 503)
    return json_response({"status": "ready"})


async def metrics(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON]
    await daemon.refresh_gauges(strict=True)  # the store down: 503 (middleware)
    resp = web.Response(body=generate_latest(daemon.metrics.registry))
    resp.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return resp


async def actions(request: web.Request) -> web.Response:
    who = _operator(request)
    if isinstance(who, web.Response):
        return who
    raw = request.query.get("limit", "50")
    if not _LIMIT.fullmatch(raw):
        return error(400, "bad_request", "limit must be an integer")
    limit = max(1, min(1000, int(raw)))
    try:
        entries = await audit.actions(request.app[DAEMON].store, limit)
    except StateUnavailable:
        return error(503, "state_unavailable", "the state store cannot be reached")
    return json_response({"actions": [e.to_json() for e in entries]})


async def approvals(request: web.Request) -> web.Response:
    """The pending approvals: run, step, the call it would make, who may decide, expiry."""
    who = _operator(request)
    if isinstance(who, web.Response):
        return who
    daemon = request.app[DAEMON]
    try:
        pending = await audit.pending_approvals(daemon.store, who_may_decide(daemon.settings))
    except StateUnavailable:
        return error(503, "state_unavailable", "the state store cannot be reached")
    return json_response({"approvals": [a.to_json() for a in pending]})


async def _decide(request: web.Request, decision: str) -> web.Response:
    who = _operator(request)
    if isinstance(who, web.Response):
        return who
    raw = request.match_info["id"]
    if not _ID.fullmatch(raw):
        return error(400, "bad_request", "action id must be a number of at most 18 digits")
    try:
        result = await request.app[DAEMON].decide(int(raw), decision, who)
    except StateUnavailable:
        return error(503, "state_unavailable", "the state store cannot be reached")
    if result.status == "not_found":
        return error(404, "not_found", f"no approval {raw}")
    if result.status == "conflict":
        return error(409, "conflict", result.detail)
    decided = await request.app[DAEMON].store.get_approval(int(raw))
    facts = {"step": decided.step, "run_id": decided.run_id} if decided else {}
    return json_response({"id": int(raw), "state": decision, "by": who, **facts})


async def approve(request: web.Request) -> web.Response:
    return await _decide(request, "approved")


async def reject(request: web.Request) -> web.Response:
    return await _decide(request, "rejected")


async def _switch(request: web.Request, paused: bool) -> web.Response:
    who = _operator(request)
    if isinstance(who, web.Response):
        return who
    try:
        await request.app[DAEMON].set_paused(paused, who)
    except StateUnavailable:
        return error(503, "state_unavailable", "the state store cannot be reached")
    return json_response({"paused": paused, "by": who})


async def pause(request: web.Request) -> web.Response:
    return await _switch(request, True)


async def resume(request: web.Request) -> web.Response:
    return await _switch(request, False)


async def reload(request: web.Request) -> web.Response:
    who = _operator(request)
    if isinstance(who, web.Response):
        return who
    ok, detail = request.app[DAEMON].reload_rules()
    if not ok:
        return error(400, "invalid_rules", detail)
    return json_response({"status": "reloaded", "rules": detail})


_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def json_errors(request: web.Request, handler: _Handler) -> web.StreamResponse:
    """The router's 404 and 405 (an unknown path, an empty id) as JSON errors."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = (exc.reason or "error").lower().replace(" ", "_")
        resp = error(exc.status, code, exc.reason, path=request.path)
        if "Allow" in exc.headers:
            resp.headers["Allow"] = exc.headers["Allow"]
        return resp


def create_app(daemon: Daemon) -> web.Application:
    # client_max_size bounds what aiohttp itself buffers; the webhook checks its own limit.
    # auto_decompress off: the webhook undoes Content-Encoding itself (server/encoding.py),
    # so a bad or unknown encoding is a JSON 4xx and the decoded size is bounded.
    app = web.Application(
        client_max_size=daemon.settings.limits.max_body_bytes + 1,
        middlewares=[json_errors, store_down_is_503],
        handler_args={"auto_decompress": False},
    )
    app[DAEMON] = daemon
    access = OperatorAccess.from_settings(daemon.settings)
    app[OPERATOR_ACCESS] = access
    if access.closed:
        log.warning(
            "operator_routes_closed",
            listen=daemon.settings.listen,
            detail="no auth.operator_tokens and a non-loopback listen address: "
            "operator routes answer 403; set auth.operator_tokens to use them",
        )
    hook = WebhookHandler(
        daemon.settings,
        daemon.journal,
        daemon.metrics,
        known_alertnames=daemon.known_alertnames,
        routed=daemon.routed,
        on_journal_down=daemon.journal_down,
    )

    async def unsupported(request: web.Request) -> web.Response:
        resp = error(405, "method_not_allowed", "use POST")
        daemon.metrics.webhooks_received.labels(code="405").inc()
        return resp

    app.router.add_post("/api/v1/alerts", hook.handle)
    app.router.add_get("/api/v1/alerts", unsupported)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/api/v1/actions", actions)
    app.router.add_get("/api/v1/approvals", approvals)
    app.router.add_post("/api/v1/actions/{id}/approve", approve)
    app.router.add_post("/api/v1/actions/{id}/reject", reject)
    app.router.add_post("/api/v1/pause", pause)
    app.router.add_post("/api/v1/resume", resume)
    app.router.add_post("/-/reload", reload)
    slack = SlackInteractions(daemon)
    app.router.add_post("/api/v1/slack/interactions", slack.handle)

    async def close_slack(_: web.Application) -> None:
        await slack.close()

    app.on_cleanup.append(close_slack)
    return app
