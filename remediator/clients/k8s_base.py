"""What every Kubernetes call shares: one namespace, a request timeout, and library
errors mapped to ``remediator.errors`` types (409 -> TargetConflict, 429 ->
TargetThrottled, 5xx and refused connections -> TargetUnavailable, timeouts ->
TargetTimeout, other 4xx -> TargetRejected). Never retries: the engine's step
policy does."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any, TypeVar

import kubernetes.client as k8s
import urllib3
from kubernetes.client.exceptions import ApiException

from remediator.errors import (
    TargetConflict,
    TargetError,
    TargetNotFound,
    TargetRejected,
    TargetThrottled,
    TargetTimeout,
    TargetUnavailable,
)
from remediator.validation import k8s_name

TARGET = "kubernetes"
T = TypeVar("T")

# ----------------------------------------------------------------- error mapping


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
    if status == 404:
        return TargetNotFound(TARGET, message)
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


class KubernetesApi:
    """The official client's APIs bound to one namespace; ``_call`` runs each request."""

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
