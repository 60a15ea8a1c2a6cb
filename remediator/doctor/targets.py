"""The target checks other than the database: Redis, Kubernetes, AWS, the HTTP peers
and Prometheus. Each opens its own client, asks read-only questions, closes it, and
returns what it learnt; none raises for a peer problem.

Clients are opened through ``daemon.clients`` with a copy of the settings holding
only the one target, so ``doctor`` builds each client exactly as the daemon does.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from remediator.daemon import clients as factory
from remediator.doctor.needs import Aws, Kube
from remediator.doctor.report import Check, not_configured
from remediator.errors import RemediatorError, TargetError, TargetRejected
from remediator.settings import Settings, TargetSettings

T = TypeVar("T")
AwsKey = tuple[str, str]  # (probe, subject), e.g. ("rds_instance", "dawsos-prod")


async def _with_client(
    settings: Settings, only: TargetSettings, use: Callable[[Any], Awaitable[T]], name: str
) -> T:
    """Open the one client ``only`` configures, use it, close it."""
    clients, closers = await factory.open_clients(settings.model_copy(update={"targets": only}))
    try:
        return await use(getattr(clients, name))
    finally:
        for close in closers:
            await close()


def _why(exc: RemediatorError) -> str:
    if isinstance(exc, TargetRejected):
        return f"refused: {exc}"
    if isinstance(exc, TargetError):
        return f"unreachable: {exc}"
    return str(exc)


async def redis(settings: Settings) -> Check:
    if settings.targets.redis is None:
        return not_configured("redis", "targets.redis")

    async def ping(cache: Any) -> None:
        await cache.ping()

    try:
        await _with_client(settings, TargetSettings(redis=settings.targets.redis), ping, "cache")
    except RemediatorError as exc:
        return Check("redis", False, _why(exc))
    return Check("redis", True, "PING answered")


@dataclass(frozen=True)
class KubeFacts:
    check: Check
    answers: Mapping[Kube, tuple[bool, str]] = field(default_factory=dict)


async def kubernetes(settings: Settings, verbs: Iterable[Kube]) -> KubeFacts:
    k = settings.targets.kubernetes
    if k.mode == "off":
        return KubeFacts(not_configured("kubernetes", "targets.kubernetes.mode is off"))
    wanted = sorted(set(verbs), key=str)

    async def review(kube: Any) -> dict[Kube, tuple[bool, str]]:
        return {v: await kube.can_i(v.verb, v.resource, v.subresource, v.group) for v in wanted}

    try:
        answers = await _with_client(settings, TargetSettings(kubernetes=k), review, "kubernetes")
    except RemediatorError as exc:
        return KubeFacts(Check("kubernetes", False, _why(exc)))
    denied = [str(v) for v, (allowed, _) in answers.items() if not allowed]
    where = f"namespace {k.namespace}"
    if denied:
        return KubeFacts(
            Check("kubernetes", False, f"{where}: not allowed to {', '.join(denied)}"), answers
        )
    return KubeFacts(
        Check("kubernetes", True, f"{where}: allowed all {len(answers)} verbs the runbooks use"),
        answers,
    )


@dataclass(frozen=True)
class AwsFacts:
    check: Check
    problems: Mapping[AwsKey, str | None] = field(default_factory=dict)  # None: passed


async def _aws_probe(client: Any, key: AwsKey) -> str | None:
    probe, subject = key
    try:
        if probe == "rds_instance":
            await client.describe_db_instance(subject)
        elif probe == "waf_ip_set":
            name, ip_set_id, scope = subject.split("|")
            await client.waf_get_ip_set(name, ip_set_id, scope)
        elif probe == "s3_bucket":
            await client.head_bucket(subject)
    except RemediatorError as exc:
        return str(exc)
    return None


async def aws(settings: Settings, probes: Iterable[tuple[Aws, str]]) -> AwsFacts:
    """STS identity, then each (read-only call, subject) the runbooks' params name."""
    a = settings.targets.aws
    if a is None:
        return AwsFacts(not_configured("aws", "targets.aws"))
    from remediator.clients.aws_probe import AwsProbe

    keys: list[AwsKey] = sorted({(need.probe, subject) for need, subject in probes if need.probe})
    client = AwsProbe(a.region, a.endpoint_url)
    try:
        try:
            identity = await client.caller_identity()
        except RemediatorError as exc:
            return AwsFacts(Check("aws", False, f"sts:GetCallerIdentity {_why(exc)}"))
        problems = {key: await _aws_probe(client, key) for key in keys}
    finally:
        await client.aclose()
    failed = [f"{p} {s.split('|')[0]}: {why}" for (p, s), why in problems.items() if why]
    if failed:
        return AwsFacts(Check("aws", False, f"as {identity}; " + "; ".join(failed)), problems)
    return AwsFacts(
        Check("aws", True, f"as {identity}; {len(problems)} read-only call(s) answered"), problems
    )


async def http(settings: Settings) -> list[Check]:
    """The app's freshness gate and every provider status URL."""
    h = settings.targets.http
    checks: list[Check] = []
    if not h.app_url and not h.providers:
        return [
            not_configured("http.app", "targets.http.app_url"),
            not_configured("http.providers", "targets.http.providers"),
        ]

    async def probe(client: Any) -> list[Check]:
        out: list[Check] = []
        if h.app_url:
            out.append(await _gate(client))
        else:
            out.append(not_configured("http.app", "targets.http.app_url"))
        for name in h.providers:
            out.append(await _provider(client, name))
        return out

    try:
        checks = await _with_client(settings, TargetSettings(http=h), probe, "http")
    except RemediatorError as exc:
        checks = [Check("http", False, str(exc))]
    return checks


async def _gate(client: Any) -> Check:
    try:
        result = await client.freshness_gate()
    except RemediatorError as exc:
        return Check("http.app", False, _why(exc))
    code = int(result.status_code)
    if code in (401, 403):
        return Check("http.app", False, f"POST /execute refused credentials (HTTP {code})")
    if code == 404:
        return Check("http.app", False, "POST /execute: HTTP 404 (is targets.http.app_url right?)")
    note = " (pack warming: no fresh pack now)" if code == 503 else ""
    return Check("http.app", True, f"POST /execute answered HTTP {code}{note}")


async def _provider(client: Any, name: str) -> Check:
    target = f"http.providers.{name}"
    try:
        health = await client.provider_status(name)
    except RemediatorError as exc:
        return Check(target, False, _why(exc))
    code = health.status_code
    if code in (401, 403):
        return Check(target, False, f"refused credentials (HTTP {code})")
    if code == 404:
        return Check(target, False, "HTTP 404 (is the status URL right?)")
    state = "healthy" if health.healthy else "reachable, reports unhealthy now"
    return Check(target, True, f"{state} ({health.detail})")


async def prometheus(settings: Settings, seconds: float) -> Check:
    p = settings.targets.prometheus
    if p is None:
        return not_configured("prometheus", "targets.prometheus")
    from remediator.clients.prometheus import PrometheusClient

    client = PrometheusClient(p.url, timeout=min(seconds, p.timeout))
    try:
        version = await client.build_info()
    except RemediatorError as exc:
        return Check("prometheus", False, _why(exc))
    finally:
        await client.aclose()
    use = "corroborates alerts" if p.corroborate else "corroboration off"
    return Check("prometheus", True, f"Prometheus {version} answers; {use}")
