"""What runbooks, their actions and the engine call on each target client.

``Clients`` is typed with these Protocols, so mypy checks every client call a step
makes (names, arguments, what comes back) while this package stays free of drivers:
the real clients in ``remediator.clients`` satisfy them structurally, and
``remediator/daemon/clients.py``, which builds ``Clients`` from the real classes, is
where mypy proves it. A Protocol lists only what is used: a client may offer more
(``doctor`` reaches its extras through the concrete class).

Records a client returns are read-only Protocols too (``@property``), so a frozen
dataclass of the client matches without this module importing it. Lists come back
as ``Sequence``: a ``list[LogLine]`` is not a ``list[PodLogLine]`` (lists are
invariant), but it is a ``Sequence[PodLogLine]``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any, Literal, Protocol

# A column's Python type follows the SQL that selected it (asyncpg decodes int8 to
# int, numeric to Decimal, timestamptz to datetime...), which no signature here can
# know: the values are the one deliberate Any, the rows and every call are typed.
SqlValue = Any
Row = dict[str, SqlValue]
Isolation = Literal["read_committed", "repeatable_read", "serializable"]
JobState = Literal["running", "succeeded", "failed"]

# ------------------------------------------------------------------ database


class SqlTransaction(Protocol):
    """Statements inside one ``SqlDatabase.transaction()`` block."""

    async def fetch(self, sql: str, *args: object) -> list[Row]: ...
    async def fetchrow(self, sql: str, *args: object) -> Row | None: ...
    async def fetchval(self, sql: str, *args: object) -> SqlValue: ...
    async def execute(self, sql: str, *args: object) -> str: ...


class SqlDatabase(SqlTransaction, Protocol):
    """The target database (``TargetDatabase``): autocommit statements, transactions."""

    async def columns(self, table: str) -> frozenset[str]: ...
    def transaction(
        self, *, isolation: Isolation = "read_committed", readonly: bool = False
    ) -> AbstractAsyncContextManager[SqlTransaction]: ...


# --------------------------------------------------------------------- cache


class CacheHits(Protocol):
    @property
    def hits(self) -> tuple[str, ...]: ...
    @property
    def misses(self) -> tuple[str, ...]: ...


class KeyValueCache(Protocol):
    """The application's Redis (``Cache``), read only."""

    async def get_many(self, keys: Iterable[str]) -> Mapping[str, bytes | None]: ...
    async def check_last_good(self, keys: Iterable[str]) -> CacheHits: ...


# ---------------------------------------------------------------- kubernetes


class PodLogLine(Protocol):
    @property
    def pod(self) -> str: ...
    @property
    def text(self) -> str: ...


class Kubernetes(Protocol):
    """The cluster, bound to one namespace (``KubernetesClient``)."""

    @property
    def namespace(self) -> str: ...

    async def get_replicas(self, deployment: str) -> int: ...
    async def scale(self, deployment: str, replicas: int) -> int: ...
    async def rollout_restart(self, deployment: str) -> str: ...
    async def create_job_from_deployment(
        self,
        name: str,
        deployment: str,
        command: list[str],
        *,
        labels: dict[str, str],
        container: str | None = None,
        image: str | None = None,
        ttl_seconds_after_finished: int = 3600,
        backoff_limit: int = 0,
    ) -> str: ...
    async def job_status(self, name: str) -> JobState: ...
    async def pod_logs(
        self,
        label_selector: str,
        tail_lines: int = 200,
        grep: str | None = None,
        *,
        max_pods: int = 10,
        limit_bytes: int = 1024 * 1024,
    ) -> Sequence[PodLogLine]: ...
    async def read_config_map(self, name: str) -> dict[str, str]: ...
    async def patch_secret(self, name: str, data: dict[str, str]) -> None: ...


# ----------------------------------------------------------------------- aws


class DbInstance(Protocol):
    @property
    def identifier(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def instance_class(self) -> str: ...
    @property
    def multi_az(self) -> bool: ...
    @property
    def pending_modified(self) -> Mapping[str, object]: ...


class IpAddresses(Protocol):
    @property
    def addresses(self) -> frozenset[str]: ...
    @property
    def lock_token(self) -> str: ...


class WafSample(Protocol):
    @property
    def rule(self) -> str: ...
    @property
    def client_ip(self) -> str: ...
    @property
    def method(self) -> str: ...
    @property
    def uri(self) -> str: ...
    @property
    def action(self) -> str: ...
    @property
    def country(self) -> str: ...
    @property
    def timestamp(self) -> datetime | None: ...
    @property
    def weight(self) -> int: ...


class Aws(Protocol):
    """RDS, WAFv2 and S3 (``AwsClient``)."""

    async def describe_db_instance(self, identifier: str) -> DbInstance: ...
    async def failover_db_cluster(self, cluster_identifier: str) -> None: ...
    async def reboot_db_instance_with_failover(self, identifier: str) -> None: ...
    async def modify_db_instance_class(self, identifier: str, instance_class: str) -> str: ...
    async def restore_db_instance_to_point_in_time(
        self, source: str, target: str, restore_time: datetime
    ) -> None: ...
    async def waf_get_ip_set(
        self, name: str, ip_set_id: str, scope: str = "REGIONAL"
    ) -> IpAddresses: ...
    async def waf_add_addresses(
        self, name: str, ip_set_id: str, cidrs: Iterable[str], scope: str = "REGIONAL"
    ) -> list[str]: ...
    async def waf_remove_addresses(
        self, name: str, ip_set_id: str, cidrs: Iterable[str], scope: str = "REGIONAL"
    ) -> list[str]: ...
    async def waf_sampled_requests(
        self,
        web_acl_name: str,
        web_acl_id: str,
        scope: str,
        since: datetime,
        until: datetime,
        *,
        max_rules: int = 10,
        max_items: int = 500,
    ) -> Sequence[WafSample]: ...
    async def s3_object_exists(self, bucket: str, key: str) -> bool: ...
    async def s3_delete_object(self, bucket: str, key: str) -> None: ...


# ---------------------------------------------------------------------- http


class ProviderHealthLike(Protocol):
    @property
    def healthy(self) -> bool: ...
    @property
    def status_code(self) -> int | None: ...
    @property
    def detail(self) -> str: ...
    @property
    def reachable(self) -> bool: ...
    @property
    def auth_failed(self) -> bool: ...


class GateOutcome(Protocol):
    @property
    def ok(self) -> bool: ...
    @property
    def status_code(self) -> int: ...
    @property
    def detail(self) -> str: ...
    @property
    def warming(self) -> bool: ...
    @property
    def auth_failed(self) -> bool: ...


class HttpProbes(Protocol):
    """Provider status pages and the app's freshness gate (``HttpChecks``)."""

    @property
    def providers(self) -> tuple[str, ...]: ...

    async def provider_status(self, name: str) -> ProviderHealthLike: ...
    async def probe(self, name: str) -> ProviderHealthLike: ...
    async def freshness_gate(self) -> GateOutcome: ...


# ---------------------------------------------------------------- witnesses


class WitnessAnswer(Protocol):
    @property
    def firing(self) -> bool: ...
    @property
    def detail(self) -> str: ...


class AlertWitness(Protocol):
    """Who says whether an alert still fires: Prometheus (``PrometheusClient``) or,
    for Grafana-managed alerts, Grafana (``GrafanaClient``)."""

    async def alert_firing(self, labels: Mapping[str, str]) -> WitnessAnswer: ...


class PromReading(Protocol):
    @property
    def true(self) -> bool: ...
    @property
    def value(self) -> str: ...


class PrometheusWitness(AlertWitness, Protocol):
    """Prometheus also answers the queries that verify a mitigation (engine/verify.py)."""

    async def instant(self, query: str) -> PromReading: ...
