"""RB-06 step 2, as an action: the requests AWS WAF sampled from the source address.

The runbook runs ``aws wafv2 get-sampled-requests`` and looks for "high request
rates from a single IP, SQL injection patterns, XSS attempts". Here: every rule of the
configured web ACL that keeps samples, over the last ``waf_sample_minutes`` (AWS keeps
three hours), filtered to the alert's ``source_ip`` network, summarised as counts per
rule and action, the top URIs, and the requests that look like SQL injection or XSS.
Read-only; without a configured web ACL the step is skipped with that reason.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import ClassVar

from remediator import validation
from remediator.errors import TargetError
from remediator.runbook_api.action_steps import step
from remediator.runbook_api.client_protocols import WafSample
from remediator.runbook_api.context import Clients, StepContext
from remediator.runbook_api.steps import Done, Need, Skip, StepFailed, StepOutcome
from remediator.runbooks.rb06_params import Params

_GAP = r"(?:\s|%20|\+)"
_SQLI = re.compile(rf"(?:'|%27){_GAP}*(?:or|and|;|--)|union{_GAP}+select|drop{_GAP}+table", re.I)
_XSS = re.compile(r"<script|%3cscript|javascript:|onerror=", re.I)
_TOP = 5


def _in(net: validation.IPNetwork, address: str) -> bool:
    try:
        return ipaddress.ip_address(address) in net
    except ValueError:
        return False


@dataclass(frozen=True)
class WafSampledRequests:
    """Read-only: the web ACL's sampled requests of the last ``minutes``, those from the
    source network summarised. ``source_ip`` is the label as given: it is checked (as
    RB-06's login lookup checks it: every rule of validation.public_ip but the
    allow-list) only once a web ACL is configured, as the step always has."""

    acl_name: str | None
    acl_id: str | None
    scope: str
    minutes: int
    source_ip: str | None
    max_prefix_v4: int
    max_prefix_v6: int

    needs: ClassVar[Need] = "aws"
    mutates: ClassVar[bool] = False

    def render(self) -> str:
        acl = self.acl_name or "<waf_web_acl_name>"
        scope = self.scope
        return (
            f"aws wafv2 get-web-acl --name {acl} --id {self.acl_id or '<waf_web_acl_id>'}"
            f" --scope {scope}  # the rules' metric names, then for each:\n"
            f"aws wafv2 get-sampled-requests --web-acl-arn <its ARN> --rule-metric-name <rule>"
            f" --scope {scope} --max-items 500 --time-window"
            f" StartTime=$(date -d '{self.minutes} minutes ago' +%s),EndTime=$(date +%s)"
            "  # requests whose ClientIP is the alert's source_ip"
        )

    async def execute(self, clients: Clients) -> StepOutcome:
        if not (self.acl_name and self.acl_id):
            return Skip(
                "no web ACL configured (waf_web_acl_name, waf_web_acl_id): read the WAF's"
                " sampled requests by hand"
            )
        if self.source_ip is None:
            return Skip("the alert names no source_ip to look for")
        net = validation.public_ip(
            self.source_ip,
            allow_list=(),
            max_prefix_v4=self.max_prefix_v4,
            max_prefix_v6=self.max_prefix_v6,
        )
        until = datetime.now(UTC)
        since = until - timedelta(minutes=self.minutes)
        try:
            samples = await clients.need_aws().waf_sampled_requests(
                self.acl_name, self.acl_id, self.scope, since, until
            )
        except TargetError as exc:
            why = " ".join(str(exc).split())[:200]
            raise StepFailed(f"WAF sampled requests unavailable: {why}") from exc
        return _summary(samples, net, f"{self.minutes} min")


def _summary(samples: Sequence[WafSample], net: validation.IPNetwork, window: str) -> Done:
    ours = [s for s in samples if _in(net, s.client_ip)]
    total = sum(s.weight for s in ours)
    by_rule = Counter(f"{s.rule} {s.action}" for s in ours)
    uris = Counter(s.uri for s in ours)
    sqli = sorted({s.uri for s in ours if _SQLI.search(s.uri)})
    xss = sorted({s.uri for s in ours if _XSS.search(s.uri)})
    data = {
        "sampled": len(samples),
        "from_source": len(ours),
        "weight": total,
        "by_rule": dict(by_rule),
        "top_uris": uris.most_common(_TOP),
        "sqli": sqli[:_TOP],
        "xss": xss[:_TOP],
    }
    if not ours:
        return Done(
            f"none of {len(samples)} requests WAF sampled in the last {window} came from {net}",
            data=data,
        )
    rules = ", ".join(f"{k}: {n}" for k, n in by_rule.most_common())
    top = ", ".join(f"{u} ({n})" for u, n in uris.most_common(_TOP))
    flags = [f"SQL injection patterns: {', '.join(sqli[:_TOP])}"] if sqli else []
    flags += [f"XSS attempts: {', '.join(xss[:_TOP])}"] if xss else []
    return Done(
        "; ".join(
            [
                f"{len(ours)} of {len(samples)} sampled requests in the last {window} came"
                f" from {net} (standing for ~{total}); by rule: {rules}; top URIs: {top}",
                *flags,
            ]
        ),
        data=data,
    )


@step(
    "waf_sampled_requests",
    "diagnose",
    "Read the WAF's sampled requests from the source address",
    mutates=False,
    timeout=30.0,
    attempts=1,
)
def waf_sampled_requests(ctx: StepContext[Params]) -> WafSampledRequests:
    p = ctx.params
    return WafSampledRequests(
        p.waf_web_acl_name,
        p.waf_web_acl_id,
        p.waf_scope,
        p.waf_sample_minutes,
        ctx.labels.get("source_ip"),
        p.max_prefix_v4,
        p.max_prefix_v6,
    )
