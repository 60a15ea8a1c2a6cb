"""Jobs: one-off containers, or copies of a Deployment's pod template."""

from __future__ import annotations

from typing import Any, Literal

import kubernetes.client as k8s

from remediator.clients import pod_template
from remediator.clients.k8s_base import TARGET, KubernetesApi
from remediator.errors import InputRejected, TargetConflict, TargetRejected
from remediator.validation import k8s_name
from remediator.validation.kubernetes import (
    IMAGE_REF,
    check_str,
    validate_command,
    validate_int,
    validate_labels,
)

JobState = Literal["running", "succeeded", "failed"]


class Jobs(KubernetesApi):
    """Jobs in the namespace: created idempotently, their state read back."""

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
