"""Reading pods' logs (``kubectl logs -l ... --tail=N | grep``)."""

from __future__ import annotations

from dataclasses import dataclass

from remediator.clients.k8s_base import KubernetesApi
from remediator.validation.kubernetes import (
    check_str,
    validate_dns_subdomain,
    validate_int,
    validate_label_selector,
)


@dataclass(frozen=True, slots=True)
class LogLine:
    """One line of a pod's log, as ``kubectl logs -l ... --prefix`` would show it."""

    pod: str
    text: str


class PodLogs(KubernetesApi):
    """Logs of the pods a label selector picks."""

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
