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

from typing import Literal

import kubernetes.client as k8s
import yaml
from kubernetes import config as kconfig

from remediator.clients.k8s_base import TARGET
from remediator.clients.k8s_config import ConfigObjects
from remediator.clients.k8s_deployments import RESTART_ANNOTATION, Deployments
from remediator.clients.k8s_jobs import Jobs, JobState
from remediator.clients.k8s_pods import LogLine, PodLogs
from remediator.errors import ConfigError
from remediator.validation import k8s_name
from remediator.validation.kubernetes import validate_dns_subdomain, validate_label_selector

__all__ = [
    "RESTART_ANNOTATION",
    "TARGET",
    "JobState",
    "KubernetesClient",
    "LogLine",
    "validate_dns_subdomain",
    "validate_label_selector",
]


class KubernetesClient(PodLogs, Jobs, Deployments, ConfigObjects):
    """Async façade over the official client, bound to one namespace."""

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
