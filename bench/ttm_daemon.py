"""The daemon in-process, with the BENCH-TTM runbook registered, as its own process.

``remediator serve`` only loads runbooks from entry points; the bench runbook is not
one, so this module does what ``cli._serve`` does (same Daemon, same aiohttp app,
same uvloop, JSON logs to the output file) with a Registry that holds the DawsOS
runbooks plus BENCH-TTM, and a capture pager instead of a real one.

    python -m bench.ttm_daemon --port N --state URL --target DSN --rules FILE [--prometheus URL]
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from aiohttp import web

from bench import runbook
from remediator import logs
from remediator.daemon import Daemon, freeze_startup_heap
from remediator.engine.registry import load_entry_points
from remediator.paging.capture import CapturePager
from remediator.server.app import create_app
from remediator.settings import from_mapping


async def serve(args: argparse.Namespace) -> None:
    settings = from_mapping(
        {
            "listen": f"127.0.0.1:{args.port}",
            "mode": "live",
            "rules": args.rules,
            "state": args.state,
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
    daemon = Daemon(settings, registry=registry, pagers={"capture": CapturePager()})
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
