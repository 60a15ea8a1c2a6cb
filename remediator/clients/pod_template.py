"""A Job from a Deployment's pod template, as ``kubectl create job --from`` makes one
from a CronJob.

``kubectl exec deployment/scheduler -- python -m jobs.build_pack ...`` (the runbook's
way) runs the command with the scheduler's environment. A Job that must do the same
copies the Deployment's pod template: image, env, envFrom, volumes and their mounts,
service account, image pull secrets, node selector, tolerations, affinity, security
context, init containers. Only the container's command and args are replaced. Besides:

- ``restartPolicy: Never``: a failed attempt is counted by the caller, not retried in
  place (Deployments only allow Always).
- The pod carries the Job's labels, not the Deployment's: the workload's Services and
  selectors must never pick up a batch pod (nor its ReplicaSet count it).
- Probes are dropped: a batch command serves no port, and a liveness probe would kill it.
- Only the chosen container is kept (``kubectl.kubernetes.io/default-container``, or
  the first, unless one is named): a long-running sidecar would keep the Job from ever
  completing. Init containers (native sidecars included) are kept.

This module only builds objects; it never calls the API.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import kubernetes.client as k8s

from remediator.errors import InputRejected

DEFAULT_CONTAINER_ANNOTATION = "kubectl.kubernetes.io/default-container"
_DROPPED_ANNOTATIONS = frozenset({"kubectl.kubernetes.io/restartedAt"})


def _chosen(spec: k8s.V1PodSpec, annotations: dict[str, str], name: str | None) -> k8s.V1Container:
    containers = list(spec.containers or [])
    if not containers:
        raise InputRejected("deployment", "its pod template has no container")
    wanted = name or annotations.get(DEFAULT_CONTAINER_ANNOTATION)
    if wanted is None:
        return containers[0]
    for container in containers:
        if container.name == wanted:
            return container
    raise InputRejected(
        "container", f"no container {wanted!r} in the pod template ({[c.name for c in containers]})"
    )


def job_from_template(
    name: str,
    template: k8s.V1PodTemplateSpec,
    argv: Sequence[str],
    *,
    labels: dict[str, str],
    ttl_seconds_after_finished: int,
    backoff_limit: int,
    container: str | None = None,
    image: str | None = None,
) -> k8s.V1Job:
    """The Job running ``argv`` in a copy of ``template``; ``template`` is not changed."""
    source = copy.deepcopy(template)
    spec: k8s.V1PodSpec = source.spec
    if spec is None:
        raise InputRejected("deployment", "it has no pod template spec")
    meta = source.metadata or k8s.V1ObjectMeta()
    annotations = {
        k: v for k, v in (meta.annotations or {}).items() if k not in _DROPPED_ANNOTATIONS
    }
    main = _chosen(spec, annotations, container)
    main.command, main.args = list(argv), None
    main.liveness_probe = main.readiness_probe = main.startup_probe = None
    if image is not None:
        main.image = image
    spec.containers = [main]
    spec.restart_policy = "Never"
    return k8s.V1Job(
        api_version="batch/v1",
        kind="Job",
        metadata=k8s.V1ObjectMeta(name=name, labels=dict(labels)),
        spec=k8s.V1JobSpec(
            backoff_limit=backoff_limit,
            ttl_seconds_after_finished=ttl_seconds_after_finished,
            template=k8s.V1PodTemplateSpec(
                metadata=k8s.V1ObjectMeta(labels=dict(labels), annotations=annotations or None),
                spec=spec,
            ),
        ),
    )
