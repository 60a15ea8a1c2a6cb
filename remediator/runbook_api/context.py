"""What a step is handed: the alert, its validated params, the clients, the mode.

Resources are opened once at start-up and passed explicitly as a frozen
``Clients`` object. A client that is not configured is ``None``; steps that need
it fail with a clear reason instead of reaching for globals.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Literal

from pydantic import BaseModel
from typing_extensions import TypeVar

from remediator.runbook_api.client_protocols import (
    AlertWitness,
    Aws,
    HttpProbes,
    KeyValueCache,
    Kubernetes,
    PrometheusWitness,
    SqlDatabase,
)
from remediator.runbook_api.steps import NotConfigured
from remediator.settings import Settings

Mode = Literal["live", "dry-run", "paused"]
T = TypeVar("T")
# The params of the runbook a context is for: a step declared for RB-03 takes a
# StepContext[rb03_params.Params] and reads ``ctx.params.window_minutes`` checked by mypy.
P = TypeVar("P", bound=BaseModel, default=BaseModel, covariant=True)
M = TypeVar("M", bound=BaseModel)
R = TypeVar("R", bound=BaseModel)

# The run id of a plan (`remediator replay`): no run exists yet, so a call that names
# the run (a Job's name) renders a placeholder there instead of this id.
PLAN_RUN_ID = "replay"


@dataclass(frozen=True)
class Clients:
    """Each client typed by what the steps use of it (``client_protocols``): the real
    classes are remediator.clients.database.TargetDatabase, .cache.Cache,
    .kubernetes.KubernetesClient, .aws.AwsClient, .http.HttpChecks,
    .prometheus.PrometheusClient and .grafana.GrafanaClient (witnesses)."""

    database: SqlDatabase | None = None
    cache: KeyValueCache | None = None
    kubernetes: Kubernetes | None = None
    aws: Aws | None = None
    http: HttpProbes | None = None
    prometheus: PrometheusWitness | None = None
    grafana: AlertWitness | None = None  # the witness of Grafana-managed alerts
    settings: Settings | None = None  # targets, links

    # A step that needs a client which is not configured fails with NotConfigured
    # naming the config key to set, instead of an AttributeError on None.
    def need_database(self) -> SqlDatabase:
        return _configured(self.database, "targets.database")

    def need_cache(self) -> KeyValueCache:
        return _configured(self.cache, "targets.redis")

    def need_kubernetes(self) -> Kubernetes:
        return _configured(self.kubernetes, "targets.kubernetes")

    def need_aws(self) -> Aws:
        return _configured(self.aws, "targets.aws")

    def need_http(self) -> HttpProbes:
        return _configured(self.http, "targets.http")


def _configured(client: T | None, key: str) -> T:
    if client is None:
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
class StepContext(Generic[P]):
    run_id: str
    rule: str
    runbook: str
    alert: AlertView
    params: P  # the rule's params, validated with the runbook's ``Runbook.params``
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

    def found(self, step: str, record: type[R]) -> R | None:
        """What an earlier step of this run found, as that step's typed record (None:
        it has not run in this run, or it failed), so a step's input is checked, not
        read by string keys."""
        data = self.results.get(step)
        return None if data is None else record.model_validate(data)

    def params_as(self, model: type[M]) -> M:
        """The params as the runbook's own model, so mypy checks every field a step reads.

        The engine validated them with that model, so this holds for every run; a step
        handed another runbook's params fails here rather than reading a wrong field.
        """
        if not isinstance(self.params, model):
            raise TypeError(
                f"{self.runbook}: params are {type(self.params).__name__}, not {model.__name__}"
            )
        return self.params
