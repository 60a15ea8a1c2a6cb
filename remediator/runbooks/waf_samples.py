"""RB-06 step 2: the requests AWS WAF sampled from the source address.

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
from datetime import UTC, datetime, timedelta
from typing import Any

from remediator import validation
from remediator.errors import TargetError
from remediator.runbook_api.context import StepContext
from remediator.runbook_api.steps import Done, Skip, StepFailed
from remediator.runbooks.rb06_params import Params

_GAP = r"(?:\s|%20|\+)"
_SQLI = re.compile(rf"(?:'|%27){_GAP}*(?:or|and|;|--)|union{_GAP}+select|drop{_GAP}+table", re.I)
_XSS = re.compile(r"<script|%3cscript|javascript:|onerror=", re.I)
_TOP = 5


def _in(net: Any, address: str) -> bool:
    try:
        return ipaddress.ip_address(address) in net
    except ValueError:
        return False


async def sampled_requests(*, ctx: StepContext, **_: Any) -> Done | Skip:
    p = ctx.params_as(Params)
    if not (p.waf_web_acl_name and p.waf_web_acl_id):
        return Skip(
            "no web ACL configured (waf_web_acl_name, waf_web_acl_id): read the WAF's"
            " sampled requests by hand"
        )
    label = ctx.labels.get("source_ip")
    if label is None:
        return Skip("the alert names no source_ip to look for")
    # As RB-06's login lookup: every rule of validation.public_ip but the allow-list.
    net = validation.public_ip(
        label, allow_list=(), max_prefix_v4=p.max_prefix_v4, max_prefix_v6=p.max_prefix_v6
    )
    until = datetime.now(UTC)
    since = until - timedelta(minutes=p.waf_sample_minutes)
    try:
        samples = await ctx.clients.need_aws().waf_sampled_requests(
            p.waf_web_acl_name, p.waf_web_acl_id, p.waf_scope, since, until
        )
    except TargetError as exc:
        why = " ".join(str(exc).split())[:200]
        raise StepFailed(f"WAF sampled requests unavailable: {why}") from exc
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
    window = f"{p.waf_sample_minutes} min"
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


def render_sampled_requests(*, ctx: StepContext, **_: Any) -> str:
    p = ctx.params_as(Params)
    acl = p.waf_web_acl_name or "<waf_web_acl_name>"
    return (
        f"aws wafv2 get-web-acl --name {acl} --id {p.waf_web_acl_id or '<waf_web_acl_id>'}"
        f" --scope {p.waf_scope}  # the rules' metric names, then for each:\n"
        f"aws wafv2 get-sampled-requests --web-acl-arn <its ARN> --rule-metric-name <rule>"
        f" --scope {p.waf_scope} --max-items 500 --time-window"
        f" StartTime=$(date -d '{p.waf_sample_minutes} minutes ago' +%s),EndTime=$(date +%s)"
        "  # requests whose ClientIP is the alert's source_ip"
    )
