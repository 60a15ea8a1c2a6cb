"""ConfigMaps (read) and Secrets (patched; values never reach a log or an error)."""

from __future__ import annotations

import base64
from typing import Any

from remediator.clients.k8s_base import KubernetesApi
from remediator.errors import InputRejected
from remediator.validation.kubernetes import (
    MAX_SECRET_BYTES,
    SECRET_KEY,
    check_str,
    validate_dns_subdomain,
)


class ConfigObjects(KubernetesApi):
    """ConfigMaps and Secrets in the namespace."""

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
