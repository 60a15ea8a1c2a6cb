"""Fixtures for verification: a real Prometheus scraping a tiny exporter the test drives.

    exporter (aiohttp, loopback)   /metrics with one gauge, verify_probe, set by the test
    Prometheus 2.42 (Debian)       scrapes the exporter every second
    target database                the engine tests' knobs table, in a fresh PG schema

A missing binary or service fails under REMEDIATOR_REQUIRE_SERVICES=1 and skips
otherwise (tests/conftest.py's service_missing). Every process is stopped by its
fixture's finalizer.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
import yaml
from aiohttp import web
from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from remediator.clients.database import TargetDatabase
from tests.e2e.e2e_support import Service, environ, wait_http_ok
from tests.engine import _testbook
from tests.support import root_conftest


@dataclass
class Exporter:
    """The metric a mitigation is verified against; the test sets its value."""

    gauge: Gauge
    address: str  # host:port Prometheus scrapes

    def set(self, value: float) -> None:
        self.gauge.set(value)


@pytest.fixture
async def exporter(unused_port: int) -> AsyncIterator[Exporter]:
    registry = CollectorRegistry()
    gauge = Gauge("verify_probe", "A value the test controls", registry=registry)

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", unused_port)
    await site.start()
    try:
        yield Exporter(gauge, f"127.0.0.1:{unused_port}")
    finally:
        await runner.cleanup()


@dataclass
class PrometheusServer:
    url: str
    service: Service


@contextlib.asynccontextmanager
async def running_prometheus(
    request: pytest.FixtureRequest,
    home: Path,
    target: str,
    rule_files: Sequence[Path] = (),
) -> AsyncIterator[PrometheusServer]:
    """Debian's Prometheus, scraping ``target`` and evaluating ``rule_files`` every second."""
    shared = root_conftest(request.config)
    binary = shutil.which("prometheus")
    if binary is None:
        shared.service_missing("prometheus", FileNotFoundError("prometheus is not on PATH"))
        raise AssertionError("unreachable: service_missing fails or skips")
    port = shared.free_port()
    home.mkdir()
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(f) for f in rule_files],
        "scrape_configs": [{"job_name": "probe", "static_configs": [{"targets": [target]}]}],
    }
    (home / "prometheus.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
    service = Service(
        "prometheus",
        [
            binary,
            f"--config.file={home / 'prometheus.yml'}",
            f"--storage.tsdb.path={home / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        cwd=home,
        env=environ(),
    )
    service.start()
    try:
        url = f"http://127.0.0.1:{port}"
        await wait_http_ok(url + "/-/ready", service)
        yield PrometheusServer(url, service)
    finally:
        service.stop()


@pytest.fixture
async def prometheus(
    request: pytest.FixtureRequest, tmp_path: Path, exporter: Exporter
) -> AsyncIterator[PrometheusServer]:
    """Debian's Prometheus, scraping the exporter every second."""
    async with running_prometheus(request, tmp_path / "prometheus", exporter.address) as server:
        yield server


@pytest.fixture
async def target_db(pg_schema_dsn: str) -> AsyncIterator[TargetDatabase]:
    """A real Postgres target with the test runbook's knobs table."""
    conn = await asyncpg.connect(pg_schema_dsn)
    await conn.execute(_testbook.SCHEMA)
    await conn.close()
    db = await TargetDatabase.connect(pg_schema_dsn)
    yield db
    await db.aclose()
