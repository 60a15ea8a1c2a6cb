"""Real parts for the fault-injection and hostile-input tests (test_faults, test_hostile).

    daemon_with(config, pagers=..., clients=...)   the daemon in-process, on a free port,
                                                   with the pagers the test chooses (a real
                                                   PagerDutyPager pointed at a local fake)
    ServeProcess(tmp, config)                      ``python -m remediator serve`` as a child
                                                   process; its stdout and stderr kept apart
    PagerDutyFake()                                a local Events v2 endpoint answering from
                                                   a script: 429 (with or without
                                                   Retry-After), 500, a hang, 202
    ThrottlingProxy(moto_url)                      moto in server mode behind a proxy that
                                                   throttles the first N matching AWS calls
    eventually(check, what)                        poll until true, bounded
    soak(timeout)                                  marks of a long variant (REMEDIATOR_SOAK=1)

Nothing here listens on or talks to anything but 127.0.0.1; every server and process
started here is stopped by its owner (a child process only by its own pid).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import yaml
from aiohttp import ClientSession, ClientTimeout, web

from remediator.daemon import Daemon
from remediator.metrics import Metrics
from remediator.paging.base import Pager
from remediator.runbook_api.context import Clients
from remediator.runbook_api.registry import Registry
from remediator.server.app import create_app
from remediator.settings import from_mapping

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")
SOAK = os.environ.get("REMEDIATOR_SOAK") == "1"


def soak(timeout: float) -> list[Any]:
    """Marks for a long variant: ``soak``, its own timeout, and skipped unless
    REMEDIATOR_SOAK=1 (the default run has the short variant of the same scenario)."""
    return [
        pytest.mark.soak,
        pytest.mark.timeout(timeout),
        pytest.mark.skipif(not SOAK, reason="soak variant: set REMEDIATOR_SOAK=1"),
    ]


async def eventually(
    check: Callable[[], Awaitable[T]],
    what: str,
    *,
    timeout: float = 30.0,
    interval: float = 0.05,
    diagnostics: Callable[[], Any] = lambda: "",
) -> T:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}: {diagnostics()}")
        await asyncio.sleep(interval)


# ----------------------------------------------------------------- in-process daemon


@dataclass
class Live:
    url: str
    daemon: Daemon
    metrics: Metrics

    def sample(self, name: str, labels: Mapping[str, str] | None = None) -> float:
        v = self.metrics.registry.get_sample_value(name, dict(labels or {}))
        return 0.0 if v is None else v


@contextlib.asynccontextmanager
async def daemon_with(
    config: Mapping[str, Any],
    *,
    pagers: Mapping[str, Pager],
    registry: Registry | None = None,
    clients: Clients | None = None,
    workers: bool = True,
) -> AsyncIterator[Live]:
    """tests/helpers.py's running_daemon, but with the pagers the test chooses."""
    settings = from_mapping(dict(config), env={})
    metrics = Metrics()
    daemon = Daemon(
        settings,
        metrics=metrics,
        registry=registry if registry is not None else Registry(),
        pagers=dict(pagers),
        clients=clients or Clients(settings=settings),
    )
    await daemon.start(workers=workers)
    runner = web.AppRunner(create_app(daemon), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield Live(f"http://127.0.0.1:{port}", daemon, metrics)
    finally:
        await runner.cleanup()
        await daemon.stop()


# ------------------------------------------------------------------ child process


class ServeProcess:
    """``remediator serve --config FILE`` as a child; stdout and stderr in two files."""

    def __init__(
        self, workdir: Path, config: Mapping[str, Any], env: Mapping[str, str] | None = None
    ) -> None:
        self.workdir = workdir
        self.config_path = workdir / "remediator.yaml"
        self.config_path.write_text(yaml.safe_dump(dict(config), sort_keys=False))
        listen = str(config["listen"])
        self.url = f"http://{listen}"
        self.stdout_path = workdir / "stdout.log"
        self.stderr_path = workdir / "stderr.log"
        self.extra_env = dict(env or {})
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    async def start(self, timeout: float = 30.0) -> None:
        env = {k: v for k, v in os.environ.items() if k != "REMEDIATOR_CONFIG"}
        env.update(self.extra_env, PYTHONPATH=str(ROOT))
        with self.stdout_path.open("ab") as out, self.stderr_path.open("ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "remediator", "serve", "--config", str(self.config_path)],
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=env,
            )
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=2.0) as c:
            while True:
                if not self.alive:
                    raise AssertionError(f"remediator exited at start:\n{self.output()[-3000:]}")
                with contextlib.suppress(httpx.TransportError):
                    if (await c.get(self.url + "/readyz")).status_code == 200:
                        return
                if time.monotonic() > deadline:
                    raise AssertionError(f"not ready after {timeout} s:\n{self.output()[-3000:]}")
                await asyncio.sleep(0.05)

    def stop(self, grace: float = 15.0) -> int | None:
        """SIGTERM, then SIGKILL after ``grace`` s; returns the exit code."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        return proc.returncode

    def output(self) -> str:
        """Everything the process wrote, stdout then stderr."""
        parts = []
        for path in (self.stdout_path, self.stderr_path):
            with contextlib.suppress(FileNotFoundError):
                parts.append(path.read_text(encoding="utf-8", errors="replace"))
        return "\n".join(parts)

    def events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.output().splitlines():
            with contextlib.suppress(ValueError):
                ev = json.loads(line)
                if isinstance(ev, dict):
                    out.append(ev)
        return out


# --------------------------------------------------------------- PagerDuty fake


@dataclass
class Hit:
    body: dict[str, Any]
    answered: int  # the status the fake answered (0: it hung and the client gave up)
    at: float = field(default_factory=time.time)


class PagerDutyFake:
    """POST /v2/enqueue answering from ``script`` (then 202 forever).

    Script items: ``"429"``, ``"429:N"`` (Retry-After: N), ``"500"``, ``"400:echo"`` (an
    error quoting the request back, routing key included), ``"hang"`` (no answer until
    the client gives up; then it is not an accepted event) or ``"202"``.
    Only requests answered 2xx count as events PagerDuty accepted.
    """

    def __init__(self, script: list[str] | None = None) -> None:
        self.script = list(script or [])
        self.hits: list[Hit] = []
        self._runner: web.AppRunner | None = None
        self._release = asyncio.Event()
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v2/enqueue"

    def accepted(self) -> list[dict[str, Any]]:
        return [h.body for h in self.hits if 200 <= h.answered < 300]

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v2/enqueue", self._enqueue)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _enqueue(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        step = self.script.pop(0) if self.script else "202"
        if step == "hang":
            hit = Hit(body, 0)
            self.hits.append(hit)
            # Held until the test ends; the client's own timeout fires first.
            await self._release.wait()
            return web.Response(status=504)
        code, _, after = step.partition(":")
        status = int(code)
        self.hits.append(Hit(body, status))
        if after == "echo":  # like a peer that quotes the request back in its error
            return web.json_response(
                {"status": "invalid event", "errors": [f"cannot process {json.dumps(body)}"]},
                status=status,
            )
        headers = {"Retry-After": after} if after else {}
        if 200 <= status < 300:
            return web.json_response(
                {
                    "status": "success",
                    "message": "Event processed",
                    "dedup_key": body.get("dedup_key"),
                },
                status=status,
            )
        return web.json_response(
            {"status": "throttled" if status == 429 else "error", "message": "scripted"},
            status=status,
            headers=headers,
        )


# ---------------------------------------------------------- AWS throttling proxy


class ThrottlingProxy:
    """Forwards every request to moto, except that the first ``throttle`` requests whose
    ``X-Amz-Target`` header contains ``match`` are answered the way AWS throttles a JSON
    API (400 ``ThrottlingException``). Counts the matching requests it saw."""

    def __init__(self, upstream: str, *, match: str, throttle: int) -> None:
        self.upstream = upstream.rstrip("/")
        self.match = match
        self.throttle = throttle
        self.matching: list[str] = []  # X-Amz-Target of each matching request
        self.throttled = 0
        self._runner: web.AppRunner | None = None
        self._session: ClientSession | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._session = ClientSession(timeout=ClientTimeout(total=30), auto_decompress=False)
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        target = request.headers.get("X-Amz-Target", "")
        body = await request.read()
        if self.match in target:
            self.matching.append(target)
            if self.throttled < self.throttle:
                self.throttled += 1
                return web.Response(
                    status=400,
                    body=json.dumps(
                        {"__type": "ThrottlingException", "Message": "Rate exceeded"}
                    ).encode(),
                    content_type="application/x-amz-json-1.1",
                )
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
        async with self._session.request(
            request.method, self.upstream + request.path_qs, data=body, headers=headers
        ) as upstream:
            payload = await upstream.read()
            out = web.Response(status=upstream.status, body=payload)
            for k, v in upstream.headers.items():
                if k.lower() not in (
                    "content-length",
                    "transfer-encoding",
                    "connection",
                    "date",
                    "server",
                ):
                    out.headers[k] = v
            return out
