"""What every AWS call shares: the boto3 session and clients, run in a thread, and every
botocore error wrapped into the project's error tree with credentials redacted."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError,
    ConnectTimeoutError,
    CredentialRetrievalError,
    HTTPClientError,
    NoCredentialsError,
    PartialCredentialsError,
    ReadTimeoutError,
)
from botocore.parsers import ResponseParserError

from remediator.errors import (
    InputRejected,
    TargetConflict,
    TargetError,
    TargetNotFound,
    TargetRejected,
    TargetThrottled,
    TargetTimeout,
    TargetUnavailable,
)

T = TypeVar("T")

_THROTTLE_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "SlowDown",
    }
)
_LOCK_LOST = "WAFOptimisticLockException"
# AWS names absence per service: DBInstanceNotFound(Fault), NoSuchKey, NoSuchBucket,
# WAFNonexistentItemException.
_NOT_FOUND_SUFFIXES = ("NotFound", "NotFoundFault", "NotFoundException")
_NOT_FOUND_CODES = frozenset({"NoSuchKey", "NoSuchBucket", "WAFNonexistentItemException"})


def _aware(field: str, value: object) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise InputRejected(field, "expected a timezone-aware datetime")
    return value.astimezone(UTC)


class AwsApi:
    """boto3 clients for RDS, WAFv2 and S3, created once and called from threads.

    Construction loads botocore's service models (blocking, ~0.2 s): do it at startup.
    Credentials come from boto3's default chain.
    """

    def __init__(
        self,
        region: str,
        endpoint_url: str | None = None,
        *,
        connect_timeout: float = 5,
        read_timeout: float = 10,
        max_attempts: int = 1,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if connect_timeout <= 0 or read_timeout <= 0:
            raise ValueError("timeouts must be positive")
        config = Config(
            region_name=region,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            # The engine's step retry policy owns retries; botocore's would multiply them.
            retries={"mode": "standard", "total_max_attempts": max_attempts},
            user_agent_appid="remediator",
            # Virtual-host style needs DNS for bucket names; a test endpoint has none.
            s3={"addressing_style": "path"} if endpoint_url else None,
        )
        self._session = boto3.session.Session(region_name=region)
        self._rds = self._session.client("rds", endpoint_url=endpoint_url, config=config)
        self._waf = self._session.client("wafv2", endpoint_url=endpoint_url, config=config)
        self._s3 = self._session.client("s3", endpoint_url=endpoint_url, config=config)
        self._closed = False

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        for client in (self._rds, self._waf, self._s3):
            await asyncio.to_thread(client.close)

    async def _run(self, target: str, operation: str, call: Callable[[], T]) -> T:
        if self._closed:
            raise RuntimeError("AwsClient is closed")
        return await asyncio.to_thread(self._guarded, target, operation, call)

    def _guarded(self, target: str, operation: str, call: Callable[[], T]) -> T:
        # Runs in the worker thread, so the credential lookup for redaction never
        # blocks the event loop.
        try:
            return call()
        except ClientError as exc:
            raise self._from_client_error(target, operation, exc) from exc
        except BotoCoreError as exc:
            raise self._from_botocore_error(target, operation, exc) from exc
        except ResponseParserError as exc:
            # Not a BotoCoreError: a body that is not AWS's, e.g. a proxy's error page.
            raise TargetUnavailable(target, f"{operation}: unparseable response") from exc

    def _from_client_error(self, target: str, operation: str, exc: ClientError) -> TargetError:
        code = _error_code(exc)
        status = _status(exc)
        message = self._redact(str(exc.response.get("Error", {}).get("Message", "")))
        text = f"{operation}: {code or status}: {message}".rstrip(": ")
        if code in _THROTTLE_CODES or status == 429:
            return TargetThrottled(target, text, retry_after=_retry_after(exc))
        if code == _LOCK_LOST:
            return TargetConflict(target, text)
        if status >= 500:
            return TargetUnavailable(target, text)
        if status == 404 or code.endswith(_NOT_FOUND_SUFFIXES) or code in _NOT_FOUND_CODES:
            return TargetNotFound(target, text)
        return TargetRejected(target, text)

    def _from_botocore_error(self, target: str, operation: str, exc: BotoCoreError) -> TargetError:
        # Only the class name: botocore's messages carry endpoint URLs and parameters.
        kind = type(exc).__name__
        if isinstance(exc, ReadTimeoutError | ConnectTimeoutError):
            return TargetTimeout(target, f"{operation}: {kind}")
        if isinstance(exc, NoCredentialsError | PartialCredentialsError):
            return TargetRejected(target, f"{operation}: no usable AWS credentials ({kind})")
        if isinstance(exc, ConnectionError | HTTPClientError | CredentialRetrievalError):
            return TargetUnavailable(target, f"{operation}: {kind}")
        return TargetRejected(target, f"{operation}: {kind}: {self._redact(str(exc))}")

    def _redact(self, text: str) -> str:
        creds = self._session.get_credentials()
        if creds is None:
            return text
        frozen = creds.get_frozen_credentials()
        for secret in (frozen.secret_key, frozen.token, frozen.access_key):
            if secret:
                text = text.replace(secret, "***")
        return text


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


def _retry_after(exc: ClientError) -> float | None:
    headers = exc.response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
    try:
        value = float(headers.get("retry-after", ""))
    except ValueError:
        return None  # absent, or an HTTP date: let the step's backoff decide
    return value if value >= 0 else None
