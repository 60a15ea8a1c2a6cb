"""The daemon in-process, with the bench runbooks registered, as its own process.

``remediator serve`` only loads runbooks from entry points; the bench runbooks are
not, so this module does what ``cli.serve.serve`` does (same Daemon, same aiohttp app,
same uvloop, JSON logs to the output file) with a Registry that holds the DawsOS
runbooks plus the bench ones (bench/runbook.py), and capture pagers instead of real
ones: one that takes every severity (scenarios 2 and 5), or with ``--split-pagers``
(scenario 6) two, routed as a real deployment routes PagerDuty and Slack: ``oncall``
takes P0 and P1, ``chat`` P2 and P3, each with its own page budget.

    python -m bench.ttm_daemon --port N --state URL --target DSN --rules FILE
        [--prometheus URL] [--workers N] [--split-pagers]
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from aiohttp import web

from bench import runbook
from remediator import logs
from remediator.daemon import Daemon, freeze_startup_heap
from remediator.paging.base import Pager
from remediator.paging.capture import CapturePager
from remediator.runbook_api.registry import load_entry_points
from remediator.server.app import create_app
from remediator.settings import from_mapping


async def serve(args: argparse.Namespace) -> None:
    settings = from_mapping(
        {
            "listen": f"127.0.0.1:{args.port}",
            "mode": "live",
            "rules": args.rules,
            "state": args.state,
            **({"limits": {"workers": args.workers}} if args.workers else {}),
            "targets": {
                "database": args.target,
                # Corroboration: each mitigation first asks Prometheus whether it fires.
                **({"prometheus": {"url": args.prometheus}} if args.prometheus else {}),
            },
        },
        source="bench",
        env={},
    )
    registry = load_entry_points()
    runbook.register(registry)
    pagers: dict[str, Pager] = (
        {
            "oncall": CapturePager("oncall", severities=("P0", "P1")),
            "chat": CapturePager("chat", severities=("P2", "P3")),
        }
        if args.split_pagers
        else {"capture": CapturePager()}
    )
    daemon = Daemon(settings, registry=registry, pagers=pagers)
    await daemon.start()
    app_runner = web.AppRunner(create_app(daemon), handle_signals=False, access_log=None)
    await app_runner.setup()
    await web.TCPSite(app_runner, "127.0.0.1", args.port, reuse_address=True).start()
    freeze_startup_heap()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    await stop.wait()
    await app_runner.cleanup()
    await daemon.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--state", required=True)
    parser.add_argument("--target", required=True)
    parser.add_argument("--rules", required=True)
    parser.add_argument("--prometheus", help="targets.prometheus.url (corroboration on)")
    parser.add_argument("--workers", type=int, help="limits.workers (default: the daemon's)")
    parser.add_argument(
        "--split-pagers",
        action="store_true",
        help="pager oncall (P0, P1) and pager chat (P2, P3) instead of one for all",
    )
    args = parser.parse_args()
    logs.configure(json=True)
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(args))
    else:
        uvloop.run(serve(args))


if __name__ == "__main__":
    main()
