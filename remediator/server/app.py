"""The aiohttp application: routes, probes and the operator API.

Routes (fixed by the contract):
  POST /api/v1/alerts                      Alertmanager webhook (webhook tokens)
  GET  /metrics, /healthz, /readyz         open
  GET  /api/v1/actions                     operator tokens
  POST /api/v1/actions/{id}/approve|reject operator tokens
  POST /api/v1/pause, /api/v1/resume       operator tokens
  POST /-/reload                           operator tokens (Alertmanager's convention)

The server only translates HTTP into calls on the daemon; it holds no state.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from remediator.errors import StateUnavailable
from remediator.server import auth
from remediator.server.middleware import store_down_is_503
from remediator.server.responses import error, json_response
from remediator.server.webhook import WebhookHandler

if TYPE_CHECKING:
    from remediator.daemon import Daemon

DAEMON: web.AppKey[Daemon] = web.AppKey("daemon")


def _operator(request: web.Request) -> str | web.Response:
    """The operator's token name, or an error response."""
    daemon = request.app[DAEMON]
    tokens = daemon.settings.auth.named_operator_tokens()
    if not tokens:
        # No operator tokens: the settings refuse a non-loopback bind in that case
        # unless explicitly allowed, so this is a local, single-user setup.
        return "local-operator"
    name = auth.match_token(auth.presented_secret(request), tokens)
    if name is None:
        daemon.metrics.auth_failures.labels("operator").inc()
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
    try:
        limit = max(1, min(1000, int(request.query.get("limit", "50"))))
    except ValueError:
        return error(400, "bad_request", "limit must be an integer")
    try:
        rows = await request.app[DAEMON].store.list_actions(limit)
    except StateUnavailable:
        return error(503, "state_unavailable", "the state store cannot be reached")
    return json_response({"actions": rows})


async def _decide(request: web.Request, decision: str) -> web.Response:
    who = _operator(request)
    if isinstance(who, web.Response):
        return who
    raw = request.match_info["id"]
    if not raw.isdigit() or len(raw) > 18:
        return error(400, "bad_request", "action id must be a number")
    try:
        result = await request.app[DAEMON].decide(int(raw), decision, who)
    except StateUnavailable:
        return error(503, "state_unavailable", "the state store cannot be reached")
    if result.status == "not_found":
        return error(404, "not_found", f"no approval {raw}")
    if result.status == "conflict":
        return error(409, "conflict", result.detail)
    return json_response({"id": int(raw), "state": decision, "by": who})


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


def create_app(daemon: Daemon) -> web.Application:
    # client_max_size bounds what aiohttp itself buffers; the webhook checks its own limit.
    app = web.Application(
        client_max_size=daemon.settings.limits.max_body_bytes + 1,
        middlewares=[store_down_is_503],
    )
    app[DAEMON] = daemon
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
    app.router.add_post("/api/v1/actions/{id}/approve", approve)
    app.router.add_post("/api/v1/actions/{id}/reject", reject)
    app.router.add_post("/api/v1/pause", pause)
    app.router.add_post("/api/v1/resume", resume)
    app.router.add_post("/-/reload", reload)
    return app
