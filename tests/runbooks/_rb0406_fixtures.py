"""Real parts for the RB-04..RB-06 tests: a fresh DawsOS database, moto in server mode
with the real AwsClient, FakeKubeAPI with the official client, and helpers to read what
happened (whole-table diffs, page text, every byte the harness stored).

Test modules wrap these in their own fixtures (there is no conftest.py here: the lead
owns it).
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import kubernetes.client as k8s
import pytest
import yaml

from remediator.clients.aws import AwsClient
from remediator.clients.database import TargetDatabase
from remediator.clients.kubernetes import KubernetesClient
from remediator.errors import TargetTimeout, TargetUnavailable
from remediator.paging import text
from remediator.paging.base import PageEvent
from remediator.runbook_api.registry import Registry
from remediator.runbooks import (
    rb04_rights_violation,
    rb05_database_incident,
    rb06_security_incident,
)
from remediator.testing import Harness
from tests.fixtures import dawsos as testing_dawsos
from tests.fixtures.moto_server import start_moto_server
from tests.support import root_conftest as shared

REGION = "us-east-1"
NS = "prod"
TABLES = testing_dawsos.TABLES

Snapshot = dict[str, list[dict[str, Any]]]


def registry() -> Registry:
    r = Registry()
    for module in (rb04_rights_violation, rb05_database_incident, rb06_security_incident):
        r.register(module.RUNBOOK)
    return r


def rules_yaml(
    runbook: str, alertnames: Iterable[str], params: Mapping[str, Any] | None = None, **extra: Any
) -> str:
    """One rule per alert name; no cooldown or rate limit unless ``extra`` sets them."""
    rules = [
        {
            "name": f"{name.lower()}-rule",
            "matchers": [f'alertname="{name}"'],
            "runbook": runbook,
            "params": dict(params or {}),
            **extra,
        }
        for name in alertnames
    ]
    return yaml.safe_dump({"rules": rules})


def uid(n: int) -> str:
    return str(testing_dawsos.user_id(n))


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# ------------------------------------------------------------------ Postgres


_schema_of: dict[str, testing_dawsos.Schema] = {}


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


async def snapshot(dsn: str) -> Snapshot:
    return await testing_dawsos.snapshot(dsn, testing_dawsos.tables(_schema_of.get(dsn, "full")))


def _key(row: Mapping[str, Any]) -> str:
    return json.dumps(row, sort_keys=True, default=str)


def diff(
    before: Snapshot, after: Snapshot
) -> dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]]]]:
    """Per changed table: (rows only in ``before``, rows only in ``after``)."""
    out = {}
    for table in before:
        old = Counter(_key(r) for r in before[table])
        new = Counter(_key(r) for r in after[table])
        gone = [json.loads(k) for k in (old - new).elements()]
        came = [json.loads(k) for k in (new - old).elements()]
        if gone or came:
            out[table] = (gone, came)
    return out


# ----------------------------------------------------------------------- AWS


@contextmanager
def aws_environment(tmp: Path) -> Iterator[None]:
    """Dummy credentials, no config files, no proxies, no instance metadata lookups."""
    with pytest.MonkeyPatch.context() as mp:
        for name in (
            "AWS_PROFILE",
            "AWS_SESSION_TOKEN",
            "AWS_ENDPOINT_URL",
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "http_proxy",
            "https_proxy",
        ):
            mp.delenv(name, raising=False)
        mp.setenv("AWS_ACCESS_KEY_ID", "AKIADUMMYRB0406TEST1")
        mp.setenv("AWS_SECRET_ACCESS_KEY", "dummy-secret-for-rb0406-tests")
        mp.setenv("AWS_DEFAULT_REGION", REGION)
        mp.setenv("AWS_CONFIG_FILE", str(tmp / "config"))
        mp.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp / "credentials"))
        mp.setenv("AWS_EC2_METADATA_DISABLED", "true")
        mp.setenv("NO_PROXY", "127.0.0.1,localhost")
        yield


@contextmanager
def moto_endpoint() -> Iterator[str]:
    server = start_moto_server()
    try:
        yield server.endpoint_url
    finally:
        server.stop()


def admin_client(service: str, endpoint: str) -> Any:
    """A plain boto3 client to set up and inspect moto's state (not the code under test)."""
    import boto3

    return boto3.client(service, endpoint_url=endpoint, region_name=REGION)


@asynccontextmanager
async def aws_client(endpoint: str) -> AsyncIterator[AwsClient]:
    client = AwsClient(REGION, endpoint_url=endpoint)
    try:
        yield client
    finally:
        await client.aclose()


# ---------------------------------------------------------------- Kubernetes


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


# ------------------------------------------------------------ what happened


def not_corroborated(h: Harness) -> float:
    """How many times the guard not_corroborated stopped something in this harness."""
    value = h.metrics.registry.get_sample_value(
        "remediator_guard_blocks_total", {"guard": "not_corroborated"}
    )
    return float(value or 0.0)


def page_text(event: PageEvent) -> str:
    return text.body(event.content)


def stored_text(h: Harness) -> str:
    """Every value in every table of the harness's SQLite state store, as one string."""
    path = h.state_url.removeprefix("sqlite:///")
    conn = sqlite3.connect(path)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        parts = []
        for table in tables:
            for row in conn.execute(f'SELECT * FROM "{table}"'):
                parts.append(repr(row))
        return "\n".join(parts)
    finally:
        conn.close()


async def steps_by_name(
    h: Harness, run_id: str, phase: str | None = None
) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in await h.steps(run_id, phase)}


async def approval_for(h: Harness, run_id: str, step: str) -> int:
    for a in await h.approvals(run_id):
        if a["step"] == step:
            return int(a["id"])
    raise AssertionError(f"no approval for {step}")
