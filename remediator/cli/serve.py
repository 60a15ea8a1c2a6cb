"""`remediator serve`: the daemon and its HTTP server, until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time

from remediator import __version__, logs
from remediator import settings as settings_mod
from remediator.cli.common import load_settings

log = logs.get("remediator.cli")


def _rules_valid_at_start(settings: settings_mod.Settings) -> bool:
    """Invalid rules at start are fatal: a daemon with none would answer 202 and do
    nothing. (A reload with invalid rules keeps the old ones: see Daemon.reload_rules.)"""
    from remediator.engine import rules
    from remediator.runbooks.yaml_runbooks import registry_for

    registry, errors = registry_for(settings.runbooks)
    if not errors:
        _ruleset, errors = rules.load(settings.rules, registry)
    for e in errors:
        print(e, file=sys.stderr)
    if errors:
        print(f"serve: {len(errors)} error(s) in the rules; not starting", file=sys.stderr)
    return not errors


async def serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from remediator.daemon import Daemon, freeze_startup_heap
    from remediator.server.app import create_app

    settings = load_settings(args)
    if not _rules_valid_at_start(settings):
        return 2
    if not settings.auth.webhook_tokens:
        log.warning(
            "no_webhook_tokens",
            detail="webhook accepts unauthenticated requests",
            listen=settings.listen,
        )
    daemon = Daemon(settings)
    await daemon.start()
    # keepalive_timeout also bounds how long a new connection may take to send its
    # first request's headers (aiohttp has no separate header timeout), so a slow
    # client cannot hold a connection open; lingering_time bounds reading the rest of
    # a body after an early answer. The webhook bounds its own body read.
    read_timeout = settings.limits.read_timeout
    runner = web.AppRunner(
        create_app(daemon),
        handle_signals=False,
        access_log=None,
        shutdown_timeout=10,
        keepalive_timeout=read_timeout,
        lingering_time=read_timeout,
    )
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port, reuse_address=True)
    await site.start()
    frozen = freeze_startup_heap()
    from remediator.doctor import startup as doctor_startup

    # After the freeze: the preflight's short-lived clients must stay collectable.
    preflight = doctor_startup.spawn(settings, daemon.registry)  # logs; never blocks start
    log.info(
        "serving",
        listen=settings.listen,
        mode=settings.mode,
        state=settings.state.get_secret_value().split("://")[0],
        version=__version__,
        rules=len(daemon.ruleset or ()),
        owner=daemon.owner,
        gc_frozen_objects=frozen,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, daemon.reload_rules)
    await stop.wait()
    log.info("stopping", detail="no new connections; finishing in-flight requests")
    # Stop accepting, let in-flight webhooks finish (they are journaled or 503),
    # then drain the journal and stop the loops; unfinished runs keep their lease
    # and are resumed by this or another replica.
    preflight.cancel()
    began = time.monotonic()
    await runner.cleanup()
    http_closed = time.monotonic()
    await daemon.stop()
    log.info(
        "stopped",
        http_seconds=round(http_closed - began, 2),
        daemon_seconds=round(time.monotonic() - http_closed, 2),
    )
    return 0
