"""The runbooks' batch commands as Kubernetes Jobs with the workload's environment.

RB-01 runs ``python -m jobs.build_pack`` and RB-02 ``python -m jobs.replay_dlq`` the
way the runbook does, ``kubectl exec deployment/<workload>``: in a Job copied from that
Deployment's pod template (``clients.pod_template``), never in a bare container that
would have no database URL, no secrets and no service account.

Shared by both runbooks' actions (rb01_build.RerunBuild, dlq_replay.ReplayDlq): the
param checks, starting the Job, and its rendering (the ``kubectl exec`` a human would
paste instead).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from remediator.errors import TargetNotFound
from remediator.runbook_api.client_protocols import Kubernetes
from remediator.runbook_api.steps import StepFailed
from remediator.validation.kubernetes import is_image_ref

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", re.ASCII)


def check_image(value: str | None) -> str | None:
    if value is not None and not is_image_ref(value):
        raise ValueError("not an image reference")
    return value


def check_name(value: str | None) -> str | None:
    """A Deployment or container name (a DNS label)."""
    if value is not None and not _DNS_LABEL.fullmatch(value):
        raise ValueError("not a Kubernetes name (a DNS label)")
    return value


async def start(
    kube: Kubernetes,
    name: str,
    argv: Sequence[str],
    *,
    deployment: str,
    container: str | None,
    image: str | None,
    labels: dict[str, str],
    ttl_seconds: int,
) -> str:
    """Create the Job from ``deployment``'s pod template; StepFailed if there is none."""
    try:
        return str(
            await kube.create_job_from_deployment(
                name,
                deployment,
                list(argv),
                labels=labels,
                container=container,
                image=image,
                ttl_seconds_after_finished=ttl_seconds,
                backoff_limit=0,
            )
        )
    except TargetNotFound as exc:  # the Deployment (or the namespace) is not there
        raise StepFailed(
            f"deployment {deployment} not found in namespace {kube.namespace}: the Job"
            " copies its pod template (image, env, service account, volumes); name the"
            f" workload in the rule's params ({exc})"
        ) from exc


def render(
    namespace: str, name: str, argv: Sequence[str], *, deployment: str, image: str | None
) -> str:
    """The Job as a plan shows it: the ``kubectl exec`` it stands for."""
    override = f", image {image}" if image else ""
    return (
        f"# Job {name}: deployment/{deployment}'s pod template (env, envFrom, service"
        f" account, volumes{override}) running the command; by hand, the same:\n"
        f"kubectl exec deployment/{deployment} -n {namespace} -- {' '.join(argv)}"
    )
