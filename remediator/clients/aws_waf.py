"""WAFv2: IP sets (changed under their lock token) and sampled requests."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from remediator.clients.aws_base import _LOCK_LOST, AwsApi, _aware, _error_code
from remediator.errors import InputRejected, TargetConflict
from remediator.validation.aws import check_cidrs, check_waf_id, check_waf_name, check_waf_scope

WAF = "aws.wafv2"
# Re-reads after a lost lock token; a busier set than that is the engine's retry to make.
_WAF_LOCK_RETRIES = 3


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


def _normalised(address: str) -> str:
    """One spelling per network, so '10.0.0.1' and '10.0.0.1/32' compare equal."""
    try:
        return str(ipaddress.ip_network(address, strict=False))
    except ValueError:
        return address


class Waf(AwsApi):
    """WAFv2 IP sets and web ACLs' sampled requests."""

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
