"""The real clients satisfy the Protocols ``Clients`` is typed with (client_protocols).

mypy checks ``remediator`` only, not the tests, so the check is a mypy run (strict,
the project's configuration) on a module that hands each real class to a variable
typed with its Protocol; and on one that hands a client the wrong Protocol, so that a
check which could not fail proves nothing.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from remediator.errors import NotConfigured
from remediator.runbook_api.context import Clients

ROOT = Path(__file__).resolve().parents[2]
MYPY = Path(sys.executable).with_name("mypy")

CONFORMING = """
from remediator.clients.aws import AwsClient
from remediator.clients.cache import Cache
from remediator.clients.database import TargetDatabase, Transaction
from remediator.clients.grafana import GrafanaClient
from remediator.clients.http import HttpChecks
from remediator.clients.kubernetes import KubernetesClient
from remediator.clients.prometheus import PrometheusClient
from remediator.runbook_api import client_protocols as cp


def conform(
    database: TargetDatabase,
    transaction: Transaction,
    cache: Cache,
    kubernetes: KubernetesClient,
    aws: AwsClient,
    http: HttpChecks,
    prometheus: PrometheusClient,
    grafana: GrafanaClient,
) -> None:
    a: cp.SqlDatabase = database
    b: cp.SqlTransaction = transaction
    c: cp.KeyValueCache = cache
    d: cp.Kubernetes = kubernetes
    e: cp.Aws = aws
    f: cp.HttpProbes = http
    g: cp.PrometheusWitness = prometheus
    h: cp.AlertWitness = grafana
"""

# Grafana only says whether an alert fires; it answers no PromQL query.
NOT_CONFORMING = """
from remediator.clients.grafana import GrafanaClient
from remediator.runbook_api import client_protocols as cp


def conform(grafana: GrafanaClient) -> None:
    g: cp.PrometheusWitness = grafana
"""


@pytest.fixture(scope="module")
def mypy_run(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], str]:
    # One cache for the module: the second run does not re-check remediator.clients.
    cache = tmp_path_factory.mktemp("mypy-cache")

    def run(source: str) -> str:
        module = tmp_path_factory.mktemp("conform") / "conform.py"
        module.write_text(source, encoding="utf-8")
        proc = subprocess.run(
            [str(MYPY), "--cache-dir", str(cache), "--no-error-summary", str(module)],
            cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        return f"exit {proc.returncode}\n{proc.stdout}{proc.stderr}"

    return run


def test_every_real_client_satisfies_its_protocol(mypy_run: Callable[[str], str]) -> None:
    out = mypy_run(CONFORMING)
    assert out.startswith("exit 0\n"), out


def test_a_client_missing_a_member_fails_the_check(mypy_run: Callable[[str], str]) -> None:
    out = mypy_run(NOT_CONFORMING)
    assert out.startswith("exit 1\n"), out
    assert 'variable has type "PrometheusWitness"' in out, out
    assert "instant" in out, out


@pytest.mark.parametrize(
    ("need", "key"),
    [
        (Clients.need_database, "targets.database"),
        (Clients.need_cache, "targets.redis"),
        (Clients.need_kubernetes, "targets.kubernetes"),
        (Clients.need_aws, "targets.aws"),
        (Clients.need_http, "targets.http"),
    ],
)
def test_an_unset_client_names_its_config_key(need: Callable[[Clients], object], key: str) -> None:
    with pytest.raises(NotConfigured, match=rf"^not configured: {key} is not set$"):
        need(Clients())
