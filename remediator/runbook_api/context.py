"""What a step is handed: the alert, its validated params, the clients, the mode.

Resources are opened once at start-up and passed explicitly as a frozen
``Clients`` object. A client that is not configured is ``None``; steps that need
it fail with a clear reason instead of reaching for globals.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from remediator.runbook_api.steps import NotConfigured

Mode = Literal["live", "dry-run", "paused"]
# The config key of each client, where its name differs (the cache is targets.redis).
CONFIG_KEYS = {"cache": "targets.redis", "settings": "the settings"}

# The run id of a plan (`remediator replay`): no run exists yet, so a call that names
# the run (a Job's name) renders a placeholder there instead of this id.
PLAN_RUN_ID = "replay"


@dataclass(frozen=True)
class Clients:
    database: Any = None  # remediator.clients.database.TargetDatabase
    cache: Any = None  # remediator.clients.cache.Cache
    kubernetes: Any = None  # remediator.clients.kubernetes.KubernetesClient
    aws: Any = None  # remediator.clients.aws.AwsClient
    http: Any = None  # remediator.clients.http.HttpChecks
    prometheus: Any = None  # remediator.clients.prometheus.PrometheusClient (witness)
    grafana: Any = None  # remediator.clients.grafana.GrafanaClient (witness of Grafana alerts)
    settings: Any = None  # remediator.settings.Settings (targets, links)

    def need(self, name: str) -> Any:
        client = getattr(self, name)
        if client is None:
            key = CONFIG_KEYS.get(name, f"targets.{name}")
            raise NotConfigured(f"not configured: {key} is not set")
        return client


@dataclass(frozen=True)
class AlertView:
    alertname: str
    fingerprint: str
    starts_at: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    generator_url: str = ""
    source: str = "alertmanager"  # or "grafana": who is asked whether it is firing


@dataclass
class StepContext:
    run_id: str
    rule: str
    runbook: str
    alert: AlertView
    params: Any
    mode: Mode
    clients: Clients
    # data of earlier steps of this run, by step name (survives restarts: stored)
    results: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    target: str = ""  # the run's guarded target ("RB-02:polygon"), for the blast radius
    # Why an undo runs: "resolved" (the alert says so: Prometheus must agree) or
    # "max_duration" (time is up, whatever the alert says).
    undo_reason: str | None = None

    @property
    def labels(self) -> Mapping[str, str]:
        return self.alert.labels
