"""Test-only plumbing: a running daemon on a free port, and a cuttable TCP proxy."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from remediator.daemon import Daemon
from remediator.metrics import Metrics
from remediator.paging.capture import CapturePager
from remediator.runbook_api.context import Clients
from remediator.runbook_api.registry import Registry
from remediator.server.app import create_app
from remediator.settings import from_mapping


@dataclass
class Running:
    url: str
    daemon: Daemon
    metrics: Metrics
    pager: CapturePager

    def sample(self, name: str, labels: Mapping[str, str] | None = None) -> float:
        v = self.metrics.registry.get_sample_value(name, dict(labels or {}))
        return 0.0 if v is None else v


@contextlib.asynccontextmanager
async def running_daemon(
    config: Mapping[str, Any],
    *,
    registry: Registry | None = None,
    workers: bool = True,
    clients: Clients | None = None,
    bind_listen: bool = False,
) -> AsyncIterator[Running]:
    """The daemon and its app on 127.0.0.1 and a free port; with ``bind_listen``, on
    the config's ``listen`` address instead (as ``remediator serve`` binds). The
    ``url`` connects through loopback: 127.0.0.1, or ::1 for an IPv6 bind (asyncio
    binds "::" IPv6-only)."""
    settings = from_mapping(dict(config), env={})
    metrics = Metrics()
    pager = CapturePager()
    daemon = Daemon(
        settings,
        metrics=metrics,
        registry=registry or Registry(),
        pagers={"capture": pager},
        clients=clients or Clients(settings=settings),
    )
    await daemon.start(workers=workers)
    runner = web.AppRunner(create_app(daemon), access_log=None)
    await runner.setup()
    if bind_listen:
        site = web.TCPSite(runner, settings.host, settings.port)
    else:
        site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    loopback = "[::1]" if bind_listen and ":" in settings.host else "127.0.0.1"
    try:
        yield Running(f"http://{loopback}:{port}", daemon, metrics, pager)
    finally:
        await runner.cleanup()
        await daemon.stop()


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]  # names lower-cased
    body: bytes

    def json(self) -> Any:
        assert self.headers.get("content-type", "").startswith("application/json"), self
        return json.loads(self.body)


async def raw_request(
    url: str,
    method: bytes,
    target: bytes,
    headers: Sequence[tuple[bytes, bytes]] = (),
    body: bytes = b"",
) -> RawResponse:
    """One HTTP/1.1 request written byte for byte: header values and paths that
    httpx and aiohttp's client refuse to send (any bytes) go out exactly as given."""
    host, _, port = url.removeprefix("http://").rpartition(":")
    reader, writer = await asyncio.open_connection(host.strip("[]"), int(port))
    head = [method + b" " + target + b" HTTP/1.1", b"Host: test", b"Connection: close"]
    head += [name + b": " + value for name, value in headers]
    head.append(b"Content-Length: " + str(len(body)).encode())
    writer.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
    try:
        data = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    raw_head, _, payload = data.partition(b"\r\n\r\n")
    status_line, *lines = raw_head.decode("latin-1").split("\r\n")
    fields = dict(line.split(": ", 1) for line in lines)
    return RawResponse(
        int(status_line.split()[1]), {k.lower(): v for k, v in fields.items()}, payload
    )


class TcpProxy:
    """Forwards 127.0.0.1:port to a target; ``cut()`` drops every connection and
    refuses new ones, which is what a dead database looks like to a client."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.up = True
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _pipe(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await r.read(65536):
                w.write(data)
                await w.drain()
        with contextlib.suppress(OSError, RuntimeError):
            w.close()

    async def _handle(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        if not self.up:
            w.close()
            return
        try:
            tr, tw = await asyncio.open_connection(*self.target)
        except OSError:
            w.close()
            return
        self._writers |= {w, tw}
        await asyncio.gather(self._pipe(r, tw), self._pipe(tr, w))
        self._writers -= {w, tw}

    def cut(self) -> None:
        self.up = False
        for w in list(self._writers):
            w.close()

    def restore(self) -> None:
        self.up = True

    async def stop(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
