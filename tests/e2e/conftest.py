"""Fixtures for the end-to-end test: the whole stack on loopback, torn down even on failure.

    capture server (aiohttp)   PagerDuty, Slack, provider status pages, DawsOS /execute
    FakeKubeAPI (thread)       the cluster, reached through a kubeconfig
    DawsOS database            a fresh seeded database (testing_dawsos)
    test Redis                 the DawsOS cache (one key RB-02 checks)
    remediator serve           a real subprocess, live mode, Postgres state (fresh schema)
    Alertmanager 0.25          the shipped config, pointed at the daemon
    Prometheus 2.42            the shipped config, scraping the daemon every second

A missing binary or service fails the test under REMEDIATOR_REQUIRE_SERVICES=1 and
skips it otherwise (tests/conftest.py's service_missing). Every process is stopped by
its fixture's finalizer; none outlives the test.
"""

from __future__ import annotations

import secrets
import shutil
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import asyncpg
import pytest
import redis.asyncio as aioredis
import yaml

from remediator.errors import TargetTimeout, TargetUnavailable
from remediator.state.store import StateStore
from tests.e2e.e2e_support import (
    DEPLOY,
    NS,
    RULES_DIR,
    AlertmanagerHandle,
    CaptureServer,
    DaemonHandle,
    PrometheusHandle,
    Service,
    alertmanager_config,
    environ,
    prometheus_config,
    wait_http_ok,
)
from tests.fixtures import dawsos as testing_dawsos
from tests.fixtures.kube_api import FakeKubeAPI
from tests.support import root_conftest

CACHE_KEY = "fundamentals:AAPL"  # the cache_keys of the shipped RB-02 rules


def _shared(request: pytest.FixtureRequest) -> ModuleType:
    return root_conftest(request.config)


def _binary(request: pytest.FixtureRequest, name: str) -> str:
    path = shutil.which(name)
    if path is None:
        _shared(request).service_missing(name, FileNotFoundError(f"{name} is not on PATH"))
        raise AssertionError("unreachable: service_missing fails or skips")
    return path


@dataclass
class Binaries:
    prometheus: str
    alertmanager: str


@pytest.fixture
def binaries(request: pytest.FixtureRequest) -> Binaries:
    # Checked first, so a machine without them fails (or skips) before any set-up.
    return Binaries(
        prometheus=_binary(request, "prometheus"),
        alertmanager=_binary(request, "prometheus-alertmanager"),
    )


@pytest.fixture
async def capture() -> AsyncIterator[CaptureServer]:
    server = CaptureServer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
def fake_kube() -> Iterator[FakeKubeAPI]:
    """The cluster: a scheduler Deployment and pod whose log shows tonight's failed build."""
    fake = FakeKubeAPI()
    fake.start()
    try:
        today = testing_dawsos.pack_today().isoformat()
        fake.add_deployment(NS, "scheduler", replicas=2, image="dawsos/scheduler:stable")
        fake.add_deployment(NS, "worker", replicas=2, image="dawsos/worker:stable")
        fake.add_pod(
            NS,
            "scheduler-7d9f8-x2k4q",
            {"app": "scheduler"},
            log_text=(
                f"00:05:00 INFO build_pack started date={today}\n"
                "00:05:01 INFO health check ok\n"
                f"00:12:43 ERROR build_pack polygon timed out fetching prices date={today}\n"
            ),
        )
        yield fake
    finally:
        fake.stop()


@pytest.fixture
async def dawsos_dsn(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    shared = _shared(request)
    try:
        dsn = await testing_dawsos.create_dawsos_database(shared.PG_DSN)
    except (TargetUnavailable, TargetTimeout, OSError) as exc:
        shared.service_missing("PostgreSQL", exc)
        raise
    try:
        yield dsn
    finally:
        await testing_dawsos.drop_database(shared.PG_DSN, dsn)


@pytest.fixture
async def dawsos_conn(dawsos_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(dawsos_dsn, timeout=10)
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
async def cache_url(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """The test Redis, as a DawsOS cache that has lost its last-good data.

    RB-02's cache check must fail (it is the failed run that opens RB-02's circuit),
    so the key the shipped rules check is absent. No test writes it unprefixed.
    """
    shared = _shared(request)
    client = aioredis.from_url(shared.REDIS_URL)
    try:
        present = await client.exists(CACHE_KEY)
    except (OSError, aioredis.RedisError) as exc:
        shared.service_missing("Redis", exc)
        raise
    finally:
        await client.aclose()
    assert not present, f"{CACHE_KEY} exists in {shared.REDIS_URL}; the scenario needs it absent"
    yield str(shared.REDIS_URL)


@pytest.fixture
def prometheus_port(request: pytest.FixtureRequest) -> int:
    """Known before either starts: the daemon verifies against this Prometheus, which
    scrapes the daemon."""
    port: int = _shared(request).free_port()
    return port


@pytest.fixture
async def daemon(
    request: pytest.FixtureRequest,
    binaries: Binaries,
    prometheus_port: int,
    tmp_path: Path,
    pg_schema_dsn: str,
    dawsos_dsn: str,
    cache_url: str,
    capture: CaptureServer,
    fake_kube: FakeKubeAPI,
) -> AsyncIterator[DaemonHandle]:
    """`remediator serve` in live mode with the shipped rules, as a real subprocess."""
    shared = _shared(request)
    port = shared.free_port()
    rules = tmp_path / "rules"
    shutil.copytree(RULES_DIR, rules)
    kubeconfig = fake_kube.write_kubeconfig(tmp_path / "kubeconfig", namespace=NS)
    webhook_token, operator_token = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    config = {
        "listen": f"127.0.0.1:{port}",
        "mode": "live",
        "rules": str(rules),
        "state": pg_schema_dsn,
        "auth": {
            "webhook_tokens": ["${E2E_WEBHOOK_TOKEN}"],
            "operator_tokens": {"e2e": "${E2E_OPERATOR_TOKEN}"},
        },
        "targets": {
            "database": dawsos_dsn,
            "redis": cache_url,
            "kubernetes": {"mode": "kubeconfig", "namespace": NS, "kubeconfig": str(kubeconfig)},
            "http": {
                "app_url": f"{capture.url}/app",
                "providers": {p: f"{capture.url}/status/{p}" for p in ("polygon", "fmp", "fred")},
            },
            # The shipped rules verify their mitigations. The alerts here are posted to
            # Alertmanager, not evaluated by Prometheus: no corroboration. No DawsOS
            # metric is scraped, so every verification is still pending at the end.
            "prometheus": {"url": f"http://127.0.0.1:{prometheus_port}", "corroborate": False},
        },
        "pagers": {
            "pagerduty": {
                "routing_key": "e2e-routing-key",
                "url": f"{capture.url}/pagerduty/v2/enqueue",
            },
            "slack": {"webhook_url": f"{capture.url}/slack/services/T0E2E/B0E2E/e2e-slack-token"},
        },
        # One failed run opens a runbook's circuit (default 3), so that the night's one
        # failure (RB-02's cache check) shows on the circuit panels.
        "engine": {"circuit_failures": 1},
        "links": {
            "grafana": "http://127.0.0.1:3000/d/remediator",
            "runbooks": "http://127.0.0.1:8000/dawsos-operational-runbooks",
        },
    }
    config_path = tmp_path / "remediator.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    service = Service(
        "remediator",
        [sys.executable, "-m", "remediator", "serve", "--config", str(config_path)],
        cwd=tmp_path,
        env=environ(E2E_WEBHOOK_TOKEN=webhook_token, E2E_OPERATOR_TOKEN=operator_token),
    )
    service.start()
    try:
        url = f"http://127.0.0.1:{port}"
        await wait_http_ok(url + "/readyz", service)
        yield DaemonHandle(
            url, f"127.0.0.1:{port}", service, webhook_token, operator_token, pg_schema_dsn
        )
    finally:
        code = service.stop()
        # SIGTERM is a clean shutdown (exit 0); anything else is a finding.
        assert code in (0, None), f"remediator exited {code}:\n{service.tail()}"


@pytest.fixture
async def state_store(daemon: DaemonHandle) -> AsyncIterator[StateStore]:
    """The daemon's state store, read by the test only to wait for a run to finish."""
    store = await StateStore.open(daemon.state)
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
async def alertmanager(
    request: pytest.FixtureRequest,
    binaries: Binaries,
    tmp_path: Path,
    daemon: DaemonHandle,
    capture: CaptureServer,
) -> AsyncIterator[AlertmanagerHandle]:
    """Alertmanager 0.25, gossip off, with the shipped config routed to the daemon."""
    shared = _shared(request)
    port = shared.free_port()
    home = tmp_path / "alertmanager"
    home.mkdir()
    token_file = home / "webhook-token"
    token_file.write_text(daemon.webhook_token, encoding="utf-8")
    oncall_key = home / "routing-key"
    oncall_key.write_text("e2e-oncall-key", encoding="utf-8")
    config = alertmanager_config(
        webhook_url=f"{daemon.url}/api/v1/alerts",
        token_file=token_file,
        oncall_url=f"{capture.url}/oncall/v2/enqueue",
        oncall_key_file=oncall_key,
    )
    config_path = home / "alertmanager.yml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    service = Service(
        "alertmanager",
        [
            binaries.alertmanager,
            f"--config.file={config_path}",
            f"--storage.path={home / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        cwd=home,
        env=environ(),
    )
    service.start()
    try:
        url = f"http://127.0.0.1:{port}"
        await wait_http_ok(url + "/-/ready", service)
        yield AlertmanagerHandle(url, service)
    finally:
        service.stop()


@pytest.fixture
async def prometheus(
    request: pytest.FixtureRequest,
    binaries: Binaries,
    tmp_path: Path,
    daemon: DaemonHandle,
    alertmanager: AlertmanagerHandle,
    prometheus_port: int,
) -> AsyncIterator[PrometheusHandle]:
    """Prometheus 2.42 with the shipped config and alert rules, scraping the daemon."""
    port = prometheus_port
    home = tmp_path / "prometheus"
    home.mkdir()
    rule_files = []
    for src in sorted((DEPLOY / "prometheus").glob("*-alerts.yml")):
        rule_files.append(Path(shutil.copy(src, home / src.name)))
    config = prometheus_config(
        daemon=daemon.listen,
        alertmanager=alertmanager.url.removeprefix("http://"),
        rule_files=rule_files,
    )
    config_path = home / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    service = Service(
        "prometheus",
        [
            binaries.prometheus,
            f"--config.file={config_path}",
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
        yield PrometheusHandle(url, service)
    finally:
        service.stop()
