"""The ceiling: a bare aiohttp handler that reads the body, parses the JSON, answers 202.

Run as its own process (``python -m bench.ceiling --port N``) on the same event loop
the daemon uses (uvloop when installed), so (daemon rps) / (ceiling rps) measures
what the daemon adds: validation, journaling, metrics, logging. It must never do
more than parse: it is the upper bound, not a competitor.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal

from aiohttp import web


async def alerts(request: web.Request) -> web.Response:
    payload = json.loads(await request.read())
    return web.json_response(
        {"status": "accepted", "journaled": len(payload["alerts"]), "duplicates": 0}, status=202
    )


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def serve(port: int) -> None:
    app = web.Application(client_max_size=1_048_577)
    app.router.add_post("/api/v1/alerts", alerts)
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, reuse_address=True).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    await stop.wait()
    await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(args.port))
    else:
        uvloop.run(serve(args.port))


if __name__ == "__main__":
    main()
