"""Kubernetes target client: the runbooks' only way to touch the cluster.

Wraps the official, synchronous ``kubernetes`` client. Every call runs in a worker
thread with a request timeout, and every library error leaves this module as a
``remediator.errors`` type (409 -> TargetConflict, 429 -> TargetThrottled, 5xx and
refused connections -> TargetUnavailable, timeouts -> TargetTimeout, other 4xx ->
TargetRejected). Every name is checked against Kubernetes' own rules *before* a request
is built, so a label value taken from an alert can never shape a URL.

This module must never retry (the engine's step policy does), never log or echo a
secret value, and never act outside the one namespace it was built for.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

import kubernetes.client as k8s
import urllib3
import yaml
from kubernetes import config as kconfig
from kubernetes.client.exceptions import ApiException

from remediator.clients import pod_template
from remediator.errors import (
    ConfigError,
    InputRejected,
    TargetConflict,
    TargetError,
    TargetRejected,
    TargetThrottled,
    TargetTimeout,
    TargetUnavailable,
)
from remediator.validation import k8s_name
from remediator.validation.kubernetes import (
    IMAGE_REF,
    MAX_REPLICAS,
    MAX_SECRET_BYTES,
    SECRET_KEY,
    check_str,
    validate_command,
    validate_dns_subdomain,
    validate_int,
    validate_label_selector,
    validate_labels,
)

__all__ = [
    "JobState",
    "KubernetesClient",
    "LogLine",
    "validate_dns_subdomain",
    "validate_label_selector",
]

TARGET = "kubernetes"
RESTART_ANNOTATION = "kubectl.kubernetes.io/restartedAt"
JobState = Literal["running", "succeeded", "failed"]
T = TypeVar("T")

# ----------------------------------------------------------------- error mapping


@dataclass(frozen=True, slots=True)
class LogLine:
    """One line of a pod's log, as ``kubectl logs -l ... --prefix`` would show it."""

    pod: str
    text: str


def _retry_after(headers: Any) -> float | None:
    raw = headers.get("Retry-After") if headers is not None else None
    try:
        seconds = float(raw) if raw is not None else None
    except ValueError:  # an HTTP-date; the engine's own backoff applies
        return None
    return seconds if seconds is not None and seconds >= 0 else None


def _server_message(body: Any) -> str:
    try:
        message = json.loads(body).get("message", "")
    except (TypeError, ValueError, AttributeError):
        return ""
    return str(message)[:300]


def _map_api_exception(what: str, exc: ApiException, *, redact: bool) -> TargetError:
    status = int(exc.status or 0)
    detail = "" if redact else _server_message(exc.body)
    message = f"{what}: HTTP {status} {exc.reason or ''}".rstrip() + (
        f": {detail}" if detail else ""
    )
    if status == 0:  # the client's own failure before any answer, e.g. TLS handshake
        return TargetUnavailable(TARGET, message)
    if status == 409:
        return TargetConflict(TARGET, message)
    if status == 429:
        return TargetThrottled(TARGET, message, retry_after=_retry_after(exc.headers))
    if status >= 500:
        return TargetUnavailable(TARGET, message)
    return TargetRejected(TARGET, message)


def _map_transport(what: str, exc: urllib3.exceptions.HTTPError) -> TargetError:
    cause: BaseException = exc
    if isinstance(exc, urllib3.exceptions.MaxRetryError) and exc.reason is not None:
        cause = exc.reason  # an ApiClient built with retries enabled wraps the real error
    # NewConnectionError subclasses ConnectTimeoutError: test it before timeouts.
    if isinstance(cause, urllib3.exceptions.NewConnectionError):
        return TargetUnavailable(TARGET, f"{what}: cannot connect: {type(cause).__name__}")
    if isinstance(cause, urllib3.exceptions.TimeoutError):
        return TargetTimeout(TARGET, f"{what}: no answer in time ({type(cause).__name__})")
    return TargetUnavailable(TARGET, f"{what}: {type(cause).__name__}")


# ------------------------------------------------------------------------ client


class KubernetesClient:
    """Async façade over the official client, bound to one namespace."""

    def __init__(self, api_client: k8s.ApiClient, namespace: str, request_timeout: float) -> None:
        self.namespace = k8s_name(namespace, field="namespace")
        if not request_timeout > 0:
            raise ValueError("request_timeout must be positive")
        self._api = api_client
        self._core = k8s.CoreV1Api(api_client)
        self._apps = k8s.AppsV1Api(api_client)
        self._batch = k8s.BatchV1Api(api_client)
        # (connect, read): the official client treats a bare float as "no timeout".
        self._timeout = (float(request_timeout), float(request_timeout))
        self._closed = False

    @classmethod
    def from_config(
        cls,
        mode: Literal["in-cluster", "kubeconfig"],
        namespace: str,
        kubeconfig: str | None = None,
        *,
        request_timeout: float = 10.0,
    ) -> KubernetesClient:
        k8s_name(namespace, field="namespace")
        cfg = k8s.Configuration()
        try:
            if mode == "in-cluster":
                kconfig.load_incluster_config(client_configuration=cfg)
            elif mode == "kubeconfig":
                # persist_config=False: never write refreshed tokens into the user's file.
                kconfig.load_kube_config(
                    config_file=kubeconfig, client_configuration=cfg, persist_config=False
                )
            else:
                raise ConfigError(f"kubernetes.mode: unknown mode {mode!r}")
        except (kconfig.ConfigException, OSError, yaml.YAMLError) as exc:
            where = (kubeconfig or "default kubeconfig") if mode == "kubeconfig" else mode
            raise ConfigError(f"kubernetes: cannot load configuration ({where}): {exc}") from exc
        cfg.retries = False  # one attempt per call; retries belong to the engine
        return cls(k8s.ApiClient(cfg), namespace, request_timeout)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._api.close()
        # ApiClient.close() only stops its thread pool; the sockets live in urllib3,
        # whose PoolManager.clear() (2.x) forgets pools without closing them.
        manager = self._api.rest_client.pool_manager
        for key in manager.pools.keys():  # noqa: SIM118 - the container refuses iteration
            pool = manager.pools.get(key)
            if pool is not None:
                pool.close()
        manager.clear()

    async def can_i(
        self, verb: str, resource: str, subresource: str = "", group: str = ""
    ) -> tuple[bool, str]:
        """SelfSubjectAccessReview in our namespace: (allowed, the server's reason).

        What ``kubectl auth can-i`` asks; ``doctor`` checks each verb the runbooks use.
        """
        attrs = k8s.V1ResourceAttributes(
            namespace=self.namespace,
            verb=verb,
            resource=resource,
            subresource=subresource or None,
            group=group,
        )
        body = k8s.V1SelfSubjectAccessReview(
            spec=k8s.V1SelfSubjectAccessReviewSpec(resource_attributes=attrs)
        )
        api = k8s.AuthorizationV1Api(self._api)
        review = await self._call(
            "selfsubjectaccessreview", api.create_self_subject_access_review, body
        )
        status = review.status
        allowed = bool(status is not None and status.allowed and not status.denied)
        reason = (status.reason or status.evaluation_error or "") if status is not None else ""
        return allowed, str(reason)[:200]

    async def _call(
        self, what: str, fn: Callable[..., T], *args: Any, redact: bool = False, **kwargs: Any
    ) -> T:
        if self._closed:
            raise TargetUnavailable(TARGET, f"{what}: client is closed")
        try:
            return await asyncio.to_thread(fn, *args, _request_timeout=self._timeout, **kwargs)
        except ApiException as exc:
            mapped = _map_api_exception(what, exc, redact=redact)
            if redact:
                exc.body = None  # keep the server's echo out of chained tracebacks
            raise mapped from exc
        except urllib3.exceptions.HTTPError as exc:
            raise _map_transport(what, exc) from exc

    # ------------------------------------------------------------------ pods

    async def pod_logs(
        self,
        label_selector: str,
        tail_lines: int = 200,
        grep: str | None = None,
        *,
        max_pods: int = 10,
        limit_bytes: int = 1024 * 1024,
    ) -> list[LogLine]:
        """``kubectl logs -l SELECTOR --tail=N | grep GREP`` over at most ``max_pods`` pods."""
        selector = validate_label_selector("label_selector", label_selector)
        tail = validate_int("tail_lines", tail_lines, 1, 10_000)
        if grep is not None:
            check_str("grep", grep, 1024)
        pods = await self._call(
            "list pods", self._core.list_namespaced_pod, self.namespace, label_selector=selector
        )
        names = sorted(
            p.metadata.name
            for p in pods.items
            # A Pending pod has no container to read from; the API would answer 400.
            if p.status is None or p.status.phase != "Pending"
        )[:max_pods]
        lines: list[LogLine] = []
        for name in names:
            validate_dns_subdomain("pod", name)  # it came from the server, still a URL part
            text = await self._call(f"logs of pod {name}", self._read_log, name, tail, limit_bytes)
            lines.extend(
                LogLine(name, line) for line in text.splitlines() if grep is None or grep in line
            )
        return lines

    def _read_log(
        self, name: str, tail: int, limit_bytes: int, *, _request_timeout: tuple[float, float]
    ) -> str:
        # Raw body: the generated client json-decodes 'str' responses, which mangles
        # a log that happens to be one JSON document.
        resp = self._core.read_namespaced_pod_log(
            name,
            self.namespace,
            tail_lines=tail,
            limit_bytes=limit_bytes,
            _preload_content=False,
            _request_timeout=_request_timeout,
        )
        try:
            return bytes(resp.data).decode("utf-8", errors="replace")
        finally:
            resp.release_conn()

    # ------------------------------------------------------------------ jobs

    async def create_job(
        self,
        name: str,
        image: str,
        command: list[str],
        *,
        labels: dict[str, str],
        ttl_seconds_after_finished: int = 3600,
        backoff_limit: int = 0,
    ) -> str:
        """Create a one-container Job; returns its name.

        Creating the same Job twice (same labels, image and command) returns the name
        again, so a retry after a timeout that did reach the server is harmless. A
        *different* Job under that name is TargetRejected: retrying cannot fix it.
        """
        k8s_name(name, field="job")
        if len(check_str("image", image, 1024)) == 0 or not IMAGE_REF.fullmatch(image):
            raise InputRejected("image", "not an image reference")
        argv = validate_command(command)
        job_labels = validate_labels("labels", labels)
        ttl = validate_int("ttl_seconds_after_finished", ttl_seconds_after_finished, 0, 7 * 86400)
        backoff = validate_int("backoff_limit", backoff_limit, 0, 10)
        body = k8s.V1Job(
            api_version="batch/v1",
            kind="Job",
            metadata=k8s.V1ObjectMeta(name=name, labels=job_labels),
            spec=k8s.V1JobSpec(
                backoff_limit=backoff,
                ttl_seconds_after_finished=ttl,
                template=k8s.V1PodTemplateSpec(
                    metadata=k8s.V1ObjectMeta(labels=job_labels),
                    spec=k8s.V1PodSpec(
                        restart_policy="Never",
                        containers=[k8s.V1Container(name="main", image=image, command=argv)],
                    ),
                ),
            ),
        )
        return await self._submit_job(name, body)

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
    ) -> str:
        """Create a Job running ``command`` in a copy of ``deployment``'s pod template
        (its image, env, envFrom, service account, volumes...; see ``pod_template``).

        Idempotent like ``create_job``. A missing Deployment is TargetRejected (HTTP
        404): the Job never falls back to a bare container without the environment.
        """
        k8s_name(name, field="job")
        k8s_name(deployment, field="deployment")
        if container is not None:
            k8s_name(container, field="container")
        if image is not None and (
            len(check_str("image", image, 1024)) == 0 or not IMAGE_REF.fullmatch(image)
        ):
            raise InputRejected("image", "not an image reference")
        argv = validate_command(command)
        job_labels = validate_labels("labels", labels)
        ttl = validate_int("ttl_seconds_after_finished", ttl_seconds_after_finished, 0, 7 * 86400)
        backoff = validate_int("backoff_limit", backoff_limit, 0, 10)
        source = await self._call(
            f"read deployment {deployment}",
            self._apps.read_namespaced_deployment,
            deployment,
            self.namespace,
        )
        body = pod_template.job_from_template(
            name,
            source.spec.template,
            argv,
            labels=job_labels,
            ttl_seconds_after_finished=ttl,
            backoff_limit=backoff,
            container=container,
            image=image,
        )
        return await self._submit_job(name, body)

    async def _submit_job(self, name: str, body: k8s.V1Job) -> str:
        try:
            created = await self._call(
                f"create job {name}", self._batch.create_namespaced_job, self.namespace, body
            )
        except TargetConflict as exc:
            existing = await self._call(
                f"read job {name}", self._batch.read_namespaced_job, name, self.namespace
            )
            if not _same_job(existing, body):
                raise TargetRejected(
                    TARGET, f"create job {name}: another Job with this name exists"
                ) from exc
            return name
        return str(created.metadata.name)

    async def job_status(self, name: str) -> JobState:
        k8s_name(name, field="job")
        job = await self._call(
            f"read job {name}", self._batch.read_namespaced_job_status, name, self.namespace
        )
        status = job.status
        if status is None:
            return "running"
        # Conditions are the controller's verdict; counts alone can show a failed
        # attempt that will still be retried.
        for cond in status.conditions or []:
            if cond.status == "True" and cond.type in ("Complete", "SuccessCriteriaMet"):
                return "succeeded"
            if cond.status == "True" and cond.type in ("Failed", "FailureTarget"):
                return "failed"
        if status.succeeded:
            return "succeeded"
        backoff = job.spec.backoff_limit if job.spec and job.spec.backoff_limit is not None else 6
        if status.failed and status.failed > backoff:
            return "failed"
        return "running"

    # ----------------------------------------------------------- deployments

    async def get_replicas(self, deployment: str) -> int:
        k8s_name(deployment, field="deployment")
        scale = await self._call(
            f"read scale of deployment {deployment}",
            self._apps.read_namespaced_deployment_scale,
            deployment,
            self.namespace,
        )
        return int(scale.spec.replicas or 0)

    async def scale(self, deployment: str, replicas: int) -> int:
        """Set ``spec.replicas``; returns the previous value (for undo).

        The patch carries the resourceVersion that was read, so if someone else scaled
        in between the server answers 409 (TargetConflict) instead of us reporting a
        stale "previous" value.
        """
        k8s_name(deployment, field="deployment")
        wanted = validate_int("replicas", replicas, 0, MAX_REPLICAS)
        what = f"scale deployment {deployment}"
        current = await self._call(
            what, self._apps.read_namespaced_deployment_scale, deployment, self.namespace
        )
        previous = int(current.spec.replicas or 0)
        patch = {
            "metadata": {"resourceVersion": current.metadata.resource_version},
            "spec": {"replicas": wanted},
        }
        await self._call(
            what, self._apps.patch_namespaced_deployment_scale, deployment, self.namespace, patch
        )
        return previous

    async def rollout_restart(self, deployment: str) -> str:
        """What ``kubectl rollout restart`` does; returns the timestamp it set."""
        k8s_name(deployment, field="deployment")
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        patch = {"spec": {"template": {"metadata": {"annotations": {RESTART_ANNOTATION: stamp}}}}}
        await self._call(
            f"restart deployment {deployment}",
            self._apps.patch_namespaced_deployment,
            deployment,
            self.namespace,
            patch,
        )
        return stamp

    # ------------------------------------------------------------ configmaps

    async def read_config_map(self, name: str) -> dict[str, str]:
        """A ConfigMap's ``data`` (its text entries)."""
        validate_dns_subdomain("configmap", name)
        found = await self._call(
            f"read configmap {name}", self._core.read_namespaced_config_map, name, self.namespace
        )
        return dict(found.data or {})

    # --------------------------------------------------------------- secrets

    async def patch_secret(self, name: str, data: dict[str, str]) -> None:
        """Set keys of a Secret (others are kept). Values never reach a log or an error."""
        validate_dns_subdomain("secret", name)
        if not data:
            raise InputRejected("data", "nothing to patch")
        encoded: dict[str, str] = {}
        for key, value in data.items():
            if not SECRET_KEY.fullmatch(check_str("data key", key, 253)):
                raise InputRejected("data key", f"invalid secret key {key[:80]!r}")
            if not isinstance(value, str):
                raise InputRejected(f"data[{key}]", "expected a string")
            encoded[key] = base64.b64encode(value.encode()).decode()
        if sum(len(v) for v in encoded.values()) > MAX_SECRET_BYTES:
            raise InputRejected("data", "larger than a Secret may be")
        await self._call(
            f"patch secret {name}", self._patch_secret, name, {"data": encoded}, redact=True
        )

    def _patch_secret(
        self, name: str, body: dict[str, Any], *, _request_timeout: tuple[float, float]
    ) -> None:
        # Raw response: with preloading the generated client DEBUG-logs the body,
        # which is the whole Secret.
        resp = self._core.patch_namespaced_secret(
            name, self.namespace, body, _preload_content=False, _request_timeout=_request_timeout
        )
        try:
            resp.drain_conn()
        finally:
            resp.release_conn()


def _same_job(job: Any, wanted: k8s.V1Job) -> bool:
    """Whether ``job`` is the Job ``wanted`` describes (same labels, image and command)."""
    try:
        container = job.spec.template.spec.containers[0]
        ours = wanted.spec.template.spec.containers[0]
    except (AttributeError, IndexError, TypeError):
        return False
    return bool(
        (job.metadata.labels or {}) == (wanted.metadata.labels or {})
        and container.image == ours.image
        and list(container.command or []) == list(ours.command or [])
    )
