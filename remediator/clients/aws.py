"""The AWS client the runbooks act through: RDS, WAFv2 IP sets and S3 objects.

Every value that may come from an alert label is checked for syntax before any request
leaves the process (``InputRejected``); deeper policy (private ranges, allow-lists, rate
limits) lives in the runbooks and guards. Every botocore error is wrapped into the
project's error tree at this boundary, and no botocore type is returned.

This module must never retry on its own beyond the WAF lock-token dance (the engine's
step retry policy owns retries), never block the event loop (boto3 runs in threads), and
never put credentials in an error message.
"""

from __future__ import annotations

import asyncio
import copy
import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

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
    TargetRejected,
    TargetThrottled,
    TargetTimeout,
    TargetUnavailable,
)
from remediator.validation.aws import (
    check_bucket,
    check_cidrs,
    check_instance_class,
    check_key,
    check_rds_identifier,
    check_waf_id,
    check_waf_name,
    check_waf_scope,
)

# The syntax checks are re-exported: runbooks reach them as ``aws.check_*``.
__all__ = [
    "AwsClient",
    "DbInstanceStatus",
    "IpSet",
    "SampledRequest",
    "check_bucket",
    "check_cidrs",
    "check_instance_class",
    "check_key",
    "check_rds_identifier",
    "check_waf_id",
    "check_waf_name",
    "check_waf_scope",
]

T = TypeVar("T")

RDS = "aws.rds"
WAF = "aws.wafv2"
S3 = "aws.s3"

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
# Re-reads after a lost lock token; a busier set than that is the engine's retry to make.
_WAF_LOCK_RETRIES = 3


@dataclass(frozen=True, slots=True)
class DbInstanceStatus:
    identifier: str
    status: str
    instance_class: str
    multi_az: bool
    pending_modified: dict[str, Any]


@dataclass(frozen=True, slots=True)
class IpSet:
    addresses: frozenset[str]
    lock_token: str


@dataclass(frozen=True, slots=True)
class SampledRequest:
    """One request AWS WAF sampled for a rule (``get-sampled-requests``)."""

    rule: str  # the rule's metric name
    client_ip: str
    method: str
    uri: str
    action: str  # ALLOW, BLOCK, COUNT, CAPTCHA, CHALLENGE
    country: str
    timestamp: datetime | None
    weight: int  # how many requests this sample stands for


def _aware(field: str, value: object) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise InputRejected(field, "expected a timezone-aware datetime")
    return value.astimezone(UTC)


def _normalised(address: str) -> str:
    """One spelling per network, so '10.0.0.1' and '10.0.0.1/32' compare equal."""
    try:
        return str(ipaddress.ip_network(address, strict=False))
    except ValueError:
        return address


# -- the client ------------------------------------------------------------------------


class AwsClient:
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

    # -- RDS -------------------------------------------------------------------------

    async def describe_db_instance(self, identifier: str) -> DbInstanceStatus:
        check_rds_identifier("identifier", identifier)
        return await self._run(RDS, "describe_db_instances", lambda: self._describe(identifier))

    async def failover_db_cluster(self, cluster_identifier: str) -> None:
        check_rds_identifier("cluster_identifier", cluster_identifier)
        await self._run(
            RDS,
            "failover_db_cluster",
            lambda: self._rds.failover_db_cluster(DBClusterIdentifier=cluster_identifier),
        )

    async def reboot_db_instance_with_failover(self, identifier: str) -> None:
        """Reboot a Multi-AZ instance onto its standby (ForceFailover=True)."""
        check_rds_identifier("identifier", identifier)

        def reboot() -> None:
            if not self._describe(identifier).multi_az:
                # AWS refuses ForceFailover on Single-AZ; say so plainly instead.
                raise TargetRejected(
                    RDS, f"{identifier} is not Multi-AZ: no standby to fail over to"
                )
            self._rds.reboot_db_instance(DBInstanceIdentifier=identifier, ForceFailover=True)

        await self._run(RDS, "reboot_db_instance", reboot)

    async def modify_db_instance_class(self, identifier: str, instance_class: str) -> str:
        """Change the class at once (ApplyImmediately); return the previous class for undo."""
        check_rds_identifier("identifier", identifier)
        check_instance_class("instance_class", instance_class)

        def modify() -> str:
            previous = self._describe(identifier).instance_class
            if previous != instance_class:
                self._rds.modify_db_instance(
                    DBInstanceIdentifier=identifier,
                    DBInstanceClass=instance_class,
                    ApplyImmediately=True,
                )
            return previous

        return await self._run(RDS, "modify_db_instance", modify)

    async def restore_db_instance_to_point_in_time(
        self, source: str, target: str, restore_time: datetime
    ) -> None:
        check_rds_identifier("source", source)
        check_rds_identifier("target", target)
        when = _aware("restore_time", restore_time)
        await self._run(
            RDS,
            "restore_db_instance_to_point_in_time",
            lambda: self._rds.restore_db_instance_to_point_in_time(
                SourceDBInstanceIdentifier=source,
                TargetDBInstanceIdentifier=target,
                RestoreTime=when,
            ),
        )

    def _describe(self, identifier: str) -> DbInstanceStatus:
        found = self._rds.describe_db_instances(DBInstanceIdentifier=identifier)["DBInstances"]
        if not found:
            raise TargetRejected(RDS, f"DB instance {identifier} not found")
        inst = found[0]
        return DbInstanceStatus(
            identifier=str(inst.get("DBInstanceIdentifier", identifier)),
            status=str(inst.get("DBInstanceStatus", "")),
            instance_class=str(inst.get("DBInstanceClass", "")),
            multi_az=bool(inst.get("MultiAZ", False)),
            pending_modified=copy.deepcopy(dict(inst.get("PendingModifiedValues", {}))),
        )

    # -- WAFv2 -----------------------------------------------------------------------

    async def waf_get_ip_set(self, name: str, ip_set_id: str, scope: str = "REGIONAL") -> IpSet:
        self._check_waf(name, ip_set_id, scope)

        def get() -> IpSet:
            _, addresses, token = self._get_ip_set(name, ip_set_id, scope)
            return IpSet(frozenset(addresses), token)

        return await self._run(WAF, "get_ip_set", get)

    async def waf_add_addresses(
        self, name: str, ip_set_id: str, cidrs: Iterable[str], scope: str = "REGIONAL"
    ) -> list[str]:
        """Add CIDRs to an IP set; return only those that were not there (the undo record)."""
        self._check_waf(name, ip_set_id, scope)
        wanted = check_cidrs("cidrs", cidrs)

        def plan(version: str, current: list[str]) -> tuple[list[str], list[str]]:
            family = 6 if version == "IPV6" else 4
            for net in wanted:
                if net.version != family:
                    raise InputRejected("cidrs", f"{net} does not fit an {version} IP set")
            present = {_normalised(a) for a in current}
            added = [str(n) for n in wanted if str(n) not in present]
            return added, current + added

        return await self._run(
            WAF, "update_ip_set", lambda: self._update_ip_set(name, ip_set_id, scope, plan)
        )

    async def waf_remove_addresses(
        self, name: str, ip_set_id: str, cidrs: Iterable[str], scope: str = "REGIONAL"
    ) -> list[str]:
        """Remove CIDRs from an IP set; return only those that were there."""
        self._check_waf(name, ip_set_id, scope)
        unwanted = {str(n) for n in check_cidrs("cidrs", cidrs)}

        def plan(_version: str, current: list[str]) -> tuple[list[str], list[str]]:
            removed: list[str] = []
            kept: list[str] = []
            for address in current:
                norm = _normalised(address)
                if norm in unwanted:
                    if norm not in removed:
                        removed.append(norm)
                else:
                    kept.append(address)
            return removed, kept

        return await self._run(
            WAF, "update_ip_set", lambda: self._update_ip_set(name, ip_set_id, scope, plan)
        )

    async def waf_sampled_requests(
        self,
        web_acl_name: str,
        web_acl_id: str,
        scope: str,
        since: datetime,
        until: datetime,
        *,
        max_rules: int = 10,
        max_items: int = 500,
    ) -> list[SampledRequest]:
        """The requests WAF sampled in [since, until] for each rule of the web ACL that
        keeps samples (at most ``max_rules``; AWS keeps 3 hours of them)."""
        self._check_waf(web_acl_name, web_acl_id, scope)
        start, end = _aware("since", since), _aware("until", until)

        def sample() -> list[SampledRequest]:
            acl = self._waf.get_web_acl(Name=web_acl_name, Scope=scope, Id=web_acl_id)["WebACL"]
            rules = [
                r["VisibilityConfig"]["MetricName"]
                for r in acl.get("Rules", [])
                if r.get("VisibilityConfig", {}).get("SampledRequestsEnabled")
            ][:max_rules]
            found: list[SampledRequest] = []
            for rule in rules:
                resp = self._waf.get_sampled_requests(
                    WebAclArn=acl["ARN"],
                    RuleMetricName=rule,
                    Scope=scope,
                    TimeWindow={"StartTime": start, "EndTime": end},
                    MaxItems=max_items,
                )
                found += [_sample(rule, x) for x in resp.get("SampledRequests", [])]
            return found

        return await self._run(WAF, "get_sampled_requests", sample)

    @staticmethod
    def _check_waf(name: str, ip_set_id: str, scope: str) -> None:
        check_waf_name("name", name)
        check_waf_id("ip_set_id", ip_set_id)
        check_waf_scope("scope", scope)

    def _get_ip_set(self, name: str, ip_set_id: str, scope: str) -> tuple[str, list[str], str]:
        resp = self._waf.get_ip_set(Name=name, Scope=scope, Id=ip_set_id)
        ip_set = resp["IPSet"]
        return (
            str(ip_set.get("IPAddressVersion", "IPV4")),
            [str(a) for a in ip_set.get("Addresses", [])],
            str(resp["LockToken"]),
        )

    def _update_ip_set(
        self,
        name: str,
        ip_set_id: str,
        scope: str,
        plan: Callable[[str, list[str]], tuple[list[str], list[str]]],
    ) -> list[str]:
        """Read, plan, write with the lock token; re-read when someone wrote in between."""
        for attempt in range(_WAF_LOCK_RETRIES + 1):
            version, current, token = self._get_ip_set(name, ip_set_id, scope)
            changed, addresses = plan(version, current)
            if not changed:
                return []
            try:
                self._waf.update_ip_set(
                    Name=name, Scope=scope, Id=ip_set_id, Addresses=addresses, LockToken=token
                )
            except ClientError as exc:
                if _error_code(exc) != _LOCK_LOST:
                    raise
                if attempt == _WAF_LOCK_RETRIES:
                    raise TargetConflict(
                        WAF,
                        f"update_ip_set: IP set {name} changed under us "
                        f"{attempt + 1} times in a row",
                    ) from exc
                continue
            return changed
        raise AssertionError("unreachable")  # pragma: no cover

    # -- S3 --------------------------------------------------------------------------

    async def s3_delete_object(self, bucket: str, key: str) -> None:
        check_bucket("bucket", bucket)
        check_key("key", key)
        await self._run(S3, "delete_object", lambda: self._s3.delete_object(Bucket=bucket, Key=key))

    async def s3_object_exists(self, bucket: str, key: str) -> bool:
        check_bucket("bucket", bucket)
        check_key("key", key)

        def head() -> bool:
            try:
                self._s3.head_object(Bucket=bucket, Key=key)
            except ClientError as exc:
                if _status(exc) == 404:
                    return False
                raise
            return True

        return await self._run(S3, "head_object", head)

    # -- plumbing --------------------------------------------------------------------

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


def _sample(rule: str, item: Any) -> SampledRequest:
    request = item.get("Request", {})
    when = item.get("Timestamp")
    return SampledRequest(
        rule=rule,
        client_ip=str(request.get("ClientIP", "")),
        method=str(request.get("Method", ""))[:16],
        uri=str(request.get("URI", ""))[:512],
        action=str(item.get("Action", "")),
        country=str(request.get("Country", "")),
        timestamp=when if isinstance(when, datetime) else None,
        weight=int(item.get("Weight", 1) or 1),
    )


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
