"""Real parts for the RB-01..RB-03 tests: a fresh DawsOS database, FakeKubeAPI with the
official client, respx for the providers and the app, real Redis, and helpers to read
what happened (whole-database snapshots, page text).

Test modules wrap these context managers in their own fixtures (there is no
conftest.py here: the lead owns it).
"""

from __future__ import annotations

import asyncio
import copy
import socket
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from datetime import date
from typing import Any

import kubernetes.client as k8s
import pytest
import respx
import yaml

from remediator.clients.cache import Cache
from remediator.clients.database import TargetDatabase
from remediator.clients.http import HttpChecks
from remediator.clients.kubernetes import KubernetesClient
from remediator.errors import TargetTimeout, TargetUnavailable
from remediator.paging import text
from remediator.paging.base import PageEvent
from remediator.runbook_api.context import Clients
from remediator.runbook_api.registry import Registry
from remediator.runbooks import rb01_pricing_pack, rb02_provider_outage, rb03_alert_storm
from remediator.settings import Settings, from_mapping
from remediator.testing import Harness
from tests.fixtures import dawsos as testing_dawsos
from tests.support import redis_with_prefix as redis_keys  # noqa: F401 - re-exported
from tests.support import root_conftest as shared

NS = "prod"
BASE = "http://127.0.0.1:9"  # respx answers; nothing listens there, nothing leaves the host
PROVIDER_URLS = {
    "polygon": f"{BASE}/polygon/v1/status",
    "fmp": f"{BASE}/fmp/api/v3/quote/AAPL",
    "fred": f"{BASE}/fred/series/observations",
}
APP_URL = f"{BASE}/app"
GATE_URL = f"{APP_URL}/execute"
TABLES = testing_dawsos.TABLES

Snapshot = dict[str, list[dict[str, Any]]]


def registry() -> Registry:
    r = Registry()
    for module in (rb01_pricing_pack, rb02_provider_outage, rb03_alert_storm):
        r.register(module.RUNBOOK)
    return r


def rules_yaml(
    runbook: str,
    alertnames: Iterable[str],
    params: Mapping[str, Any] | None = None,
) -> str:
    """One rule per alert name, no cooldown or rate limit (tests deliver repeatedly)."""
    rules = [
        {
            "name": f"{name.lower()}-rule",
            "matchers": [f'alertname="{name}"'],
            "runbook": runbook,
            "params": dict(params or {}),
        }
        for name in alertnames
    ]
    return yaml.safe_dump({"rules": rules})


def settings() -> Settings:
    return from_mapping(
        {
            "targets": {
                "http": {"providers": PROVIDER_URLS, "app_url": APP_URL},
                "kubernetes": {"mode": "off", "namespace": NS},
            }
        },
        env={},
    )


def free_port() -> int:
    """A loopback port nothing listens on (for "service down" tests)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def today() -> date:
    """Today's pack date: in the DawsOS SLO's zone, as the seed and RB-01 count days."""
    return testing_dawsos.pack_today()


# A workload as a real cluster has it: the Job must carry all of this, as `kubectl exec
# deployment/<name>` would run with it.
def workload_pod_spec(name: str) -> dict[str, Any]:
    return {
        "serviceAccountName": f"{name}-sa",
        "nodeSelector": {"pool": "batch"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "dawsos"}],
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}
                    ]
                }
            }
        },
        "imagePullSecrets": [{"name": "registry"}],
        "volumes": [{"name": "certs", "secret": {"secretName": "db-certs"}}],
        "containers": [
            {
                "name": name,
                "image": f"dawsos/{name}:2026.11",
                "command": ["python", "-m", f"{name}.main"],
                "args": ["--serve"],
                "env": [
                    {"name": "TZ", "value": "America/New_York"},
                    {
                        "name": "DATABASE_URL",
                        "valueFrom": {"secretKeyRef": {"name": "dawsos-db", "key": "url"}},
                    },
                ],
                "envFrom": [{"secretRef": {"name": "provider-keys"}}],
                "volumeMounts": [{"name": "certs", "mountPath": "/etc/certs"}],
                "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080}},
            },
            {"name": "metrics-sidecar", "image": "prom/statsd-exporter:v0.26"},
        ],
    }


def add_workload(fake: Any, name: str) -> None:
    fake.add_deployment(
        NS,
        name,
        replicas=1,
        pod_spec=workload_pod_spec(name),
        annotations={"kubectl.kubernetes.io/restartedAt": "2026-11-01T00:00:00Z"},
    )


def assert_job_runs_in_workload(job: Mapping[str, Any], workload: str, argv: list[str]) -> None:
    """The Job's pod is the workload's pod template with the runbook's command."""
    want = workload_pod_spec(workload)
    pod = job["spec"]["template"]["spec"]
    [container] = pod["containers"]  # the sidecar would keep the Job from completing
    assert container["command"] == argv and "args" not in container
    assert container["image"] == f"dawsos/{workload}:2026.11"
    assert container["env"] == want["containers"][0]["env"]
    assert container["envFrom"] == [{"secretRef": {"name": "provider-keys"}}]
    assert container["volumeMounts"] == [{"name": "certs", "mountPath": "/etc/certs"}]
    assert "livenessProbe" not in container
    assert pod["restartPolicy"] == "Never"
    for key in ("serviceAccountName", "volumes", "nodeSelector", "tolerations", "affinity"):
        assert pod[key] == want[key], key
    assert pod["imagePullSecrets"] == [{"name": "registry"}]
    labels = job["spec"]["template"]["metadata"]["labels"]
    assert labels == job["metadata"]["labels"] and "app" not in labels
    assert "annotations" not in job["spec"]["template"]["metadata"]


# ------------------------------------------------------------------ real parts


# RB-01..RB-03 must do their job on both: the project's fixture, and a database with
# only the columns the runbooks' SQL names.
SCHEMAS = ("full", "minimal")
_schema_of: dict[str, testing_dawsos.Schema] = {}


def pack_row(schema: str, **values: Any) -> dict[str, Any]:
    """A pricing_pack update, without the columns ``schema`` lacks (status, hash)."""
    have = testing_dawsos.MINIMAL_COLUMNS["pricing_pack"] if schema == "minimal" else None
    return {k: v for k, v in values.items() if have is None or k in have}


@asynccontextmanager
async def dawsos_db(
    config: pytest.Config, schema: testing_dawsos.Schema = "full"
) -> AsyncIterator[tuple[str, TargetDatabase]]:
    """A fresh seeded DawsOS database (dsn, client); dropped afterwards."""
    conf = shared(config)
    try:
        dsn = await testing_dawsos.create_dawsos_database(conf.PG_DSN, schema=schema)
        _schema_of[dsn] = schema
    except (TargetUnavailable, TargetTimeout, OSError) as exc:
        conf.service_missing("PostgreSQL", exc)
        raise
    db = await TargetDatabase.connect(dsn)
    try:
        yield dsn, db
    finally:
        await db.aclose()
        await testing_dawsos.drop_database(conf.PG_DSN, dsn)


@asynccontextmanager
async def kube_client(url: str) -> AsyncIterator[KubernetesClient]:
    cfg = k8s.Configuration()
    cfg.host = url
    cfg.retries = False
    client = KubernetesClient(k8s.ApiClient(cfg), NS, request_timeout=5.0)
    try:
        yield client
    finally:
        await client.aclose()


@asynccontextmanager
async def http_checks() -> AsyncIterator[tuple[HttpChecks, respx.MockRouter]]:
    """HttpChecks on the configured URLs, every request answered by respx."""
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as router:
        http = HttpChecks(PROVIDER_URLS, APP_URL, timeout=2.0)
        try:
            yield http, router
        finally:
            await http.aclose()


def providers_answer(router: respx.MockRouter, down: Mapping[str, int] | None = None) -> None:
    """Every provider answers {"status": "ok"}, except ``down`` (name -> HTTP status)."""
    for name, url in PROVIDER_URLS.items():
        code = (down or {}).get(name)
        if code is None:
            router.get(url).respond(200, json={"status": "ok"})
        else:
            router.get(url).respond(code, json={"status": "error", "message": "maintenance"})


def gate_answers(router: respx.MockRouter, code: int = 200) -> respx.Route:
    body = {"ok": True} if code == 200 else {"detail": "Pricing pack warming in progress"}
    return router.post(GATE_URL).respond(code, json=body)


def cache_for(config: pytest.Config) -> Cache:
    return Cache(shared(config).REDIS_URL, timeout=2.0)


def clients(
    *,
    db: TargetDatabase | None = None,
    kube: KubernetesClient | None = None,
    http: HttpChecks | None = None,
    cache: Cache | None = None,
    with_settings: bool = True,
) -> Clients:
    return Clients(
        database=db,
        kubernetes=kube,
        http=http,
        cache=cache,
        settings=settings() if with_settings else None,
    )


# --------------------------------------------------------------- what happened


async def snapshot(dsn: str) -> Snapshot:
    """Every row of every DawsOS table (of the database's schema)."""
    return await testing_dawsos.snapshot(dsn, testing_dawsos.tables(_schema_of.get(dsn, "full")))


def changed(
    before: Snapshot,
    table: str,
    key: str,
    updates: Mapping[Any, Mapping[str, Any]],
    *,
    deleted: Iterable[Any] = (),
) -> Snapshot:
    """``before`` with exactly these rows updated (by ``key``) and deleted."""
    after = copy.deepcopy(before)
    gone = set(deleted)
    rows = []
    seen = set()
    for row in after[table]:
        if row[key] in gone:
            seen.add(row[key])
            continue
        if row[key] in updates:
            seen.add(row[key])
            row.update(updates[row[key]])
        rows.append(row)
    missing = (set(updates) | gone) - seen
    assert not missing, f"no such rows in {table}: {missing}"
    after[table] = rows
    return after


def not_corroborated(h: Harness) -> float:
    """How many times the guard not_corroborated stopped something in this harness."""
    value = h.metrics.registry.get_sample_value(
        "remediator_guard_blocks_total", {"guard": "not_corroborated"}
    )
    return float(value or 0.0)


def page_text(event: PageEvent) -> str:
    return text.body(event.content)


def last(h: Harness, action: str) -> PageEvent:
    events = [e for e in h.pager.sent if e.action == action]
    assert events, f"no {action} page was sent"
    return events[-1]


def section(page: str, title: str) -> list[str]:
    """The items of one page section ("Done", "Skipped (why)", "Left for you")."""
    lines = page.splitlines()
    start = lines.index(title) + 1
    items = []
    for line in lines[start:]:
        if not line.startswith("- "):
            break
        items.append(line[2:])
    return [] if items == ["(none)"] else items


async def wait_for_job(fake: Any, name: str, timeout: float = 10.0) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while (job := fake.get("jobs", NS, name)) is None:
            await asyncio.sleep(0.01)
    return dict(job)


def job_posts(fake: Any) -> list[Any]:
    return [r for r in fake.requests if r.method == "POST" and r.path.endswith("/jobs")]
