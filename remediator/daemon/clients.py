"""Open the target clients the config names, once, at start-up.

Returns the frozen ``Clients`` bundle plus the close functions to call at stop.
A target that is not configured stays ``None``; a step that needs it is skipped
with "not configured: targets.X is not set" rather than guessing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from remediator.runbook_api.context import Clients
from remediator.settings import Settings

Closer = Callable[[], Awaitable[Any]]


async def open_clients(settings: Settings) -> tuple[Clients, list[Closer]]:
    t = settings.targets
    closers: list[Closer] = []
    database = cache = kube = aws = http = prometheus = grafana = None
    if t.database is not None:
        from remediator.clients.database import TargetDatabase

        database = await TargetDatabase.connect(t.database.get_secret_value())
        closers.append(database.aclose)
    if t.redis is not None:
        from remediator.clients.cache import Cache

        cache = Cache(t.redis.get_secret_value())
        closers.append(cache.aclose)
    if t.kubernetes.mode != "off":
        from remediator.clients.kubernetes import KubernetesClient

        kube = KubernetesClient.from_config(
            t.kubernetes.mode, t.kubernetes.namespace, t.kubernetes.kubeconfig
        )
        closers.append(kube.aclose)
    if t.aws is not None:
        from remediator.clients.aws import AwsClient

        aws = AwsClient(t.aws.region, t.aws.endpoint_url)
        closers.append(aws.aclose)
    if t.http.providers or t.http.app_url:
        from remediator.clients.http import HttpChecks, ProviderEndpoint

        http = HttpChecks(
            {
                name: ProviderEndpoint(
                    p.url,
                    headers={k: v.get_secret_value() for k, v in p.headers.items()},
                    params={k: v.get_secret_value() for k, v in p.params.items()},
                )
                for name, p in t.http.providers.items()
            },
            t.http.app_url,
            app_token=t.http.app_token.get_secret_value() if t.http.app_token else None,
        )
        closers.append(http.aclose)
    if t.prometheus is not None and t.prometheus.corroborate:
        from remediator.clients.prometheus import PrometheusClient

        prometheus = PrometheusClient(t.prometheus.url, timeout=t.prometheus.timeout)
        closers.append(prometheus.aclose)
    if t.grafana is not None:
        from remediator.clients.grafana import GrafanaClient

        grafana = GrafanaClient(
            t.grafana.url, t.grafana.token.get_secret_value(), timeout=t.grafana.timeout
        )
        closers.append(grafana.aclose)
    return Clients(
        database=database,
        cache=cache,
        kubernetes=kube,
        aws=aws,
        http=http,
        prometheus=prometheus,
        grafana=grafana,
        settings=settings,
    ), closers
