"""Deployments: their replicas, and restarts (what ``kubectl rollout restart`` does)."""

from __future__ import annotations

from datetime import UTC, datetime

from remediator.clients.k8s_base import KubernetesApi
from remediator.validation import k8s_name
from remediator.validation.kubernetes import MAX_REPLICAS, validate_int

RESTART_ANNOTATION = "kubectl.kubernetes.io/restartedAt"


class Deployments(KubernetesApi):
    """Deployments in the namespace: scale (undoable) and rollout restart."""

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
